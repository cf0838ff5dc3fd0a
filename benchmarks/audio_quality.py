"""Movie Gen Audio on the sound world (issue 19), one run: synchrony, events, pitch / timbre and tempo on
held-out combinations, in the training phrasings and in evaluation-only paraphrases; the autoencoder's
round trip; and the audio extension on a long video with and without the triangular fusion.

Every number comes with baselines measured in the same run (:func:`moviegen.eval.audio_bench.baselines`):
the world's true audio (the detector's ceiling), the truth through the model's own autoencoder (the
ceiling of any DiT on that latent), another case's true audio (right kind of sound, wrong times) and
silence. The extension table also holds the true audio measured at the same window boundaries.

    python benchmarks/audio_quality.py --run OUT_OF_MOVIEGEN_TRAIN_AUDIO [--json OUT.json]
    python benchmarks/audio_quality.py [--model DIR] [--embedding DIR] [--extension-seconds 60]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from moviegen.audio import DEFAULT_AUDIO_MODEL, AudioPipeline
from moviegen.eval import audio_bench as bench
from moviegen.eval.audio import DEFAULT_AUDIO_EMBEDDING, AudioEmbedding


def pct(v) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def quality_table(rows: dict[str, dict]) -> str:
    lines = ["| audio | impact F1 | P | R | median onset error (ms) | pitch % | timbre % | tempo ±5 % | FAD | "
             "F1 without music |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in rows.items():
        ms = "—" if r["median_onset_error_ms"] is None else f"{r['median_onset_error_ms']:.1f}"
        lines.append(f"| {name} | {r['impact_f1']:.3f} | {r['impact_precision']:.3f} | {r['impact_recall']:.3f} | {ms} "
                     f"| {pct(r['pitch_accuracy'])} | {pct(r['timbre_accuracy'])} | {pct(r['tempo_within_5pct'])} "
                     f"| {r.get('fad', float('nan')):.2f} | {r['no_music']['impact_f1']:.3f} |")  # fmt: skip
    return "\n".join(lines)


def extension_table(modes: dict[str, dict]) -> str:
    lines = ["| extension | seconds | seam loudness ratio | seam discontinuity ratio | impact F1 | median onset (ms) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for mode, r in modes.items():
        ms = "—" if r["median_onset_error_ms"] is None else f"{r['median_onset_error_ms']:.1f}"
        loud = "—" if r["loudness"] is None else f"{r['loudness']:.3f}"
        disc = "—" if r["discontinuity"] is None else f"{r['discontinuity']:.3f}"
        lines.append(f"| {mode} | {r['seconds']:.2f} | {loud} | {disc} | {r['impact_f1']:.3f} | {ms} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, default=None, help="a `moviegen train audio` output folder")
    p.add_argument("--model", type=Path, default=None, help="an AudioPipeline folder (default: the shipped one)")
    p.add_argument("--embedding", type=Path, default=None, help="default: RUN/audio-embedding, else the shipped one")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--extension-seconds", type=float, default=60.0)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    model = args.model or (args.run / "pipeline" if args.run else DEFAULT_AUDIO_MODEL)
    embedding = args.embedding or (args.run / "audio-embedding" if args.run else DEFAULT_AUDIO_EMBEDDING)
    pipe = AudioPipeline.from_pretrained(model)
    judge = AudioEmbedding.from_pretrained(embedding).eval()
    reference = judge.embed(bench.reference_set())
    seconds = pipe.window / pipe.autoencoder.config.latent_rate
    report: dict = {"model": str(model), "phrasings": {}}
    start = time.perf_counter()
    for phrasing in bench.PHRASINGS:
        cases = bench.cases(phrasing, seconds=seconds)
        rows = {name: bench.score(audios, cases, judge, reference)
                for name, audios in bench.baselines(cases, pipe.autoencoder).items()}  # fmt: skip
        rows["Movie Gen Audio (world)"] = bench.score(bench.generate_cases(pipe, cases, args.steps), cases, judge,
                                                      reference)  # fmt: skip
        report["phrasings"][phrasing] = rows
        print(f"\n### {phrasing} phrasing ({len(cases)} held-out cases)\n\n{quality_table(rows)}", flush=True)
        if phrasing == "train":
            report["autoencoder"] = bench.round_trip(pipe.autoencoder, [c.clip.audio for c in cases])
    a = report["autoencoder"]
    print(f"\n| round trip ({a['clips']} held-out clips) | mel distance | SI-SDR (dB) |\n|---|---|---|\n"
          f"| audio autoencoder | {a['mel_distance']:.3f} | {a['si_sdr_db']:.2f} |\n"
          f"| Griffin-Lim of the true magnitude | {a['griffin_lim_mel_distance']:.3f} | {a['griffin_lim_si_sdr_db']:.2f} |")
    if args.extension_seconds > 0:
        report["extension"] = bench.extension(pipe, bench.long_clip(args.extension_seconds), steps=args.steps)
        print(f"\n### extension: a {args.extension_seconds:g} s held-out video\n\n{extension_table(report['extension'])}")
    report["seconds"] = time.perf_counter() - start
    print(f"\n({report['seconds']:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
