"""``moviegen serve`` as a real process on loopback: kill -9 with jobs queued and running, restart, every job
completes and finished results stay byte for byte; and the bounded load test (20 clients, 200 requests)."""

import time

import pytest

from moviegen.serve.loadtest import ServerProcess, call, run_load
from moviegen.video import read_video

TINY = ("--model", "tiny=tiny-random")
JOB = {"prompt": "a red circle moves right", "frames": 8, "height": 32, "width": 32}


def wait_all(url, ids, timeout=240):
    end, jobs = time.time() + timeout, {}
    while time.time() < end:
        jobs = {i: call(f"{url}/v1/jobs/{i}")[1] for i in ids}
        if all(j["status"] in ("done", "failed", "cancelled") for j in jobs.values()):
            return jobs
        time.sleep(0.2)
    raise AssertionError({i: j["status"] for i, j in jobs.items()})


@pytest.mark.slow
def test_kill_9_with_jobs_queued_and_running_then_restart_finishes_them_all(tmp_path):
    data = tmp_path / "data"
    server = ServerProcess(data, *TINY).start()
    try:
        first = call(server.url + "/v1/jobs", "POST", JOB | {"steps": 2})[1]["id"]
        wait_all(server.url, [first])
        ids = [call(server.url + "/v1/jobs", "POST", JOB | {"steps": 150, "seed": s})[1]["id"] for s in range(4)]
        end = time.time() + 60
        while call(f"{server.url}/v1/jobs/{ids[0]}")[1]["progress"]["step"] < 3 and time.time() < end:
            time.sleep(0.05)
        before = {i: call(f"{server.url}/v1/jobs/{i}")[1]["status"] for i in ids}
        kept = (data / "results" / f"{first}.mp4").read_bytes()
    finally:
        server.kill()
    assert before[ids[0]] == "running" and list(before.values()).count("queued") >= 2
    server = ServerProcess(data, *TINY, port=server.port).start()
    try:
        jobs = wait_all(server.url, [first, *ids])
        assert {j["status"] for j in jobs.values()} == {"done"}
        assert jobs[ids[0]]["attempts"] == 2 and jobs[first]["attempts"] == 1
        assert (data / "results" / f"{first}.mp4").read_bytes() == kept
        for i in ids:
            frames, _ = read_video(data / "results" / f"{i}.mp4")
            assert frames.shape == (3, 8, 32, 32)
        assert not [p for p in (data / "results").iterdir() if p.name.startswith(".")]  # no half-written file
    finally:
        server.stop()


@pytest.mark.slow
def test_load_20_clients_200_requests_nothing_lost(tmp_path):
    with ServerProcess(tmp_path / "data", *TINY, "--max-queue", "12") as server:
        report = run_load(server.url, JOB | {"steps": 2}, clients=20, requests=200)
    assert report.ok, (report.lost, report.unexpected[:5])
    assert report.requests == 200 and report.accepted > 0
    assert report.accepted + report.refused == sum(n for k, n in report.statuses.items() if k.startswith("submit"))
    assert sum(report.finished.values()) == report.accepted
    assert set(report.finished) <= {"done", "cancelled"}
    assert report.latency_ms["all"]["n"] == 200


def test_serve_command_refuses_bad_options_with_one_line(tmp_path, capsys):
    from helpers import run_cli

    for args, message in ((("--host", "0.0.0.0"), "give a --token"), (("--model", "foo"), "NAME=DIR"),
                          (("--model", f"x={tmp_path}"), "no pipeline folder"), (("--max-queue", "0"), ">= 1"),
                          (("--max-upload-mb", "-1"), "max-upload-mb"), (("--device", "tpu"), "unknown device")):  # fmt: skip
        code, _, err = run_cli(capsys, "serve", "--data", tmp_path / "data", *args)
        assert code == 1 and message in err and err.count("\n") == 1, (args, err)
    assert not (tmp_path / "data").exists()
