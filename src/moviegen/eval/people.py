"""Measuring personalization on the people world (paper §5's identity, prompt-following and copy-paste
measures, with world analogues).

:class:`PeopleAnalyzer` holds two small networks trained here on world renderings, both kept apart from
the generator's vision encoder:

* ``identity``: the ArcFace analogue. A face crop (:func:`moviegen.data.people.find_face`, 32 px) → a unit
  64-d embedding, trained with an additive-cosine-margin softmax (CosFace's loss; ArcFace's family) over
  training identities seen under random pose, expression and lighting; held-out identities never appear;
* ``state``: a frame → the frame's pose, expression and lighting (:data:`STATE_KEYS`): the position and
  size from the crop rule's box (``cx``, ``cy`` its centre, ``radius`` its side / 2.7, as fractions of
  the frame: the world's face box is 2.7 radii), the rest (:data:`CROP_KEYS`) regressed from the face
  crop with a mean-squared error against the world's truth. It reads the action a video shows
  (:func:`detect_action`) and how closely a generated face repeats the reference's pose and lighting
  (:func:`copy_distance`).

The folder (``save`` / ``load``) is ``config.json`` + ``identity.safetensors`` + ``state.safetensors``;
the shipped one, :data:`DEFAULT_ANALYZER`, is what ``moviegen eval personalize`` uses.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from moviegen.data.people import (
    ACTIONS,
    People,
    PeopleClip,
    crop,
    find_face,
    reference_still,
    render_clip,
)
from moviegen.errors import MovieGenError
from moviegen.pretrained import CONFIG_NAME, atomic_dir, load_safetensors

DEFAULT_ANALYZER = Path(__file__).parent.parent / "weights" / "people-analyzer"
CROP = 32
STATE_KEYS = ("cx", "cy", "radius", "roll", "yaw", "smile", "light_x", "light_y", "brightness", "tint")
CROP_KEYS = STATE_KEYS[3:]
"""The keys regressed from the face crop (the others come from the crop box)."""
COPY_KEYS = ("roll", "yaw", "smile", "light_x", "light_y", "brightness", "tint")
"""The pose, expression and lighting a copy-pasting model would repeat from its reference."""
# thresholds of detect_action, set from the world's action ranges (module tests check true clips)
MOVE, TURN, SMILE, ZOOM = 0.07, 0.3, 0.35, math.log(1.1)


def state_vector(clip: PeopleClip, frame: int, size: int) -> list[float]:
    """The regression target of one frame (positions and radius as fractions of the frame)."""
    p, e, light = clip.poses[frame], clip.expressions[frame], clip.lighting
    return [p.cx / size, p.cy / size, p.radius / size, p.roll, p.yaw, e.smile,
            light.strength * math.cos(light.angle), light.strength * math.sin(light.angle),
            light.brightness, light.tint]  # fmt: skip


def _cnn(out: int, widths: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 3
    for w in widths:
        layers += [nn.Conv2d(cin, w, 3, padding=1), nn.GroupNorm(8, w), nn.SiLU(), nn.Conv2d(w, w, 3, padding=1),
                   nn.GroupNorm(8, w), nn.SiLU(), nn.AvgPool2d(2)]  # fmt: skip
        cin = w
    return nn.Sequential(*layers, nn.Flatten(), nn.LazyLinear(256), nn.SiLU(), nn.Linear(256, out))


def face_box_of(frame: Tensor) -> tuple[float, float, float]:
    """The crop rule's box of a frame (3, H, W); where it finds nothing (a failed generation), the centre
    square a face would fill."""
    try:
        return find_face(frame)
    except MovieGenError:
        h, w = frame.shape[-2:]
        return w / 2, h / 2, 0.6 * min(h, w)


def face_crop(frame: Tensor) -> Tensor:
    """The analyzer's input: the crop rule's square around the face, 32 px."""
    return crop(frame, face_box_of(frame), CROP)


class PeopleAnalyzer(nn.Module):
    """Identity embeddings and frame states (module docstring). Inputs in [-1, 1]."""

    def __init__(self, size: int = 64, embed_dim: int = 64):
        super().__init__()
        self.size, self.embed_dim = size, embed_dim
        self.identity = _cnn(embed_dim, (32, 64, 96))
        self.state = _cnn(len(CROP_KEYS), (32, 64, 96))
        self.register_buffer("state_mean", torch.zeros(len(CROP_KEYS)))
        self.register_buffer("state_std", torch.ones(len(CROP_KEYS)))
        with torch.no_grad():
            self.identity(torch.zeros(1, 3, CROP, CROP))
            self.state(torch.zeros(1, 3, CROP, CROP))

    def embed(self, crops: Tensor) -> Tensor:
        """Face crops (B, 3, 32, 32) → unit embeddings (B, embed_dim)."""
        return F.normalize(self.identity(crops.float()), dim=-1)

    def standard_states(self, crops: Tensor) -> Tensor:
        """Face crops (B, 3, 32, 32) → standardised :data:`CROP_KEYS` (what the network regresses)."""
        return self.state(crops.float())

    def states(self, frames: Tensor) -> Tensor:
        """Frames (B, 3, H, W) → states (B, len(STATE_KEYS)), positions as fractions of the frame."""
        h, w = frames.shape[-2:]
        boxes = [face_box_of(f) for f in frames]
        crops = torch.stack([crop(f, b, CROP) for f, b in zip(frames, boxes, strict=True)])
        where = torch.tensor([[cx / w, cy / h, side / 2.7 / w] for cx, cy, side in boxes])
        return torch.cat([where, self.standard_states(crops) * self.state_std + self.state_mean], dim=1)

    @torch.no_grad()
    def video_embedding(self, video: Tensor) -> Tensor:
        """The mean (re-normalised) identity embedding of a video's frames (3, T, H, W)."""
        crops = torch.stack([face_crop(video[:, t]) for t in range(video.shape[1])])
        return F.normalize(self.embed(crops).mean(0), dim=-1)

    @torch.no_grad()
    def video_states(self, video: Tensor) -> Tensor:
        return self.states(video.permute(1, 0, 2, 3))

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        with atomic_dir(path) as tmp:
            config = {"size": self.size, "embed_dim": self.embed_dim, "state_mean": self.state_mean.tolist(),
                      "state_std": self.state_std.tolist()}  # fmt: skip
            (tmp / CONFIG_NAME).write_text(json.dumps(config) + "\n")
            for name in ("identity", "state"):
                state = {k: v.half().contiguous() for k, v in getattr(self, name).state_dict().items()}
                save_file(state, str(tmp / f"{name}.safetensors"))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path = DEFAULT_ANALYZER) -> PeopleAnalyzer:
        path = Path(path)
        if not (path / CONFIG_NAME).is_file():
            raise MovieGenError(f"{path}: not a people-analyzer folder (no {CONFIG_NAME})")
        config = json.loads((path / CONFIG_NAME).read_text())
        model = cls(int(config["size"]), int(config["embed_dim"]))
        model.state_mean.copy_(torch.tensor(config["state_mean"]))
        model.state_std.copy_(torch.tensor(config["state_std"]))
        for name in ("identity", "state"):
            state = {k: v.float() for k, v in load_safetensors(path / f"{name}.safetensors").items()}
            getattr(model, name).load_state_dict(state)
        return model.eval()


