"""Blind pairwise human evaluation in the browser (paper §3.6).

Two folders of MP4s, one per model, are paired by relative file name. Each rater logs in with a name and
sees every pair once, in a random order of their own, side by side as "Left" / "Right" (which model is on
which side is drawn per rater and item and recorded), and answers left / right / tie on each evaluation
axis. Answers are stored from model A's perspective in SQLite (WAL, one connection per request); the
results page, :func:`report` and ``report`` on the command line give the net win rate of A over B with
its σ (:mod:`moviegen.eval.winrate`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import random
import secrets
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import typer
from flask import Flask, abort, redirect, render_template_string, request, send_file, session, url_for

from moviegen.errors import MovieGenError
from moviegen.eval.winrate import AXES, AxisResult, summarize
from moviegen.files import write_atomic

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS raters (name TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS items (file TEXT PRIMARY KEY, prompt TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS assignments (
    rater TEXT NOT NULL, item TEXT NOT NULL, position INTEGER NOT NULL, left_model TEXT NOT NULL,
    PRIMARY KEY (rater, item)
);
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, rater TEXT NOT NULL, item TEXT NOT NULL, prompt TEXT NOT NULL,
    left_model TEXT NOT NULL, right_model TEXT NOT NULL, axis TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('left', 'right', 'tie')),
    outcome TEXT NOT NULL CHECK (outcome IN ('a', 'b', 'tie')),
    created REAL NOT NULL, UNIQUE (rater, item, axis)
);
"""
VOTE_COLUMNS = ("id", "rater", "item", "prompt", "left_model", "right_model")
VOTE_COLUMNS += ("axis", "choice", "outcome", "created")
CHOICES = ("left", "right", "tie")


@dataclass(frozen=True)
class Item:
    """A video pair: ``file`` is the relative name in both folders, ``prompt`` the text shown to raters."""

    file: str
    prompt: str


@dataclass(frozen=True)
class Assignment:
    item: str
    position: int
    left_model: str  # "a" or "b"


def outcome_of(choice: str, left_model: str) -> str:
    """A rater's left / right / tie mapped back to model A's perspective: "a", "b" or "tie"."""
    if choice not in CHOICES:
        raise MovieGenError(f"choice must be one of {', '.join(CHOICES)}; got {choice!r}")
    if choice == "tie":
        return "tie"
    other = "b" if left_model == "a" else "a"
    return left_model if choice == "left" else other


