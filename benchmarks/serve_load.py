"""Load test of `moviegen serve` on loopback: 20 concurrent clients, 200 requests (submit / status / list /
cancel / info), then every accepted job must finish or be cancelled; none lost. Prints p50/p95 API latency.

Baseline measured in the same run, on the same server: the same number of requests sent one at a time while
the queue is empty (no job running, no other client), so the table shows what the load and the worker cost
the API.

    python benchmarks/serve_load.py [--clients 20] [--requests 200] [--steps 2] [--max-queue 16]
                                    [--model tiny-random|world] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from moviegen.serve.loadtest import ServerProcess, call, percentiles, run_load


def idle_latency(url: str, n: int) -> dict:
    """One client, one request at a time, nothing queued: GET /v1/info and GET /v1/jobs."""
    times = []
    for i in range(n):
        start = time.perf_counter()
        status, _ = call(url + ("/v1/info" if i % 2 else "/v1/jobs?limit=20"))
        times.append(time.perf_counter() - start)
        assert status == 200
    return percentiles(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--steps", type=int, default=2, help="Euler steps of each submitted job")
    p.add_argument("--max-queue", type=int, default=16)
    p.add_argument("--model", default="tiny-random", help="tiny-random (API load) or world (the shipped model)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="serve-load-"))
    model = ["--model", "tiny=tiny-random"] if args.model == "tiny-random" else ["--model", "world"]
    job = {"prompt": "a red circle moves right", "steps": args.steps}
    if args.model == "tiny-random":
        job |= {"frames": 8, "height": 32, "width": 32}
    with ServerProcess(folder / "data", *model, "--max-queue", str(args.max_queue)) as server:
        baseline = idle_latency(server.url, args.requests)
        report = run_load(server.url, job, clients=args.clients, requests=args.requests)
    result = {"clients": args.clients, "model": args.model, "job": job, "max_queue": args.max_queue,
              "idle": baseline, **report.__dict__, "ok": report.ok}  # fmt: skip
    print(f"{report.requests} requests from {args.clients} clients in {report.seconds:.1f} s "
          f"(+{report.drain_seconds:.1f} s until the last job ended); accepted {report.accepted}, "
          f"refused 429: {report.refused}; finished {report.finished}; lost {len(report.lost)}; "
          f"unexpected answers {len(report.unexpected)}")  # fmt: skip
    print(f"{'requests':<22}{'n':>5}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
    for kind, row in [("idle (baseline)", baseline)] + list(report.latency_ms.items()):
        print(f"{kind:<22}{row['n']:>5}{row['p50']:>10.1f}{row['p95']:>10.1f}{row['max']:>10.1f}")
    everything = report.latency_ms["all"]
    print(f"under load / idle: p50 {everything['p50'] / baseline['p50']:.1f}x, p95 {everything['p95'] / baseline['p95']:.1f}x")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    raise SystemExit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
