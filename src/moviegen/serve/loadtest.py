"""A bounded load test of ``moviegen serve`` on loopback, and a server process to run it against.

:func:`run_load`: ``clients`` threads each send ``requests // clients`` requests in a fixed pattern (submit a
job, read its status, list, cancel some, read /v1/info), then wait until every accepted job has finished.
Every answer must be an accept (202/200) or a clean refusal (429 with a JSON error); a job the server
accepted and then lost (missing, or not done/cancelled at the end) is counted. Used by
``benchmarks/serve_load.py`` (the numbers in docs/serve.md) and the tests.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def call(url: str, method: str = "GET", body: dict | None = None, timeout: float = 30) -> tuple[int, dict]:
    """One request; returns the status and the JSON body (every answer of the API is JSON)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


class ServerProcess:
    """``moviegen serve`` in a child process on a free loopback port; :meth:`kill` is ``kill -9``."""

    def __init__(self, data: Path, *args: str, port: int | None = None):
        self.data, self.args, self.port = Path(data), args, port or free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> ServerProcess:
        command = [sys.executable, "-m", "moviegen.cli", "serve", "--port", str(self.port), "--data", str(self.data),
                   *self.args]  # fmt: skip
        self.log = open(self.data.parent / f"serve-{self.port}.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT,
                                        env=os.environ | {"PYTHONUNBUFFERED": "1"})  # fmt: skip
        end = time.time() + timeout
        while time.time() < end:
            if self.process.poll() is not None:
                raise RuntimeError(f"moviegen serve exited with {self.process.returncode}: {self.read_log()}")
            try:
                if call(self.url + "/openapi.json", timeout=2)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"moviegen serve did not answer in {timeout} s: {self.read_log()}")

    def read_log(self) -> str:
        return (self.data.parent / f"serve-{self.port}.log").read_text(errors="replace")[-2000:]

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs (the crash the queue must survive)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class LoadReport:
    requests: int = 0
    seconds: float = 0.0
    drain_seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    accepted: int = 0
    refused: int = 0
    finished: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.lost and not self.unexpected


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50": round(statistics.median(ordered) * 1000, 2), "p95": round(p95 * 1000, 2),
            "max": round(ordered[-1] * 1000, 2), "n": len(ordered)}  # fmt: skip


def run_load(url: str, job: dict, clients: int = 20, requests: int = 200, drain_timeout: float = 300) -> LoadReport:
    """``clients`` concurrent clients, ``requests`` requests in all, then wait for every accepted job."""
    per_client = requests // clients
    pattern = ["submit", "status", "list", "submit", "status", "cancel", "info", "submit", "status", "list"]
    timings: dict[str, list[float]] = {}
    report = LoadReport()
    accepted: list[str] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        mine: list[str] = []
        for i in range(per_client):
            kind = pattern[i % len(pattern)]
            if kind in ("status", "cancel") and not mine:
                kind = "list"
            method, path, body = {
                "submit": ("POST", "/v1/jobs", job | {"seed": k * 1000 + i}),
                "status": ("GET", f"/v1/jobs/{mine[-1]}" if mine else "", None),
                "cancel": ("DELETE", f"/v1/jobs/{mine[-1]}" if mine else "", None),
                "list": ("GET", "/v1/jobs?limit=20", None),
                "info": ("GET", "/v1/info", None),
            }[kind]
            start = time.perf_counter()
            try:
                status, answer = call(url + path, method, body)
            except (OSError, ValueError) as e:
                status, answer = -1, {"error": repr(e)}
            elapsed = time.perf_counter() - start
            with lock:
                timings.setdefault(kind, []).append(elapsed)
                report.statuses[f"{kind} {status}"] = report.statuses.get(f"{kind} {status}", 0) + 1
                clean = status in (200, 202) or (status == 429 and kind == "submit" and "error" in answer)
                if not clean:
                    report.unexpected.append(f"{method} {path}: {status} {answer}")
                if kind == "submit" and status == 202:
                    accepted.append(answer["id"])
                    mine.append(answer["id"])
                elif kind == "submit":
                    report.refused += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report.seconds = round(time.perf_counter() - start, 2)
    report.requests = sum(len(v) for v in timings.values())
    report.accepted = len(accepted)
    drain_start, pending = time.perf_counter(), set(accepted)
    while pending and time.perf_counter() - drain_start < drain_timeout:
        for job_id in sorted(pending):
            status, answer = call(f"{url}/v1/jobs/{job_id}")
            if status == 200 and answer["status"] in ("done", "cancelled", "failed"):
                pending.discard(job_id)
                report.finished[answer["status"]] = report.finished.get(answer["status"], 0) + 1
                if answer["status"] == "failed":
                    report.lost.append(f"{job_id}: failed: {answer['error']}")
            elif status != 200:
                pending.discard(job_id)
                report.lost.append(f"{job_id}: {status} {answer}")
        time.sleep(0.2)
    report.lost += [f"{job_id}: not finished after {drain_timeout} s" for job_id in sorted(pending)]
    report.drain_seconds = round(time.perf_counter() - drain_start, 2)
    report.latency_ms = {kind: percentiles(v) for kind, v in sorted(timings.items())}
    report.latency_ms["all"] = percentiles([x for v in timings.values() for x in v])
    return report
