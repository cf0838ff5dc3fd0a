"""Automatic video metrics (paper §3.6.2 and §9 edit metrics).

Per video, over a bench folder (:mod:`moviegen.eval.bench`):

* **text alignment** — similarity of the prompt and the video under a joint text–video encoder;
* **frame consistency** — mean similarity of adjacent frames' embeddings under the same encoder;
* **motion score** — mean optical-flow magnitude (Farnebäck) between adjacent frames, in pixels per frame
  at the video's resolution (the paper argues automatic motion metrics are easily gamed: a static video
  scores perfectly on consistency, so both are reported side by side);

aggregated overall, per concept (multi-label: a video counts in each of its concepts) and per motion level.
Beside them, the **validation flow-matching loss** of a model on a held-out set, which the paper found to
track human judgement (§3.6.2).

The joint encoder is pluggable (:class:`JointEncoder`): a CLIP-style model from a local folder
(:class:`CLIPJointEncoder`; frame embeddings averaged into a video embedding), a ViCLIP-style video model
by overriding :meth:`JointEncoder.embed_video`, or :class:`WorldJointEncoder`, which reads the built-in
world's attributes with the classical detector, so alignment on world prompts is the fraction of the
prompt's attributes found in the video.

:func:`viclip_out` and :func:`viclip_dir` are the edit metrics (§9, used by the edit issue).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from moviegen.errors import MovieGenError

METRICS = ("text_alignment", "frame_consistency", "motion_score")


class JointEncoder:
    """Text and frames into one embedding space. Subclasses implement ``embed_text`` and ``embed_frames``."""

    name = "encoder"

    def embed_text(self, prompts: Sequence[str]) -> Tensor:
        """``(N, D)`` embeddings of N prompts."""
        raise NotImplementedError

    def embed_frames(self, video: Tensor) -> Tensor:
        """``(T, D)`` embeddings of the frames of a ``(3, T, H, W)`` clip in [-1, 1]."""
        raise NotImplementedError

    def embed_video(self, video: Tensor) -> Tensor:
        """``(D,)`` embedding of a clip: by default the mean of its normalised frame embeddings."""
        return F.normalize(self.embed_frames(video).float(), dim=-1).mean(0)

    def similarity(self, text: Tensor, video: Tensor) -> float:
        """Cosine similarity of a text and a video embedding."""
        return float(F.cosine_similarity(text.float(), video.float(), dim=-1))


CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class CLIPJointEncoder(JointEncoder):
    """A CLIP model (``transformers`` ``CLIPModel`` folder, local only) as a frame-wise joint encoder."""

    name = "clip"

    def __init__(self, path: str | Path, device: str = "cpu", max_frames: int = 16):
        import transformers

        path = Path(path)
        if not (path / "config.json").is_file():
            raise MovieGenError(f"CLIP folder not found or has no config.json: {path}")
        try:
            self.model = (
                transformers.CLIPModel.from_pretrained(str(path), local_files_only=True).eval().to(device)
            )
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as e:
            raise MovieGenError(f"cannot load a CLIP model from {path}: {e}") from None
        self.device, self.max_frames = torch.device(device), max_frames
        self.image_size = self.model.config.vision_config.image_size
        self.max_length = self.model.config.text_config.max_position_embeddings

    @staticmethod
    def _features(out) -> Tensor:
        return out if isinstance(out, Tensor) else out.pooler_output

    @torch.inference_mode()
    def embed_text(self, prompts: Sequence[str]) -> Tensor:
        batch = self.tokenizer(
            list(prompts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        return self._features(self.model.get_text_features(**batch)).float().cpu()

    @torch.inference_mode()
    def embed_frames(self, video: Tensor) -> Tensor:
        t = video.shape[1]
        index = torch.linspace(0, t - 1, min(t, self.max_frames)).round().long()
        frames = ((video[:, index].permute(1, 0, 2, 3).float() + 1) / 2).clamp(0, 1)
        frames = F.interpolate(
            frames,
            size=(self.image_size, self.image_size),
            mode="bicubic",
            antialias=True,
            align_corners=False,
        ).clamp(0, 1)
        mean, std = torch.tensor(CLIP_MEAN)[:, None, None], torch.tensor(CLIP_STD)[:, None, None]
        pixels = ((frames - mean) / std).to(self.device)
        return self._features(self.model.get_image_features(pixel_values=pixels)).float().cpu()


class WorldJointEncoder(JointEncoder):
    """The built-in world's attributes as an embedding: colour, shape, motion and camera one-hots.

    Text: the attributes a prompt names (synonyms of the world's captions). Video: what the classical
    detector of :mod:`moviegen.eval.world` finds — object attributes when the prompt space is objects,
    camera motion otherwise (both are embedded; the similarity only reads the groups the prompt names).
    Frames: each frame's colour and shape. Similarity = the fraction of named attributes that match.
    """

    name = "world"

    def __init__(self) -> None:
        from moviegen.data.world import CAMERA_MOTIONS, COLORS, MOTION_PHRASES, SHAPE_WORDS, SHAPES

        self.groups = {
            "color": list(COLORS),
            "shape": list(SHAPES),
            "motion": list(MOTION_PHRASES),
            "camera": list(CAMERA_MOTIONS),
        }
        self.words = {
            "color": {c: (c,) for c in COLORS},
            "shape": {s: tuple(SHAPE_WORDS[s]) for s in SHAPES},
            "motion": {m: MOTION_PHRASES[m] + (f"moving {m}", f"to the {m}") for m in MOTION_PHRASES},
            "camera": {c: (f"camera: {c}",) for c in CAMERA_MOTIONS},
        }
        self.offsets, total = {}, 0
        for group, values in self.groups.items():
            self.offsets[group] = total
            total += len(values)
        self.dim = total

    def _one_hot(self, found: dict[str, str]) -> Tensor:
        v = torch.zeros(self.dim)
        for group, value in found.items():
            if value in self.groups[group]:
                v[self.offsets[group] + self.groups[group].index(value)] = 1.0
        return v

    def parse(self, prompt: str) -> dict[str, str]:
        """The world attributes a prompt names (the first match per group, longest phrase first)."""
        text = prompt.lower()
        found = {}
        for group, table in self.words.items():
            best = None
            for value, phrases in table.items():
                for phrase in phrases:
                    m = re.search(rf"\b{re.escape(phrase)}\b", text)
                    if m and (best is None or (m.start(), -len(phrase)) < best[0]):
                        best = ((m.start(), -len(phrase)), value)
            if best is not None:
                found[group] = best[1]
        return found

    def embed_text(self, prompts: Sequence[str]) -> Tensor:
        return torch.stack([self._one_hot(self.parse(p)) for p in prompts])

    def embed_frames(self, video: Tensor) -> Tensor:
        from moviegen.eval.world import detect_object

        rows = []
        for i in range(video.shape[1]):
            det = detect_object(video[:, i : i + 1])
            rows.append(
                self._one_hot(dict(color=det.color, shape=det.shape)) if det.found else torch.zeros(self.dim)
            )
        return torch.stack(rows)

    def embed_video(self, video: Tensor) -> Tensor:
        from moviegen.eval.world import detect_camera, detect_object

        det = detect_object(video)
        found = dict(color=det.color, shape=det.shape, motion=det.motion) if det.found else {}
        return self._one_hot(found | {"camera": detect_camera(video).camera})

    def similarity(self, text: Tensor, video: Tensor) -> float:
        named = float(text.sum())
        return float((text * video).sum()) / named if named else float("nan")


def load_encoder(spec: str, device: str = "cpu") -> JointEncoder:
    """``world`` or a local CLIP folder."""
    if spec == "world":
        return WorldJointEncoder()
    path = Path(spec)
    if not path.exists():
        raise MovieGenError(f"--encoder must be 'world' or a local CLIP folder; {spec!r} does not exist")
    return CLIPJointEncoder(path, device=device)


# ------------------------------------------------------------------------------------------ per video


def text_alignment(encoder: JointEncoder, prompt: str, video: Tensor) -> float:
    return encoder.similarity(encoder.embed_text([prompt])[0], encoder.embed_video(video))


def frame_consistency(encoder: JointEncoder, video: Tensor) -> float:
    """Mean cosine similarity of adjacent frames' embeddings (1 for a single frame)."""
    emb = encoder.embed_frames(video).float()
    if len(emb) < 2:
        return 1.0
    sims = F.cosine_similarity(emb[1:], emb[:-1], dim=-1)
    both_empty = (emb[1:].norm(dim=-1) == 0) & (emb[:-1].norm(dim=-1) == 0)
    return float(torch.where(both_empty, torch.ones_like(sims), sims).mean())


def motion_score(video: Tensor) -> float:
    """Mean Farnebäck optical-flow magnitude between adjacent frames, in pixels per frame."""
    import cv2

    from moviegen.video import to_uint8

    frames = to_uint8(video)
    if len(frames) < 2:
        return 0.0
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    magnitudes = []
    for a, b in zip(gray[:-1], gray[1:], strict=True):
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 9, 3, 5, 1.1, 0)
        magnitudes.append(float(np.linalg.norm(flow, axis=-1).mean()))
    return float(np.mean(magnitudes))


