"""Net win rate, σ and significance for pairwise human evaluation (paper §3.6), checked by hand."""

import math

import pytest

from moviegen.errors import MovieGenError
from moviegen.eval.winrate import AXES, AxisResult, Vote, net_win_rate, sigma, summarize


def test_net_win_rate_counts_ties_in_the_denominator():
    # 6 wins, 2 losses, 2 ties: 100 * (6 - 2) / 10 = +40
    assert net_win_rate(["a"] * 6 + ["b"] * 2 + ["tie"] * 2) == 40.0
    assert net_win_rate(["b", "b", "tie", "a"]) == -25.0
    assert net_win_rate(["tie"] * 3) == 0.0
    assert net_win_rate(["a"]) == 100.0 and net_win_rate(["b"]) == -100.0


def test_net_win_rate_rejects_empty_and_unknown_outcomes():
    with pytest.raises(MovieGenError, match="no votes"):
        net_win_rate([])
    with pytest.raises(MovieGenError, match="outcome"):
        net_win_rate(["a", "left"])


def test_sigma_from_two_annotation_rounds():
    # 4 items, 2 votes each. Round 1: a a a b → 100·(3−1)/4 = +50. Round 2: a tie b b → 100·(1−2)/4 = −25.
    # Sample std (ddof=1) of [50, −25] = |50 − (−25)| / √2 = 75 / √2 ≈ 53.033.
    per_item = [["a", "a"], ["a", "tie"], ["a", "b"], ["b", "b"]]
    value, method = sigma(per_item)
    assert method == "rounds"
    assert value == pytest.approx(75 / math.sqrt(2))


def test_rounds_stop_at_the_fewest_votes_per_item():
    # R = 2: the third vote on item 0 is ignored for σ. Rounds: (a, a) → 100, (tie, b) → −50; σ = 150/√2.
    value, method = sigma([["a", "tie", "b"], ["a", "b"]])
    assert method == "rounds"
    assert value == pytest.approx(150 / math.sqrt(2))


def test_summarize_orders_votes_by_time_and_flags_significance():
    # Same data as the two-round example, given out of order: rounds follow `order`, not row order.
    rows = [
        ("p3", "realness", "b", 7.0),
        ("p0", "realness", "a", 5.0),
        ("p0", "realness", "a", 1.0),
        ("p1", "realness", "a", 2.0),
        ("p1", "realness", "tie", 6.0),
        ("p2", "realness", "b", 8.0),
        ("p2", "realness", "a", 3.0),
        ("p3", "realness", "b", 4.0),
    ]
    # By time: round 1 = a a a b (+50), round 2 = a tie b b (−25), σ = 75/√2. In row order p2's votes would
    # be swapped: rounds a a b b (0) and a tie a b (+25), σ = 25/√2. Totals: 4 wins, 3 losses, 1 tie → +12.5.
    (result,) = summarize(rows)
    assert result == AxisResult(
        "realness", 8, 4, 3, 1, 12.5, pytest.approx(75 / math.sqrt(2)), "rounds", False
    )

    # Every round +100 → σ = 0 and |100| > 0: significant.
    (sure,) = summarize([Vote(f"p{i}", "aesthetics", "a", r) for i in range(3) for r in range(2)])
    assert (sure.net_win_rate, sure.sigma, sure.sigma_method, sure.significant) == (
        100.0,
        0.0,
        "rounds",
        True,
    )


def test_bootstrap_when_items_have_single_votes_is_seeded():
    per_item = [["a"]] * 6 + [["b"]] * 2 + [["tie"]] * 2
    s0, method = sigma(per_item, seed=0)
    assert method == "bootstrap"
    assert sigma(per_item, seed=0) == (s0, "bootstrap")
    assert sigma(per_item, seed=1)[0] != s0
    # Per vote X ∈ {+1, −1, 0}: var = P(win)+P(loss) − (P(win)−P(loss))² = 0.8 − 0.16 = 0.64, so the net win
    # rate of 10 items has σ ≈ 100·0.8/√10 ≈ 25.3; 1000 resamples land within 10 %.
    assert s0 == pytest.approx(100 * 0.8 / math.sqrt(10), rel=0.1)
    assert sigma([["a"]] * 5) == (0.0, "bootstrap")


def test_bootstrap_significance_grows_with_more_items():
    def rows(k):  # k copies of 6 wins, 2 losses, 2 ties; one vote per item
        outcomes = (["a"] * 6 + ["b"] * 2 + ["tie"] * 2) * k
        return [(f"p{i}", "overall_quality", o, i) for i, o in enumerate(outcomes)]

    (few,) = summarize(rows(1))  # +40 with σ ≈ 25.3: not significant
    (many,) = summarize(rows(6))  # +40 with σ ≈ 100·0.8/√60 ≈ 10.3: significant
    assert few.net_win_rate == many.net_win_rate == 40.0
    assert few.sigma_method == many.sigma_method == "bootstrap"
    assert not few.significant and few.sigma > 20
    assert many.significant and many.sigma < 20
    assert summarize(rows(6)) == summarize(rows(6))


def test_summarize_mixes_methods_per_axis_in_paper_order():
    rows = [("x", "zz_custom", "a", 0)]
    rows += [("x", "text_alignment", "b", 0), ("x", "text_alignment", "tie", 1)]
    rows += [("x", "aesthetics", "a", 0), ("y", "aesthetics", "a", 0)]
    results = summarize(rows)
    assert [r.axis for r in results] == ["text_alignment", "aesthetics", "zz_custom"]
    ta, ae, zz = results
    assert (ta.n, ta.wins, ta.losses, ta.ties, ta.net_win_rate) == (2, 0, 1, 1, -50.0)
    assert ta.sigma_method == "rounds"  # one item, 2 rounds: −100 then 0 → σ = 100/√2
    assert ta.sigma == pytest.approx(100 / math.sqrt(2)) and not ta.significant
    assert ae.sigma_method == "bootstrap" and ae.sigma == 0.0 and ae.significant
    assert zz.n == 1 and zz.net_win_rate == 100.0
    assert len(AXES) == 7 and summarize([]) == []


def test_summarize_rejects_unknown_outcomes():
    with pytest.raises(MovieGenError, match="outcome"):
        summarize([("x", "realness", "A", 0)])
