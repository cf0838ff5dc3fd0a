"""The PT2V benchmark on held-out identities (paper §5's identity / prompt / copy-paste measures).

Cases (:func:`cases`): ``identities`` held-out identities (combinations no training identity has), each
with every action in turn; the reference is a cross-pair still (another pose, expression and lighting
than the clip the prompt asks for), the prompt a training phrasing or an evaluation-only paraphrase
(:data:`moviegen.data.people.PARAPHRASES`). :func:`score` measures a set of videos with the
:class:`~moviegen.eval.people.PeopleAnalyzer`:

* ``identity_cos``: cosine between the reference crop's identity embedding and the video's (mean over
  frames) — to be read against ``truth`` (the world's true rendering of that person doing the action);
* ``retrieval``: top-1 of the right identity among all the cases' identities, against a gallery of three
  other stills per identity (the reference is not in it);
* ``action``: the prompt's action read by :func:`~moviegen.eval.people.detect_action`;
* ``copy``: :func:`~moviegen.eval.people.copy_distance` of the video's pose and lighting to the
  reference's true ones (0 = a copy of the reference; a true clip's, independent of it, is the level of
  no copying).

Baselines measured in the same run (:func:`baselines`): ``truth`` and ``copy reference`` (the reference
still repeated: perfect identity, no motion, copy 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from moviegen.data.people import ACTIONS, People, PeopleClip
from moviegen.eval.people import PeopleAnalyzer, copy_distance, detect_action, face_crop, state_vector


@dataclass
class Case:
    index: int
    identity: int
    action: str
    prompt: str
    reference: PeopleClip  # a one-frame cross-pair still
    truth: PeopleClip


def cases(identities: int = 21, per_identity: int = 2, phrasing: str = "train", size: int = 64, frames: int = 16,
          seed: int = 9) -> list[Case]:  # fmt: skip
    """``identities × per_identity`` cases over held-out identities; actions cycle so each appears equally."""
    people = People(identities, size, frames, seed=seed)
    out = []
    for i in range(identities * per_identity):
        action = ACTIONS[i % len(ACTIONS)]
        truth = people.clip("test", i, action=action, phrasing=phrasing)
        out.append(Case(i, i % identities, action, truth.caption, people.reference("test", i), truth))
    return out


@torch.no_grad()
def gallery(analyzer: PeopleAnalyzer, all_cases: list[Case], size: int = 64, seed: int = 9) -> Tensor:
    """(identities, D) unit embeddings: three stills per identity that no case uses as its reference."""
    n = max(c.identity for c in all_cases) + 1
    people = People(n, size, 1, seed=seed)
    rows = []
    for j in range(n):
        crops = torch.stack([face_crop(people.reference("test", j, salt=50 + s).video[:, 0]) for s in range(3)])
        rows.append(F.normalize(analyzer.embed(crops).mean(0), dim=-1))
    return torch.stack(rows)


@torch.no_grad()
def score(videos: list[Tensor], all_cases: list[Case], analyzer: PeopleAnalyzer, table: Tensor) -> dict:
    """The measures of the module docstring, in % (``identity_cos`` and ``copy`` as numbers), plus the
    per-action accuracy."""
    cos, hits, actions, copies, per_action = [], [], [], [], {}
    for video, case in zip(videos, all_cases, strict=True):
        ref = analyzer.embed(face_crop(case.reference.video[:, 0])[None])[0]
        emb = analyzer.video_embedding(video)
        cos.append(float(emb @ ref))
        hits.append(int((table @ emb).argmax()) == case.identity)
        states = analyzer.video_states(video)
        ok = detect_action(states) == case.action
        actions.append(ok)
        per_action.setdefault(case.action, []).append(ok)
        reference_state = torch.tensor(state_vector(case.reference, 0, video.shape[-1]))
        copies.append(copy_distance(states, reference_state))
    return {
        "identity_cos": float(np.mean(cos)),
        "retrieval": 100 * float(np.mean(hits)),
        "action": 100 * float(np.mean(actions)),
        "copy": float(np.mean(copies)),
        "per_action": {a: 100 * float(np.mean(v)) for a, v in per_action.items()},
        "n": len(videos),
    }


def baselines(all_cases: list[Case], analyzer: PeopleAnalyzer, table: Tensor) -> dict[str, dict]:
    """``truth`` (the true renderings) and ``copy reference`` (the reference still, repeated)."""
    frames = all_cases[0].truth.video.shape[1]
    return {
        "truth": score([c.truth.video for c in all_cases], all_cases, analyzer, table),
        "copy reference": score([c.reference.video.expand(-1, frames, -1, -1) for c in all_cases], all_cases,
                                analyzer, table),  # fmt: skip
    }


def generate_cases(pipe, all_cases: list[Case], steps: int | None = None, guidance: float | None = None,
                   seed: int = 0, batch: int = 14,
                   progress: Callable[[int, int], None] | None = None) -> list[Tensor]:  # fmt: skip
    """The PT2V model's video for every case, batched (noise per batch from ``seed`` + the batch's start)."""
    from moviegen.personalize import prepare_reference
    from moviegen.train.personalize import generate_batch

    steps = pipe.num_steps if steps is None else steps
    guidance = pipe.guidance_scale if guidance is None else guidance
    frames = all_cases[0].truth.video.shape[1]
    out: list[Tensor] = []
    for start in range(0, len(all_cases), batch):
        part = all_cases[start : start + batch]
        faces = torch.stack([prepare_reference(c.reference.video[:, 0], pipe.reference.image_size) for c in part])
        out.extend(generate_batch(pipe, faces, [c.prompt for c in part], frames, steps, guidance, seed + start))
        if progress:
            progress(len(out), len(all_cases))
    return out