def viclip_out(encoder: JointEncoder, output: Tensor, output_caption: str) -> float:
    """Edit metric ViCLIP_out: similarity of the edited video and its caption."""
    return text_alignment(encoder, output_caption, output)


def viclip_dir(
    encoder: JointEncoder, source: Tensor, output: Tensor, source_caption: str, output_caption: str
) -> float:
    """Edit metric ViCLIP_dir: cosine of the video-embedding change and the caption-embedding change."""
    text = encoder.embed_text([source_caption, output_caption]).float()
    dv = encoder.embed_video(output).float() - encoder.embed_video(source).float()
    dt = text[1] - text[0]
    if dv.norm() == 0 or dt.norm() == 0:
        return 0.0
    return float(F.cosine_similarity(dv, dt, dim=0))


# ------------------------------------------------------------------------------------------ a folder


@dataclass
class MetricsReport:
    encoder: str
    per_video: list[dict]
    aggregate: dict[str, dict[str, dict[str, float]]]
    errors: list[str] = field(default_factory=list)
    validation_loss: float | None = None

    def to_dict(self) -> dict:
        return dict(
            encoder=self.encoder,
            aggregate=self.aggregate,
            per_video=self.per_video,
            errors=self.errors,
            validation_loss=self.validation_loss,
        )


