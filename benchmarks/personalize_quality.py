"""Personalized Movie Gen Video on the built-in world (issue 18), one run: identity, prompt following and
copy-paste on held-out identities, for every stage and the paired-only ablation.

For every model (the recipe's ``stage1``, ``stage2``, ``stage3`` and ``paired-only`` folders, or any
PT2V folders given), the benchmark's cases (:func:`moviegen.eval.personalize.cases`: held-out identities,
each action in turn, a cross-pair reference) are generated in the training phrasings and in the
evaluation-only paraphrases, and measured by the people analyzer (the world's ArcFace analogue and state
regressor, trained apart from the generator): identity cosine to the reference, top-1 retrieval among the
held-out identities, action accuracy, copy distance (0 = the reference's pose and lighting repeated).
Baselines measured in the same run: the true renderings (``truth``) and the reference still repeated
(``copy reference``).

    python benchmarks/personalize_quality.py --run OUT_OF_MOVIEGEN_TRAIN_PERSONALIZE [--identities 28]
        [--json OUT.json] [--grid docs/personalize_grid.png]
    python benchmarks/personalize_quality.py --model DIR [--model DIR2 ...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from moviegen.eval import personalize as bench
from moviegen.eval.people import DEFAULT_ANALYZER, PeopleAnalyzer
from moviegen.personalize import DEFAULT_PERSONALIZED_MODEL, PersonalizedPipeline


def table(rows: dict[str, dict]) -> str:
    lines = ["| model | identity cos | top-1 retrieval % | action % | copy distance |", "|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['identity_cos']:.3f} | {r['retrieval']:.1f} | {r['action']:.1f} | {r['copy']:.2f} |")
    return "\n".join(lines)


def grid(videos: dict[str, list[torch.Tensor]], cases, path: Path, n: int = 7) -> None:
    """Rows: the reference, the truth, then each model; columns: the first ``n`` cases (frames 0 and last)."""
    from moviegen.video import write_image

    rows = [[c.reference.video[:, 0] for c in cases[:n]], [c.truth.video[:, -1] for c in cases[:n]]]
    rows += [[v[:, -1] for v in vs[:n]] for vs in videos.values()]
    image = torch.cat([torch.cat(r, dim=2) for r in rows], dim=1)
    write_image(path, image)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, default=None, help="a `moviegen train personalize` output folder")
    p.add_argument("--model", type=Path, action="append", default=None)
    p.add_argument("--analyzer", type=Path, default=None, help="default: RUN/analyzer, else the shipped one")
    p.add_argument("--identities", type=int, default=28)
    p.add_argument("--per-identity", type=int, default=3)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--grid", type=Path, default=None)
    args = p.parse_args()
    if args.run is not None:
        models = {name: args.run / name for name in ("stage1", "stage2", "stage3", "paired-only")
                  if (args.run / name).is_dir()}  # fmt: skip
    else:
        models = {str(m): m for m in (args.model or [DEFAULT_PERSONALIZED_MODEL])}
    analyzer_dir = args.analyzer or (args.run / "analyzer" if args.run and (args.run / "analyzer").is_dir()
                                     else DEFAULT_ANALYZER)  # fmt: skip
    analyzer = PeopleAnalyzer.load(analyzer_dir)
    pipes = {name: PersonalizedPipeline.from_pretrained(path) for name, path in models.items()}
    report: dict = {"identities": args.identities, "per_identity": args.per_identity, "analyzer": str(analyzer_dir),
                    "phrasings": {}}  # fmt: skip
    for phrasing in ("train", "paraphrase"):
        cases = bench.cases(args.identities, args.per_identity, phrasing=phrasing)
        gallery = bench.gallery(analyzer, cases)
        rows = bench.baselines(cases, analyzer, gallery)
        videos = {}
        for name, pipe in pipes.items():
            start = time.perf_counter()
            videos[name] = bench.generate_cases(pipe, cases, args.steps)
            rows[name] = bench.score(videos[name], cases, analyzer, gallery) | {
                "seconds": time.perf_counter() - start, "guidance": pipe.guidance_scale}
        report["phrasings"][phrasing] = rows
        print(f"\n{phrasing} phrasing, {len(cases)} cases, {args.identities} held-out identities\n")
        print(table(rows))
        if args.grid is not None and phrasing == "train":
            grid(videos, cases, args.grid)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
