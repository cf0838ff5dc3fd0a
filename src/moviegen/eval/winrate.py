"""Net win rate and its σ for pairwise human evaluation (paper §3.6).

Raters compare two models' videos for the same prompt on several axes and answer A, B or tie. The
paper reports the **net win rate** of model A over model B, ``win% − loss%`` in [−100, 100] (ties count
in the denominator), with a σ from repeated annotation; a result with ``|net win rate| > 2σ`` is
significant.

The paper does not say how σ is computed from the repeated annotations; our choice is written out in
:func:`sigma`. Outcomes are always from model A's perspective: ``"a"`` (A wins), ``"b"`` (A loses) or
``"tie"``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from moviegen.errors import MovieGenError

AXES = (
    "text_alignment",
    "frame_consistency",
    "motion_completeness",
    "motion_naturalness",
    "overall_quality",
    "realness",
    "aesthetics",
)
OUTCOMES = ("a", "b", "tie")
BOOTSTRAP_SAMPLES = 1000


class Vote(NamedTuple):
    """One answer: ``item`` (a prompt / video pair), ``axis``, ``outcome`` ("a"/"b"/"tie"), ``order``."""

    item: str
    axis: str
    outcome: str
    order: float


@dataclass(frozen=True)
class AxisResult:
    """Per-axis summary (paper §3.6): counts, net win rate of A vs B, its σ and the 2σ significance flag."""

    axis: str
    n: int
    wins: int
    losses: int
    ties: int
    net_win_rate: float
    sigma: float
    sigma_method: str  # "rounds" or "bootstrap"
    significant: bool


def _check(outcome: str) -> str:
    if outcome not in OUTCOMES:
        raise MovieGenError(f"outcome must be one of {', '.join(OUTCOMES)}; got {outcome!r}")
    return outcome


def net_win_rate(outcomes: Iterable[str]) -> float:
    """``100 · (wins − losses) / n`` of model A over model B (paper §3.6); ties count in ``n``."""
    outcomes = [_check(o) for o in outcomes]
    if not outcomes:
        raise MovieGenError("net win rate of no votes is undefined")
    return 100.0 * (outcomes.count("a") - outcomes.count("b")) / len(outcomes)


def sigma(
    per_item: Sequence[Sequence[str]], samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> tuple[float, str]:
    """σ of the net win rate and the method used: ``"rounds"`` or ``"bootstrap"``.

    ``per_item[i]`` holds item ``i``'s outcomes in the order they were given. The paper (§3.6) takes σ
    from repeated annotation but does not define it; our choice:

    * **rounds**, when every item has at least 2 votes: with ``R`` = the fewest votes any item has,
      annotation round ``r`` (1..R) is the r-th vote on every item; σ is the sample standard deviation
      (ddof=1) of the R per-round net win rates. Votes beyond round R are not used for σ.
    * **bootstrap** otherwise: resample the items with replacement ``samples`` times (a seeded numpy
      Generator), pool all votes of the drawn items, and take the standard deviation (ddof=1) of the
      resampled net win rates.
    """
    if not per_item or any(not votes for votes in per_item):
        raise MovieGenError("σ needs at least one vote per item")
    rounds = min(len(votes) for votes in per_item)
    if rounds >= 2:
        rates = [net_win_rate(votes[r] for votes in per_item) for r in range(rounds)]
        return float(np.std(rates, ddof=1)), "rounds"
    diff = np.array([sum(_check(o) == "a" for o in v) - sum(o == "b" for o in v) for v in per_item])
    count = np.array([len(v) for v in per_item])
    draw = np.random.default_rng(seed).integers(0, len(per_item), size=(samples, len(per_item)))
    rates = 100.0 * diff[draw].sum(1) / count[draw].sum(1)
    return float(np.std(rates, ddof=1)) if samples > 1 else 0.0, "bootstrap"


def summarize(votes: Iterable[Sequence], samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> list[AxisResult]:
    """One :class:`AxisResult` per axis from rows ``(item, axis, outcome, order)`` (paper §3.6).

    Axes come in the paper's order, then any others alphabetically; ``significant`` is
    ``|net win rate| > 2σ``.
    """
    grouped: dict[str, dict[str, list[tuple[float, str]]]] = defaultdict(lambda: defaultdict(list))
    for item, axis, outcome, order in votes:
        grouped[axis][item].append((order, _check(outcome)))
    results = []
    for axis in sorted(grouped, key=lambda a: (AXES.index(a) if a in AXES else len(AXES), a)):
        per_item = [[o for _, o in sorted(v, key=lambda x: x[0])] for v in grouped[axis].values()]
        flat = [o for v in per_item for o in v]
        rate = net_win_rate(flat)
        sd, method = sigma(per_item, samples, seed)
        wins, losses = flat.count("a"), flat.count("b")
        ties = len(flat) - wins - losses
        results.append(AxisResult(axis, len(flat), wins, losses, ties, rate, sd, method, abs(rate) > 2 * sd))
    return results
