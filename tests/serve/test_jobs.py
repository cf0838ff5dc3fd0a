"""The persistent job queue: order, progress, cancel, the queue bound, and recovery after a kill."""

import sqlite3

import pytest

from moviegen.errors import MovieGenError
from moviegen.serve.jobs import JobStore, QueueFull, is_job_id


def test_jobs_run_in_order_with_progress_and_results(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    a = store.submit("generate", {"prompt": "a"})
    b = store.submit("generate", {"prompt": "b"})
    assert is_job_id(a.id) and a.status == "queued" and a.public()["result"] is None
    job = store.claim()
    assert job.id == a.id and job.status == "running" and job.attempts == 1
    store.set_stages(a.id, ["sampling", "upsampling"])
    assert store.progress(a.id, "upsampling", 5, 10) is False
    assert store.get(a.id).fraction == pytest.approx(0.75)
    store.finish(a.id, "done", result=f"{a.id}.mp4")
    done = store.get(a.id).public()
    assert done["status"] == "done" and done["progress"]["fraction"] == 1.0
    assert done["result"] == f"/v1/jobs/{a.id}/result"
    assert store.claim().id == b.id and store.claim() is None
    assert [j.id for j in store.list()] == [b.id, a.id]
    assert store.counts() | {} == {"queued": 0, "running": 1, "done": 1, "failed": 0, "cancelled": 0}


def test_cancel_queued_at_once_running_by_flag(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    a, b = store.submit("generate", {}), store.submit("generate", {})
    store.claim()
    assert store.cancel(b.id).status == "cancelled"
    running = store.cancel(a.id)
    assert running.status == "running" and running.cancel
    assert store.cancel_asked(a.id) and not store.cancel_asked(b.id + "0")
    assert store.progress(a.id, "sampling", 1, 2) is True
    store.finish(a.id, "cancelled")
    assert store.cancel(a.id).status == "cancelled"  # a finished job stays as it is


def test_full_queue_refuses(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite", max_queue=2)
    store.submit("generate", {})
    store.submit("generate", {})
    with pytest.raises(QueueFull):
        store.submit("generate", {})
    store.finish(store.claim().id, "done")
    store.submit("generate", {})  # room again


def test_recover_requeues_running_jobs_and_keeps_finished(tmp_path):
    path = tmp_path / "jobs.sqlite"
    store = JobStore(path)
    done, running, asked, queued = (store.submit("generate", {"n": i}) for i in range(4))
    store.claim()
    store.finish(done.id, "done", result="x.mp4")
    store.claim()
    store.progress(running.id, "sampling", 3, 10)
    store.claim()
    store.cancel(asked.id)
    # no close(): a killed server never closes its connection
    again = JobStore(path)
    assert again.recover() == 1
    assert again.get(done.id).status == "done" and again.get(done.id).result == "x.mp4"
    requeued = again.get(running.id)
    assert requeued.status == "queued" and requeued.step == 0 and requeued.attempts == 1
    assert again.get(asked.id).status == "cancelled"
    assert [again.claim().id, again.claim().id] == [running.id, queued.id]
    assert again.get(running.id).attempts == 2
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_not_a_database_is_one_error(tmp_path):
    bad = tmp_path / "jobs.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(MovieGenError, match="not a job database"):
        JobStore(bad)