def aggregate(rows: Sequence[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """Means of each metric overall, per concept and per motion level (with the video count ``n``)."""

    def summary(group: list[dict]) -> dict[str, float]:
        out = {"n": float(len(group))}
        for m in METRICS:
            values = [r[m] for r in group if r.get(m) is not None and not math.isnan(r[m])]
            out[m] = float(np.mean(values)) if values else float("nan")
        return out

    by_concept: dict[str, list[dict]] = {}
    by_level: dict[str, list[dict]] = {}
    for r in rows:
        for c in r.get("concepts") or []:
            by_concept.setdefault(c, []).append(r)
        if r.get("motion_level"):
            by_level.setdefault(r["motion_level"], []).append(r)
    order = {"low": 0, "medium": 1, "high": 2}
    return {
        "overall": {"all": summary(list(rows))} if rows else {},
        "concept": {c: summary(g) for c, g in sorted(by_concept.items())},
        "motion_level": {
            k: summary(g) for k, g in sorted(by_level.items(), key=lambda kv: order.get(kv[0], 9))
        },
    }


def evaluate_folder(
    folder: str | Path,
    encoder: JointEncoder,
    progress: Callable[[int, int], None] | None = None,
) -> MetricsReport:
    """Metrics of every video of a bench folder; missing or unreadable videos are reported per row."""
    from moviegen.eval.bench import load_index
    from moviegen.video import read_image, read_video

    folder = Path(folder)
    records = load_index(folder)
    rows, errors = [], []
    for i, r in enumerate(records):
        label = f"{r.id} seed {r.seed} ({r.file})"
        if r.status != "ok":
            errors.append(f"{label}: not generated: {r.error}")
        else:
            try:
                image = r.file.lower().endswith(".png")
                video = read_image(folder / r.file) if image else read_video(folder / r.file)[0]
                rows.append(
                    dict(
                        id=r.id,
                        seed=r.seed,
                        file=r.file,
                        prompt=r.prompt,
                        concepts=list(r.concepts),
                        motion_level=r.motion_level,
                        text_alignment=text_alignment(encoder, r.prompt, video),
                        frame_consistency=None if image else frame_consistency(encoder, video),
                        motion_score=None if image else motion_score(video),
                    )
                )
            except MovieGenError as e:
                errors.append(f"{label}: {e}")
        if progress is not None:
            progress(i + 1, len(records))
    return MetricsReport(encoder.name, rows, aggregate(rows), errors)


# ------------------------------------------------------------------------------ validation loss


def held_out_world(num_clips: int = 64, seed: int = 0) -> tuple[Tensor, list[str]]:
    """The world's validation split (never trained on): ``(N, 3, T, H, W)`` in [-1, 1] and captions."""
    from moviegen.data.world import World

    world = World(seed=seed)
    clips = [world.clip("val", i) for i in range(num_clips)]
    return torch.stack([c.video for c in clips]), [c.caption for c in clips]


def held_out_folder(folder: str | Path, max_frames: int = 16) -> tuple[Tensor, list[str]]:
    """MP4 clips with same-name ``.txt`` captions (all the same size) from a folder."""
    from moviegen.video import read_video

    folder = Path(folder)
    if not folder.is_dir():
        raise MovieGenError(f"held-out folder not found: {folder}")
    videos, captions = [], []
    for path in sorted(folder.glob("*.mp4")):
        caption = path.with_suffix(".txt")
        if not caption.is_file():
            raise MovieGenError(f"held-out clip {path.name} has no caption file {caption.name}")
        videos.append(read_video(path, max_frames=max_frames)[0])
        captions.append(caption.read_text().strip())
    if not videos:
        raise MovieGenError(f"no .mp4 clips in held-out folder {folder}")
    if len({tuple(v.shape) for v in videos}) > 1:
        raise MovieGenError(f"held-out clips in {folder} differ in size; crop them to one size first")
    return torch.stack(videos), captions


@torch.inference_mode()
def validation_loss(
    pipeline, videos: Tensor, captions: Sequence[str], seed: int = 1234, batch: int = 16
) -> float:
    """Flow-matching loss of a pipeline on held-out clips with fixed noise and times (paper §3.6.2).

    Clips are encoded by the pipeline's TAE and normalised as in training; captions are used as written
    (world captions already carry their ``FPS-N`` prefix). Same noise and times for the same seed.
    """
    from moviegen import flow

    device = pipeline.device
    with torch.no_grad():
        chunks = [pipeline.tae.encode(videos[i : i + batch].to(device)) for i in range(0, len(videos), batch)]
    latents = pipeline.tae.normalize(torch.cat(chunks).float().cpu())
    gen = torch.Generator().manual_seed(seed)
    t = flow.sample_timesteps(len(latents), generator=gen)
    noise = torch.randn(latents.shape, generator=gen)
    total = 0.0
    for i in range(0, len(latents), batch):
        with torch.no_grad():
            tokens, mask = pipeline.text(list(captions[i : i + batch]))
            loss = flow.flow_matching_loss(
                pipeline.transformer,
                latents[i : i + batch].to(device),
                tokens,
                mask.to(device),
                t=t[i : i + batch].to(device),
                noise=noise[i : i + batch].to(device),
            )
        total += float(loss) * len(tokens)
    return total / len(latents)


# ------------------------------------------------------------------------------------------ output


def format_table(report: MetricsReport) -> str:
    lines = [f"{'group':<34}{'n':>5}" + "".join(f"{m:>20}" for m in METRICS)]
    for kind, groups in report.aggregate.items():
        for name, values in groups.items():
            label = name if kind == "overall" else f"{kind}: {name}"
            lines.append(
                f"{label[:33]:<34}{int(values['n']):>5}" + "".join(f"{values[m]:>20.4f}" for m in METRICS)
            )
    if report.validation_loss is not None:
        lines.append(f"validation flow-matching loss: {report.validation_loss:.5f}")
    return "\n".join(lines)


def _bar_chart(groups: dict[str, dict[str, float]], title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(groups)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 0.6 + 0.35 * max(4, len(names))))
    for ax, metric in zip(axes, METRICS, strict=True):
        values = [groups[n][metric] for n in names]
        ax.barh(range(len(names)), values, color="tab:blue")
        ax.set_yticks(range(len(names)), [f"{n} ({int(groups[n]['n'])})" for n in names], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(metric.replace("_", " "))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_report(report: MetricsReport, out: str | Path) -> list[Path]:
    """``metrics.json``, ``per_video.csv``, ``metrics.txt`` and one PNG bar chart per grouping."""
    from moviegen.files import write_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "metrics.json", out / "per_video.csv", out / "metrics.txt"]
    write_atomic(written[0], (json.dumps(report.to_dict(), indent=1) + "\n").encode())
    sink = io.StringIO()
    writer = csv.writer(sink)
    writer.writerow(["id", "seed", "file", "prompt", "concepts", "motion_level", *METRICS])
    for r in report.per_video:
        writer.writerow(
            [
                r["id"],
                r["seed"],
                r["file"],
                r["prompt"],
                ",".join(r["concepts"]),
                r["motion_level"] or "",
                *("" if r[m] is None else f"{r[m]:.6f}" for m in METRICS),  # None: not defined for an image
            ]
        )
    write_atomic(written[1], sink.getvalue().encode())
    write_atomic(written[2], (format_table(report) + "\n").encode())
    for kind, groups in report.aggregate.items():
        if groups:
            written.append(
                _bar_chart(
                    groups,
                    f"{kind.replace('_', ' ')} ({report.encoder} encoder)",
                    out / f"metrics_{kind}.png",
                )
            )
    return written