# -- training


def _identity_batch(people: People, rng: np.random.Generator, n: int) -> tuple[Tensor, Tensor]:
    """Face crops of random stills, and (an eighth) frames of two clips, for turned and zoomed faces."""
    labels = [int(i) for i in rng.integers(people.num_identities, size=n)]
    frames = [reference_still(people.identity("train", i), rng, people.size).video[:, 0] for i in labels]
    per_clip = n // 16
    for k in range(2 if per_clip else 0):
        clip = render_clip(people.identity("train", labels[k]), ACTIONS[rng.integers(len(ACTIONS))], rng,
                           people.size, people.frames)  # fmt: skip
        for j, t in enumerate(rng.choice(people.frames, size=per_clip, replace=False)):
            frames[2 + k * per_clip + j] = clip.video[:, int(t)]
            labels[2 + k * per_clip + j] = labels[k]
    return torch.stack([face_crop(f) for f in frames]), torch.tensor(labels)


def _state_batch(people: People, rng: np.random.Generator, n: int) -> tuple[Tensor, Tensor]:
    """Face crops of frames of random clips (eight per clip) and their true :data:`CROP_KEYS`."""
    frames, targets = [], []
    while len(frames) < n:
        clip = render_clip(people.identity("train", int(rng.integers(people.num_identities))),
                           ACTIONS[rng.integers(len(ACTIONS))], rng, people.size, frames=people.frames,
                           fps=int(rng.choice((8, 16))))  # fmt: skip
        for t in rng.choice(people.frames, size=min(8, people.frames), replace=False):
            frames.append(face_crop(clip.video[:, int(t)]))
            targets.append(state_vector(clip, int(t), people.size)[3:])
    return torch.stack(frames[:n]), torch.tensor(targets[:n], dtype=torch.float32)


