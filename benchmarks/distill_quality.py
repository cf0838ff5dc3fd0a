"""The distilled world model (`world-distilled`, 8 steps, guidance distilled in) against its teacher (`world`, 50
linear-quadratic steps with classifier-free guidance) on `moviegen eval world`'s benchmark (held-out colour ×
shape × motion compositions, seen ones, camera motions; the classical detector), and wall time per video.

Baselines measured in the same run: the teacher at 50 steps (the target), and the teacher itself at the
student's step count (what few steps give without distillation).

    python benchmarks/distill_quality.py [--student DIR] [--seeds 16] [--json OUT] [--cold-runs 3]

Sixteen seeds by default: the target is "every accuracy within 3 points", and an accuracy over the benchmark's 20
held-out prompts has a binomial standard error of about 4 points at 4 seeds (80 cases) and 2 at 16 (320); the
summary prints each accuracy's case count and the standard error of the largest drop.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from moviegen.eval.world import eval_prompts, evaluate_world
from moviegen.pipeline import DEFAULT_MODEL, DISTILLED_MODEL, MovieGenPipeline

KEYS = ("held_out_color", "held_out_shape", "held_out_motion", "seen_color", "seen_shape", "seen_motion", "camera")


def case_count(key: str, seeds: int) -> int:
    """How many benchmark cases one accuracy is over (its prompt group × seeds)."""
    kind = "camera" if key == "camera" else key.rsplit("_", 1)[0]
    return seeds * sum(p.kind == kind for p in eval_prompts())


def standard_error(a: float, b: float, n: int) -> float:
    """Binomial standard error (points) of the difference of two accuracies (%) over ``n`` cases each, taken as
    independent (an upper bound here: both models see the same prompts and seeds)."""
    pa, pb = a / 100, b / 100
    return 100 * ((pa * (1 - pa) + pb * (1 - pb)) / n) ** 0.5


def run(pipe: MovieGenPipeline, steps: int, schedule: str, guidance: float, seeds: int) -> dict:
    calls = []

    def generate(p, seed, _schedule, _steps):
        start = time.perf_counter()
        video = pipe(p.prompt, fps=16, num_steps=steps, schedule=schedule, seed=seed,
                     camera_motion=p.truth.get("camera"), guidance_scale=guidance)  # fmt: skip
        calls.append(time.perf_counter() - start)
        return video

    scores = evaluate_world(generate, seeds, [(schedule, steps)])[f"{schedule}-{steps}"]
    return scores | {"seconds_per_video": statistics.median(calls), "steps": steps, "guidance": guidance}


def warm_seconds(pipe: MovieGenPipeline, steps: int, guidance: float, runs: int = 5) -> float:
    """Median wall time of one in-process video (text encoding, sampling, TAE decoding) at ``steps``."""
    times = []
    for seed in range(runs + 1):
        start = time.perf_counter()
        pipe("a yellow square moving up", num_steps=steps, guidance_scale=guidance, seed=seed)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def cold_generate(model: str, runs: int) -> float:
    """Median wall time of a `moviegen generate` process (load + sample + write)."""
    times = []
    with tempfile.TemporaryDirectory() as folder:
        for i in range(runs):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "moviegen.cli", "generate", "a yellow square moving up", "--model",
                            model, "--out", str(Path(folder) / f"{i}.mp4")], check=True, capture_output=True)  # fmt: skip
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--student", type=Path, default=DISTILLED_MODEL)
    p.add_argument("--seeds", type=int, default=16)
    p.add_argument("--cold-runs", type=int, default=3)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    teacher = MovieGenPipeline.from_pretrained(DEFAULT_MODEL)
    student = MovieGenPipeline.from_pretrained(args.student)
    n, schedule = student.num_steps, student.schedule
    rows = {
        "teacher, 50 steps": run(teacher, teacher.num_steps, teacher.schedule, teacher.guidance_scale, args.seeds),
        f"teacher, {n} steps": run(teacher, n, schedule, teacher.guidance_scale, args.seeds),
        f"student, {n} steps": run(student, n, schedule, student.guidance_scale, args.seeds),
    }
    cold = {"world": cold_generate("world", args.cold_runs), "world-distilled": cold_generate(str(args.student), args.cold_runs)}
    per_steps = {f"teacher, {k} steps": warm_seconds(teacher, k, teacher.guidance_scale) for k in (50, 25, n)}
    per_steps |= {f"student, {k} steps": warm_seconds(student, k, 1.0) for k in (n, max(1, n // 2))}
    header = f"{'model':<20}" + "".join(f"{k.replace('held_out', 'held').replace('_', ' '):>13}" for k in KEYS)
    print(header + f"{'s/video':>9}")
    for name, r in rows.items():
        print(f"{name:<20}" + "".join(f"{r.get(k, float('nan')):>13.1f}" for k in KEYS) + f"{r['seconds_per_video']:>9.3f}")
    target, mine = rows["teacher, 50 steps"], rows[f"student, {n} steps"]
    worst_key = max(KEYS, key=lambda k: target[k] - mine[k])
    worst = target[worst_key] - mine[worst_key]
    se = standard_error(target[worst_key], mine[worst_key], case_count(worst_key, args.seeds))
    print(f"student vs teacher: largest accuracy drop {worst:.1f} points ({worst_key}, "
          f"{case_count(worst_key, args.seeds)} cases, standard error of the difference {se:.1f}); sampling "
          f"{target['seconds_per_video'] / mine['seconds_per_video']:.1f}x faster")  # fmt: skip
    print(f"cold `moviegen generate` (load + sample + write), median of {args.cold_runs}: world {cold['world']:.2f} s, "
          f"world-distilled {cold['world-distilled']:.2f} s")  # fmt: skip
    print("one video in process (text + sampling + TAE decode), median of 5: "
          + ", ".join(f"{name} {seconds:.3f} s" for name, seconds in per_steps.items()))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "cold_generate_s": cold, "warm_s": per_steps,
                                         "largest_drop": worst}, indent=1) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
