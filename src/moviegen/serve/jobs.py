"""The service's persistent job queue: one SQLite file in WAL mode under the data folder.

A job is a row: its request (JSON), status (``queued`` → ``running`` → ``done`` | ``failed`` |
``cancelled``), progress (the cascade's stages, the current one, its step i of N) and the name of its result
file. Every change is one transaction with ``synchronous=FULL``, so a ``kill -9`` loses nothing that was
answered: at start, :meth:`JobStore.recover` puts the jobs that were running back in the queue (their
partial outputs were never published: results are written to a temporary file and renamed).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from moviegen.errors import MovieGenError

STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    task TEXT NOT NULL,
    request TEXT NOT NULL,
    uploads TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL,
    stages TEXT NOT NULL DEFAULT '[]',
    stage TEXT,
    step INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    error TEXT,
    cancel INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq);
"""


class QueueFull(MovieGenError):
    """The queue holds ``max_queue`` unfinished jobs: the API answers 429."""


@dataclass
class Job:
    id: str
    task: str
    request: dict
    uploads: dict
    status: str
    stages: list[str] = field(default_factory=list)
    stage: str | None = None
    step: int = 0
    total: int = 0
    result: str | None = None
    error: str | None = None
    cancel: bool = False
    attempts: int = 0
    created: float = 0.0
    started: float | None = None
    finished: float | None = None

    @property
    def fraction(self) -> float:
        """Progress over the whole cascade in [0, 1]: finished stages plus the current stage's steps."""
        if self.status == "done":
            return 1.0
        if not self.stages or self.stage not in self.stages:
            return 0.0
        inside = self.step / self.total if self.total else 0.0
        return (self.stages.index(self.stage) + inside) / len(self.stages)

    def public(self) -> dict:
        """The JSON the API answers for this job."""
        return {
            "id": self.id,
            "task": self.task,
            "status": self.status,
            "progress": {
                "stage": self.stage,
                "step": self.step,
                "total": self.total,
                "stages": self.stages,
                "fraction": round(self.fraction, 4),
            },
            "request": self.request,
            "result": f"/v1/jobs/{self.id}/result" if self.status == "done" else None,
            "error": self.error,
            "attempts": self.attempts,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
        }


def _job(row: sqlite3.Row) -> Job:
    values = dict(row)
    values.pop("seq")
    for key in ("request", "uploads", "stages"):
        values[key] = json.loads(values[key])
    values["cancel"] = bool(values["cancel"])
    return Job(**values)


def new_job_id() -> str:
    """A job id: 32 hex digits (the API accepts nothing else in a URL, so no id can name a path)."""
    return uuid.uuid4().hex


def is_job_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


class JobStore:
    """Thread-safe access to the jobs table (one connection, one lock; WAL lets readers of other
    processes, such as a second server reading the file, go on during a write)."""

    def __init__(self, path: str | Path, max_queue: int = 64):
        self.path = Path(path)
        self.max_queue = max_queue
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise MovieGenError(f"{self.path}: not a job database ({e})") from None
        self.changed = threading.Condition()  # notified on every change (the worker and SSE wait on it)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        with self.changed:
            self.changed.notify_all()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- the API's side

    def submit(self, task: str, request: dict, uploads: dict | None = None, job_id: str | None = None) -> Job:
        """Queue a job; :class:`QueueFull` when ``max_queue`` jobs are queued or running."""
        job_id = job_id or new_job_id()
        with self._write() as db:
            (pending,) = db.execute("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')").fetchone()
            if pending >= self.max_queue:
                raise QueueFull(f"the queue is full ({pending} jobs waiting or running): try again later")
            db.execute(
                "INSERT INTO jobs (id, task, request, uploads, status, created) VALUES (?, ?, ?, ?, 'queued', ?)",
                (job_id, task, json.dumps(request), json.dumps(uploads or {}), time.time()),
            )
        return self.get(job_id)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row is not None else None

    def list(self, status: str | None = None, limit: int = 100, offset: int = 0) -> list[Job]:
        """Newest first."""
        query, args = "SELECT * FROM jobs", []
        if status is not None:
            query, args = query + " WHERE status = ?", [status]
        with self._lock:
            rows = self._db.execute(query + " ORDER BY seq DESC LIMIT ? OFFSET ?", (*args, limit, offset))
            return [_job(r) for r in rows.fetchall()]

    def cancel(self, job_id: str) -> Job | None:
        """A queued job is cancelled at once; a running one is asked to stop (the worker checks between
        steps); a finished one stays as it is."""
        with self._write() as db:
            db.execute("UPDATE jobs SET status = 'cancelled', finished = ? WHERE id = ? AND status = 'queued'",
                       (time.time(), job_id))  # fmt: skip
            db.execute("UPDATE jobs SET cancel = 1 WHERE id = ? AND status = 'running'", (job_id,))
        return self.get(job_id)

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return {status: 0 for status in STATUSES} | {s: n for s, n in rows}

    # -- the worker's side

    def recover(self) -> int:
        """At start: jobs left running by a killed server go back to the queue (or are cancelled, when
        that was asked). Returns how many were requeued."""
        with self._write() as db:
            db.execute("UPDATE jobs SET status = 'cancelled', finished = ? WHERE status = 'running' AND cancel = 1",
                       (time.time(),))  # fmt: skip
            n = db.execute("UPDATE jobs SET status = 'queued', stage = NULL, step = 0, total = 0 "
                           "WHERE status = 'running'").rowcount  # fmt: skip
        return n

    def claim(self) -> Job | None:
        """The oldest queued job, now running; None when the queue is empty."""
        with self._write() as db:
            row = db.execute("SELECT id FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET status = 'running', started = ?, attempts = attempts + 1 WHERE id = ?",
                       (time.time(), row["id"]))  # fmt: skip
        return self.get(row["id"])

    def set_stages(self, job_id: str, stages: list[str]) -> None:
        with self._write() as db:
            db.execute("UPDATE jobs SET stages = ?, stage = ?, step = 0, total = 0 WHERE id = ?",
                       (json.dumps(stages), stages[0] if stages else None, job_id))  # fmt: skip

    def progress(self, job_id: str, stage: str, step: int, total: int) -> bool:
        """Record step ``step`` of ``total`` of ``stage``; returns whether a cancel was asked."""
        with self._write() as db:
            db.execute("UPDATE jobs SET stage = ?, step = ?, total = ? WHERE id = ?", (stage, step, total, job_id))
            (cancel,) = db.execute("SELECT cancel FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(cancel)

    def cancel_asked(self, job_id: str) -> bool:
        """Whether a cancel was asked (a read only: :meth:`progress` records a step and answers the same)."""
        with self._lock:
            row = self._db.execute("SELECT cancel FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row[0])

    def finish(self, job_id: str, status: str, result: str | None = None, error: str | None = None) -> None:
        if status not in FINISHED:
            raise ValueError(f"not a final status: {status}")
        with self._write() as db:
            db.execute("UPDATE jobs SET status = ?, result = ?, error = ?, finished = ? WHERE id = ?",
                       (status, result, error, time.time(), job_id))  # fmt: skip

    def wait(self, timeout: float) -> None:
        """Block until the next change or ``timeout`` seconds."""
        with self.changed:
            self.changed.wait(timeout)
