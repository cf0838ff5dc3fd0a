"""Data curation (paper §3.2.1): raw videos → a bucketed, captioned, deduplicated clip manifest.

One module per stage, each a pure function over a :class:`~moviegen.curate.record.Clip` record:

=================  =========================================================================
``probe``          PyAV probe and decode; broken files become records with a reason
``scenes``         PySceneDetect content-detector cuts → 4–16 s clips; source trimming
``visual``         min side, aspect class, OCR text area (RapidOCR), quality, borders, aesthetics
``motion``         static, VMAF-style motion score, optical flow, slideshow, shake
``camera``         16-class camera-motion label + confidence from global 2D motion
``content``        embeddings, near-duplicate removal, k-means clusters, 1/√size weights
``captions``       local VLM captioner or sidecar caption, camera-motion prefix
``subsets``        buckets, concept filter, landscape/portrait mix, staged min-side subsets
``runner``         local processes or Ray Data, resumable, ``manifest.parquet`` + summary
=================  =========================================================================

``moviegen.curate.synthetic`` renders a test corpus with known ground truth.
"""

from moviegen.curate.config import CurateConfig
from moviegen.curate.record import Clip, Frames
from moviegen.curate.runner import curate, read_manifest

__all__ = ["Clip", "CurateConfig", "Frames", "curate", "read_manifest"]