class VoteStore:
    """Raters, items, per-rater assignments and votes in one SQLite file (WAL mode).

    Every method opens and closes its own connection, so one store can be shared by request threads;
    writes are short ``BEGIN IMMEDIATE`` transactions and wait (busy timeout) instead of failing.
    """

    def __init__(self, db_path: str | Path, busy_timeout_s: float = 30.0):
        self.path, self.busy_timeout_s = Path(db_path), busy_timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def add_items(self, items: list[Item]) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO items VALUES (?, ?) ON CONFLICT (file) DO UPDATE SET prompt = excluded.prompt",
                [(i.file, i.prompt) for i in items],
            )

    def add_rater(self, name: str, items: list[Item], rng: random.Random) -> list[Assignment]:
        """Register ``name`` and give it every item it has no assignment for yet: a random position after
        its existing ones and a random model on the left."""
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO raters VALUES (?, ?)", (name, time.time()))
            have = {r[0] for r in db.execute("SELECT item FROM assignments WHERE rater = ?", (name,))}
            start = db.execute(
                "SELECT COALESCE(MAX(position) + 1, 0) FROM assignments WHERE rater = ?", (name,)
            )
            start = start.fetchone()[0]
            new = [i.file for i in items if i.file not in have]
            rng.shuffle(new)
            db.executemany(
                "INSERT INTO assignments VALUES (?, ?, ?, ?)",
                [(name, f, start + k, rng.choice("ab")) for k, f in enumerate(new)],
            )
        return self.assignments(name)

    def assignments(self, rater: str) -> list[Assignment]:
        with self.connect() as db:
            rows = db.execute(
                "SELECT item, position, left_model FROM assignments WHERE rater = ? ORDER BY position",
                (rater,),
            )
            return [Assignment(*r) for r in rows]

    def assignment(self, rater: str, item: str) -> Assignment | None:
        with self.connect() as db:
            row = db.execute(
                "SELECT item, position, left_model FROM assignments WHERE rater = ? AND item = ?",
                (rater, item),
            ).fetchone()
        return Assignment(*row) if row else None

    def voted_items(self, rater: str) -> set[str]:
        with self.connect() as db:
            return {r[0] for r in db.execute("SELECT DISTINCT item FROM votes WHERE rater = ?", (rater,))}

    def add_votes(self, rater: str, item: Item, left_model: str, choices: dict[str, str]) -> int:
        """Record one answer per axis (``choices``: axis → left / right / tie) in one transaction; a
        repeated submission of the same rater, item and axis is ignored. Returns the rows added."""
        right_model = "b" if left_model == "a" else "a"
        now = time.time()
        rows = [
            (rater, item.file, item.prompt, left_model, right_model, axis, c, outcome_of(c, left_model), now)
            for axis, c in choices.items()
        ]
        with self.transaction() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO votes (rater, item, prompt, left_model, right_model, axis, choice, "
                "outcome, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            return db.total_changes - before

    def votes(self) -> list[dict]:
        with self.connect() as db:
            return _rows(db)


def _rows(db: sqlite3.Connection) -> list[dict]:
    cur = db.execute(f"SELECT {', '.join(VOTE_COLUMNS)} FROM votes ORDER BY id")
    return [dict(zip(VOTE_COLUMNS, r, strict=True)) for r in cur]


def read_votes(db_path: str | Path) -> list[dict]:
    """All raw votes of an existing vote database, without creating or changing anything."""
    path = Path(db_path)
    if not path.is_file():
        raise MovieGenError(f"vote database not found: {path}")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            return _rows(db)
        finally:
            db.close()
    except sqlite3.Error as e:
        raise MovieGenError(f"not a vote database: {path} ({e})") from None


def results_of(rows: list[dict], seed: int = 0) -> list[AxisResult]:
    return summarize(((r["item"], r["axis"], r["outcome"], r["id"]) for r in rows), seed=seed)


def report(db_path: str | Path) -> list[AxisResult]:
    """Per-axis net win rate of A over B with σ and significance (paper §3.6) from a vote database."""
    return results_of(read_votes(db_path))


def export_csv(db_path: str | Path, path: str | Path) -> Path:
    """Write every raw vote (one row per rater, item and axis) as CSV, atomically."""
    sink = io.StringIO(newline="")
    writer = csv.DictWriter(sink, fieldnames=VOTE_COLUMNS)
    writer.writeheader()
    writer.writerows(read_votes(db_path))
    return write_atomic(path, sink.getvalue())


def _index_prompts(folder: Path) -> dict[str, str]:
    index = folder / "index.json"
    if not index.is_file():
        return {}
    try:
        records = json.loads(index.read_text(encoding="utf-8"))
        return {str(Path(r["file"]).as_posix()): str(r["prompt"]) for r in records}
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise MovieGenError(f"{index}: expected a JSON list of {{'file', 'prompt'}} records ({e})") from None


def _videos(folder: Path) -> set[str]:
    root = folder.resolve()
    found = set()
    for p in folder.rglob("*"):
        rel = p.relative_to(folder)
        if p.suffix.lower() != ".mp4" or any(part.startswith(".") for part in rel.parts):
            continue
        if not p.resolve().is_relative_to(root) or not p.is_file():
            log.warning("ignoring %s: not a file inside %s", p, folder)
            continue
        found.add(rel.as_posix())
    return found


def pair_videos(dir_a: str | Path, dir_b: str | Path) -> list[Item]:
    """Items = MP4s with the same relative name in both folders (sorted); prompts from an ``index.json``
    (a list of ``{"file", "prompt"}`` records) in either folder, else the file stem."""
    dir_a, dir_b = Path(dir_a), Path(dir_b)
    for d in (dir_a, dir_b):
        if not d.is_dir():
            raise MovieGenError(f"video folder not found: {d}")
    a, b = _videos(dir_a), _videos(dir_b)
    for name, folder in [(n, dir_a) for n in sorted(a - b)] + [(n, dir_b) for n in sorted(b - a)]:
        log.warning("ignoring %s: only in %s", name, folder)
    if not a & b:
        raise MovieGenError(f"no MP4 videos with the same name in both {dir_a} and {dir_b}")
    prompts = {**_index_prompts(dir_b), **_index_prompts(dir_a)}
    return [Item(f, prompts.get(f, Path(f).stem)) for f in sorted(a & b)]


def video_path(root: str | Path, name: str, items: dict[str, Item]) -> Path | None:
    """The file of paired item ``name`` under ``root`` if it resolves to a file inside ``root``, else None."""
    if name not in items:
        return None
    root = Path(root).resolve()
    path = (root / name).resolve()
    return path if path.is_relative_to(root) and path.is_file() else None


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Movie Gen human evaluation</title>
<style>
body { font-family: sans-serif; margin: 1.5em; } .pair { display: flex; gap: 1em; }
.pair figure { margin: 0; flex: 1; } video { width: 100%; max-height: 45vh; background: #000; }
table { border-collapse: collapse; } td, th { padding: .3em .8em; border-bottom: 1px solid #ccc; }
fieldset { display: inline-block; margin: .3em; }
</style></head><body>
{% if rater %}<p>Rater: <b id="current-rater">{{ rater }}</b>
· <a href="{{ url_for('logout') }}" id="logout">log out</a>
· <a href="{{ url_for('results') }}">results</a></p>{% endif %}
{% block body %}{% endblock %}
</body></html>"""

LOGIN = """{% extends page %}{% block body %}
<h1>Pairwise video evaluation</h1>
{% if error %}<p id="error" style="color:#b00">{{ error }}</p>{% endif %}
<form method="post" action="{{ url_for('login') }}">
<label for="rater">Your name</label> <input id="rater" name="rater" maxlength="64" required autofocus>
<button type="submit" id="login">Start</button>
</form>{% endblock %}"""

VOTE = """{% extends page %}{% block body %}
<p id="progress">Item {{ done + 1 }} of {{ total }}</p>
<h2 id="prompt">{{ item.prompt }}</h2>
<div class="pair">
<figure><figcaption>Left</figcaption>
<video id="left-video" src="{{ url_for('video', side='left', name=item.file) }}"
 controls loop muted autoplay></video>
</figure>
<figure><figcaption>Right</figcaption>
<video id="right-video" src="{{ url_for('video', side='right', name=item.file) }}"
 controls loop muted autoplay></video>
</figure>
</div>
<form method="post" action="{{ url_for('vote') }}" id="vote-form">
<input type="hidden" name="item" id="item" value="{{ item.file }}">
{% for axis in axes %}<fieldset><legend>{{ axis.replace('_', ' ') }}</legend>
{% for c in choices %}<label>
<input type="radio" name="{{ axis }}" id="{{ axis }}-{{ c }}" value="{{ c }}" required> {{ c }}</label>
{% endfor %}</fieldset>
{% endfor %}
<p><button type="submit" id="submit">Submit</button></p>
</form>{% endblock %}"""

DONE = """{% extends page %}{% block body %}
<h1 id="done">All {{ total }} items rated. Thank you!</h1>{% endblock %}"""

RESULTS = """{% extends page %}{% block body %}
<h1>Net win rate of model A vs model B</h1>
<p>Net win rate = win% − loss% (ties count); * = significant (|net win rate| &gt; 2σ). Paper §3.6.</p>
<table id="results"><tr><th>axis</th><th>n</th><th>win%</th><th>loss%</th><th>tie%</th><th>net</th>
<th>σ</th><th>σ from</th><th>significant</th></tr>
{% for r in results %}<tr id="row-{{ r.axis }}">
<td class="axis">{{ r.axis }}</td><td class="n">{{ r.n }}</td>
<td class="win">{{ '%.1f' % (100 * r.wins / r.n) }}</td>
<td class="loss">{{ '%.1f' % (100 * r.losses / r.n) }}</td>
<td class="tie">{{ '%.1f' % (100 * r.ties / r.n) }}</td><td class="net">{{ '%+.1f' % r.net_win_rate }}</td>
<td class="sigma">{{ '%.1f' % r.sigma }}</td><td class="method">{{ r.sigma_method }}</td>
<td class="significant">{{ '*' if r.significant else '' }}</td></tr>
{% else %}<tr><td colspan="9" id="no-votes">no votes yet</td></tr>{% endfor %}
</table>{% endblock %}"""


def create_app(
    dir_a: str | Path,
    dir_b: str | Path,
    db_path: str | Path,
    seed: int | None = None,
    secret_key: str | bytes | None = None,
) -> Flask:
    """The rating web app over the paired videos of ``dir_a`` (model A) and ``dir_b`` (model B).

    ``seed`` makes each rater's item order and left/right draws reproducible (per rater name); the
    session cookie is signed with ``secret_key`` (random per process when not given).
    """
    roots = {"a": Path(dir_a), "b": Path(dir_b)}
    items = {i.file: i for i in pair_videos(dir_a, dir_b)}
    store = VoteStore(db_path)
    store.add_items(list(items.values()))
    app = Flask(__name__)
    app.url_map.merge_slashes = False  # "/video/left//etc/x" is a 404, not a redirect
    app.secret_key = secret_key or secrets.token_bytes(32)
    app.config.update(MOVIEGEN_STORE=store, MOVIEGEN_ITEMS=len(items))
    page = app.jinja_env.from_string(PAGE)

    def render(template: str, status: int = 200, **kw):
        return render_template_string(template, page=page, rater=session.get("rater"), **kw), status

    def assign(name: str) -> list[Assignment]:
        rng = random.Random(f"{seed}:{name}") if seed is not None else random.Random(secrets.randbits(64))
        return store.add_rater(name, list(items.values()), rng)

    def rater_assignments() -> list[Assignment] | None:
        """The logged-in rater's items in order (assigning any it lacks, e.g. after a database change)."""
        name = session.get("rater")
        if not name:
            return None
        todo = store.assignments(name)
        if not items.keys() <= {a.item for a in todo}:
            todo = assign(name)
        return [a for a in todo if a.item in items]

    @app.route("/")
    def index():
        return redirect(url_for("vote" if session.get("rater") else "login"))

    @app.route("/login", methods=["GET", "POST"])
    def login():
        if request.method == "GET":
            return render(LOGIN)
        name = " ".join(request.form.get("rater", "").split())
        if not name or len(name) > 64:
            return render(LOGIN, 400, error="Please enter a name of 1 to 64 characters.")
        assign(name)
        session["rater"] = name
        return redirect(url_for("vote"))

    @app.route("/logout")
    def logout():
        session.pop("rater", None)
        return redirect(url_for("login"))

    @app.route("/vote", methods=["GET", "POST"])
    def vote():
        todo = rater_assignments()
        if todo is None:
            return redirect(url_for("login"))
        if request.method == "POST":
            a = store.assignment(session["rater"], request.form.get("item", ""))
            choices = {axis: request.form.get(axis) for axis in AXES}
            if a is None or a.item not in items or any(c not in CHOICES for c in choices.values()):
                abort(400)
            store.add_votes(session["rater"], items[a.item], a.left_model, choices)
            return redirect(url_for("vote"))
        voted = store.voted_items(session["rater"])
        pending = [a for a in todo if a.item not in voted]
        if not pending:
            return render(DONE, total=len(todo))
        item = items[pending[0].item]
        return render(
            VOTE, item=item, done=len(todo) - len(pending), total=len(todo), axes=AXES, choices=CHOICES
        )

    @app.route("/video/<side>/<path:name>")
    def video(side: str, name: str):
        a = store.assignment(session["rater"], name) if session.get("rater") else None
        if side not in ("left", "right") or a is None:
            abort(404)
        model = a.left_model if side == "left" else ("b" if a.left_model == "a" else "a")
        path = video_path(roots[model], name, items)
        if path is None:
            abort(404)
        return send_file(path, mimetype="video/mp4", conditional=True, max_age=0)

    @app.route("/results")
    def results():
        return render(RESULTS, results=results_of(store.votes()))

    return app


def format_table(results: list[AxisResult]) -> str:
    """A plain-text table: axis, n, win%, loss%, tie%, net ± σ and "*" when significant."""
    lines = [f"{'axis':<20} {'n':>5} {'win%':>6} {'loss%':>6} {'tie%':>6} {'net ± σ':>15}  sig"]
    for r in results:
        pct = [100 * k / r.n for k in (r.wins, r.losses, r.ties)]
        net = f"{r.net_win_rate:+.1f} ± {r.sigma:.1f}"
        lines.append(
            f"{r.axis:<20} {r.n:>5} {pct[0]:>6.1f} {pct[1]:>6.1f} {pct[2]:>6.1f} {net:>15}  "
            f"{'*' if r.significant else ''}"
        )
    return "\n".join(lines)


humaneval_app = typer.Typer(
    help="Blind pairwise human evaluation of two models' videos (paper §3.6).", no_args_is_help=True
)


def _run_server(app: Flask, host: str, port: int) -> None:
    from werkzeug.serving import run_simple

    run_simple(host, port, app, threaded=True)


@humaneval_app.command()
def serve(
    a: Annotated[Path, typer.Option("--a", help="Folder of model A's MP4 videos.")],
    b: Annotated[Path, typer.Option("--b", help="Folder of model B's MP4 videos (same file names).")],
    db: Annotated[Path, typer.Option("--db", help="SQLite file the votes go to.")] = Path("votes.sqlite"),
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    seed: Annotated[int | None, typer.Option(help="Reproducible per-rater order and left/right.")] = None,
) -> None:
    """Serve the rating web app: raters log in with a name and vote left / right / tie per axis."""
    app = create_app(a, b, db, seed=seed)
    typer.echo(f"{app.config['MOVIEGEN_ITEMS']} video pairs; rating on http://{host}:{port}/ (votes: {db})")
    _run_server(app, host, port)


@humaneval_app.command("report")
def report_command(
    db: Annotated[Path, typer.Argument(help="The SQLite vote database written by serve.")],
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Also write every raw vote as CSV.")] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the per-axis results as JSON.")
    ] = None,
) -> None:
    """Print the per-axis net win rate of A vs B with σ; "*" marks |net| > 2σ (paper §3.6)."""
    results = report(db)
    if not results:
        raise MovieGenError(f"no votes in {db}")
    typer.echo(format_table(results))
    if csv_path is not None:
        typer.echo(f"wrote {export_csv(db, csv_path)}")
    if json_path is not None:
        data = json.dumps([asdict(r) for r in results], indent=2) + "\n"
        typer.echo(f"wrote {write_atomic(json_path, data)}")
