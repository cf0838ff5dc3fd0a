"""Movie Gen Edit on the built-in world (issue 17), one run: the stage ablation on held-out edit compositions.

For every model (the recipe's ``stage1``, ``stage2``, ``stage3`` folders, or any Edit folders given), the
world's Edit Bench (:func:`moviegen.eval.edit.bench_cases`: test-split videos, per task ``--per-task``
edits whose composition no training stage used) is edited in the training phrasings and in the
evaluation-only paraphrases, and scored by the detector: edit accuracy, preservation, both, PSNR against
the exact edited clip (unedited region; whole clip for invert). Baselines measured in the same run: the
unedited input (copy) and the TAE round trip of the true edit (the ceiling of any latent editor).

Edits are sampled in batches of one task (the same sampler and model call as ``EditPipeline``; the noise
of a batch comes from one generator, so samples differ from single ``moviegen edit`` calls).

    python benchmarks/edit_quality.py --run OUT_OF_MOVIEGEN_TRAIN_EDIT [--per-task 24] [--json OUT.json]
        [--grid docs/edit_grid.png]
    python benchmarks/edit_quality.py --model DIR [--model DIR2 ...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from moviegen.data.edits import BENCH_TASKS, TASKS, apply_edit
from moviegen.edit import DEFAULT_EDIT_MODEL, EditPipeline
from moviegen.eval.edit import bench_cases, copy_baseline, evaluate_edits, tae_ceiling
from moviegen.train.edit import edit_batch


def batched_outputs(
    pipe: EditPipeline, cases, steps: int, guidance: float, seed: int = 0
) -> dict[str, torch.Tensor]:
    outs = {}
    for task in dict.fromkeys(c.task for c in cases):
        group = [c for c in cases if c.task == task]
        videos = edit_batch(
            pipe, [c.video for c in group], [c.instruction for c in group], steps, guidance, seed
        )
        outs |= {c.id: v for c, v in zip(group, videos, strict=True)}
    return outs


def table(rows: dict[str, dict], tasks) -> str:
    head = "| model | " + " | ".join(tasks) + " | all |"
    lines = [head, "|" + "---|" * (len(tasks) + 2)]
    for name, t in rows.items():
        cells = [f"{t[k]['edit']:.0f} / {t[k]['preserve']:.0f} / {t[k]['psnr']:.1f}" for k in (*tasks, "all")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, default=None, help="a `moviegen train edit` output folder")
    p.add_argument("--model", type=Path, action="append", default=None)
    p.add_argument("--per-task", type=int, default=24)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--segment", action="store_true", help="also score segmentation (a stage-2 task)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--grid", type=Path, default=None)
    args = p.parse_args()
    if args.run is not None:
        models = {f"stage {s[-1]}" if s != "stage1" else "stage 1": args.run / s
                  for s in ("stage1", "stage2", "stage3") if (args.run / s).is_dir()}  # fmt: skip
        models = {{"stage 1": "stage 1 only", "stage 2": "stages 1+2", "stage 3": "stages 1+2+3"}[k]: v
                  for k, v in models.items()}  # fmt: skip
    else:
        models = {str(m): m for m in (args.model or [DEFAULT_EDIT_MODEL])}
    tasks = TASKS if args.segment else BENCH_TASKS
    results: dict = {"per_task": args.per_task, "tasks": list(tasks), "phrasings": {}}
    start = time.perf_counter()
    pipes = {name: EditPipeline.from_pretrained(path) for name, path in models.items()}
    outputs = {}
    for phrasing in ("train", "paraphrase"):
        cases = bench_cases(per_task=args.per_task, phrasing=phrasing, tasks=tasks)
        rows = {}
        for name, pipe in pipes.items():
            steps = args.steps or pipe.num_steps
            outs = batched_outputs(pipe, cases, steps, pipe.guidance_scale)
            outputs[(name, phrasing)] = outs
            rows[f"{name} (guidance {pipe.guidance_scale:g})"] = evaluate_edits(lambda c: outs[c.id], cases)[
                0
            ]
        if phrasing == "train":
            rows["copy input (baseline)"] = evaluate_edits(copy_baseline, cases)[0]
            rows["TAE round trip of the truth (ceiling)"] = evaluate_edits(tae_ceiling(next(iter(pipes.values())).tae),
                                                                           cases)[0]  # fmt: skip
        results["phrasings"][phrasing] = rows
        print(
            f"\n### {phrasing} phrasing — edit % / preserve % / PSNR dB ({args.per_task} held-out edits per task)\n"
        )
        print(table(rows, tasks))
        print("\n| model | edit % | preserve % | both % | PSNR |\n|---|---|---|---|---|")
        for name, t in rows.items():
            a = t["all"]
            print(f"| {name} | {a['edit']:.1f} | {a['preserve']:.1f} | {a['both']:.1f} | {a['psnr']:.2f} |")
    results["seconds"] = time.perf_counter() - start
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if args.grid:
        from moviegen.video import write_image

        cases = bench_cases(per_task=1, tasks=tasks)
        last = list(pipes)[-1]
        outs = outputs[(last, "train")]
        frames = []
        for c in cases:  # one row per task: source, edit, truth at frames 0 and 15
            out = outs.get(f"{c.task}-000")
            truth = apply_edit(c.scene, c.edit).render()
            frames.append(torch.cat([torch.cat([v[:, k] for k in (0, v.shape[1] - 1)], dim=2)
                                     for v in (c.video, out, truth)], dim=2))  # fmt: skip
        write_image(args.grid, torch.cat(frames, dim=1))
        print(f"wrote {args.grid} (rows: {', '.join(c.task for c in cases)}; columns: source, edit, truth)")
    print(f"\n{results['seconds']:.0f} s")


if __name__ == "__main__":
    main()