def train_analyzer(
    steps: int = 1500,
    batch: int = 64,
    identities: int = 512,
    size: int = 64,
    seed: int = 0,
    progress: Callable[[str, int, int, dict], None] | None = None,
    samples: int = 12288,
) -> PeopleAnalyzer:
    """Train both networks (module docstring) on ``samples`` renderings each of training identities,
    rendered once up front (rendering, not the networks, would otherwise be most of the time)."""
    torch.manual_seed(seed)
    model = PeopleAnalyzer(size)
    people = People(num_identities=identities, size=size, frames=16, seed=seed + 101)
    rng = np.random.default_rng([seed, 313])
    chunk = 256
    parts = [_identity_batch(people, rng, chunk) for _ in range(max(1, samples // chunk))]
    id_x, id_y = torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])
    parts = [_state_batch(people, rng, chunk) for _ in range(max(1, samples // chunk))]
    st_x, st_y = torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])
    model.state_mean.copy_(st_y.mean(0))
    model.state_std.copy_(st_y.std(0).clamp_min(1e-3) if len(st_y) > 1 else torch.ones(len(CROP_KEYS)))
    st_y = (st_y - model.state_mean) / model.state_std
    classes = nn.Parameter(F.normalize(torch.randn(identities, model.embed_dim), dim=-1))
    opt = torch.optim.AdamW([*model.parameters(), classes], lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=max(steps, 2), pct_start=0.05)
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        i = torch.randint(len(id_x), (batch,), generator=g)
        cos = model.embed(id_x[i]) @ F.normalize(classes, dim=-1).T
        margin = F.one_hot(id_y[i], identities) * 0.25
        id_loss = F.cross_entropy(24.0 * (cos - margin), id_y[i])
        j = torch.randint(len(st_x), (batch,), generator=g)
        state_loss = F.mse_loss(model.standard_states(st_x[j]), st_y[j])
        opt.zero_grad(set_to_none=True)
        (id_loss + state_loss).backward()
        opt.step()
        sched.step()
        if progress:
            progress("people analyzer", step + 1, steps, {"id": float(id_loss.detach()), "state": float(state_loss.detach())})
    return model.eval()


# -- measures


def detect_action(states: Tensor) -> str:
    """The action (:data:`moviegen.data.people.ACTIONS`) a video's per-frame states (T, len(STATE_KEYS))
    show: the strongest of its changes first to last, relative to thresholds below the world's ranges;
    none above its threshold is ``still``."""
    s = {k: states[:, i] for i, k in enumerate(STATE_KEYS)}
    k = max(1, states.shape[0] // 4)  # average the first and last quarters against noise

    def change(key: str) -> float:
        return float(s[key][-k:].mean() - s[key][:k].mean())

    zoom = math.log(max(float(s["radius"][-k:].mean()), 1e-3) / max(float(s["radius"][:k].mean()), 1e-3))
    scores = {
        "zoom in": zoom / ZOOM,
        "moving left": -change("cx") / MOVE,
        "moving right": change("cx") / MOVE,
        "turning left": -change("yaw") / TURN,
        "turning right": change("yaw") / TURN,
        "smiling": change("smile") / SMILE,
    }
    if scores["zoom in"] >= 1:  # a zoom also moves an off-centre face outwards
        return "zoom in"
    best = max(scores, key=scores.get)
    return best if scores[best] >= 1 else "still"


def copy_distance(states: Tensor, reference: Tensor) -> float:
    """Mean |generated − reference| over :data:`COPY_KEYS` (frame states (T, K) vs the reference's (K,)),
    each key scaled by its spread in the world; a model that copies the reference scores near 0."""
    spread = {"roll": 0.117, "yaw": 0.166, "smile": 0.173, "light_x": 0.167, "light_y": 0.16, "brightness": 0.07,
              "tint": 0.573}  # std of each key under the world's random draws  # fmt: skip
    idx = [STATE_KEYS.index(k) for k in COPY_KEYS]
    scale = torch.tensor([spread[k] for k in COPY_KEYS])
    return float(((states[:, idx] - reference[idx]).abs() / scale).mean())
