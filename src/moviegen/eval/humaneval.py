"""Blind pairwise human evaluation in the browser (paper §3.6).

Two folders of MP4s, one per model, are paired by relative file name. Raters are invited by name
(``moviegen humaneval invite``): each gets a personal link holding a random token, of which only the
SHA-256 is stored, so a rater cannot vote as another or come back under new names. Each rater
sees every pair once, in a random order of their own, side by side as "Left" / "Right" (which model is on
which side is drawn per rater and item and recorded), and answers left / right / tie on each evaluation
axis. Answers are stored from model A's perspective in SQLite (WAL, one connection per request); the
results page, :func:`report` and ``report`` on the command line give the net win rate of A over B with
its σ (:mod:`moviegen.eval.winrate`). During a blind study the results page needs the admin token
``serve`` prints; every form carries a per-session CSRF token, and the session cookie is HttpOnly and
SameSite=Lax.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import hmac
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
from flask import Flask, abort, g, redirect, render_template_string, request, send_file, session, url_for

from moviegen.errors import MovieGenError
from moviegen.eval.winrate import AXES, AxisResult, summarize
from moviegen.files import write_atomic

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS raters (name TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS invites (
    token_sha256 TEXT PRIMARY KEY, rater TEXT UNIQUE NOT NULL, created REAL NOT NULL
);
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
MAX_NAME = 64


def token_hash(token: str) -> str:
    """What the database keeps of an invite token: its SHA-256, never the token itself."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def rater_name(name: str) -> str:
    """A rater name with runs of whitespace collapsed; 1 to 64 characters."""
    clean = " ".join(str(name).split())
    if not 1 <= len(clean) <= MAX_NAME:
        raise MovieGenError(f"a rater name must have 1 to {MAX_NAME} characters, got {name!r}")
    return clean


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
        where = f"cannot use {self.path} as the vote database"
        if self.path.is_dir():
            raise MovieGenError(f"{where}: it is a directory (give a file name, e.g. votes.sqlite)")
        if self.path.exists() and not self.path.is_file():
            raise MovieGenError(f"{where}: it is not a regular file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.connect() as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            reason = "it is not an SQLite database" if "not a database" in str(e) else str(e)
            raise MovieGenError(f"{where}: {reason}") from None
        except OSError as e:
            raise MovieGenError(f"{where}: {e.strerror or e}") from None

    def invite(self, name: str) -> str:
        """A new invite token for rater ``name`` (any earlier token of that rater stops working)."""
        name = rater_name(name)
        token = secrets.token_urlsafe(24)
        with self.transaction() as db:
            db.execute("DELETE FROM invites WHERE rater = ?", (name,))
            db.execute("INSERT INTO invites VALUES (?, ?, ?)", (token_hash(token), name, time.time()))
        return token

    def rater_of(self, digest: str) -> str | None:
        """The rater whose invite token has SHA-256 ``digest``, or None (unknown or revoked)."""
        with self.connect() as db:
            row = db.execute("SELECT rater FROM invites WHERE token_sha256 = ?", (digest,)).fetchone()
        return row[0] if row else None

    def invited(self) -> list[str]:
        with self.connect() as db:
            return [r[0] for r in db.execute("SELECT rater FROM invites ORDER BY rater")]

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
{% if admin %}· <a href="{{ url_for('results') }}">results</a>{% endif %}</p>{% endif %}
{% block body %}{% endblock %}
</body></html>"""

LOGIN = """{% extends page %}{% block body %}
<h1>Pairwise video evaluation</h1>
{% if error %}<p id="error" style="color:#b00">{{ error }}</p>{% endif %}
<p>Open the personal link you were sent, or paste its invite code here.</p>
<form method="post" action="{{ url_for('login') }}">
<input type="hidden" name="csrf" value="{{ csrf }}">
<label for="token">Invite code</label>
<input id="token" name="token" maxlength="200" required autofocus autocomplete="off">
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
<input type="hidden" name="csrf" value="{{ csrf }}">
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
    admin_token: str | None = None,
) -> Flask:
    """The rating web app over the paired videos of ``dir_a`` (model A) and ``dir_b`` (model B).

    Raters sign in with an invite token (``/join/<token>`` or the login form); ``/results`` opens with
    ``?admin=<admin_token>`` (random per process when not given: ``app.config["MOVIEGEN_ADMIN_TOKEN"]``).
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
    admin_token = admin_token or secrets.token_urlsafe(24)
    app.config.update(
        MOVIEGEN_STORE=store,
        MOVIEGEN_ITEMS=len(items),
        MOVIEGEN_ADMIN_TOKEN=admin_token,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    page = app.jinja_env.from_string(PAGE)

    def csrf_token() -> str:
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(32)
        return session["csrf"]

    def current_rater() -> str | None:
        """The signed-in rater, while their invite is still valid (a new invite revokes the old one);
        looked up once per request."""
        if "rater" not in g:
            digest, name = session.get("invite"), session.get("rater")
            g.rater = name if digest and name and store.rater_of(digest) == name else None
        return g.rater

    def render(template: str, status: int = 200, **kw):
        kw = {"rater": current_rater(), "admin": session.get("admin", False), "csrf": csrf_token(), **kw}
        return render_template_string(template, page=page, **kw), status

    @app.before_request
    def check_csrf():
        if request.method == "POST":
            sent, expected = request.form.get("csrf", ""), session.get("csrf", "")
            if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
                abort(400, "missing or wrong CSRF token: reload the page")

    @app.after_request
    def no_leaks(response):
        response.headers.setdefault("Referrer-Policy", "no-referrer")  # tokens in /join URLs
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    def sign_in(token: str):
        digest = token_hash(token.strip())
        name = store.rater_of(digest)
        if name is None:
            return render(
                LOGIN, 403, error="This invite is not valid (ask the study's organiser for a new one)."
            )
        admin = session.get("admin", False)
        session.clear()  # a fresh session (and CSRF token) per sign-in
        session.update(rater=name, invite=digest, admin=admin)
        assign(name)
        return redirect(url_for("vote"))

    def assign(name: str) -> list[Assignment]:
        rng = random.Random(f"{seed}:{name}") if seed is not None else random.Random(secrets.randbits(64))
        return store.add_rater(name, list(items.values()), rng)

    def rater_assignments() -> list[Assignment] | None:
        """The logged-in rater's items in order (assigning any it lacks, e.g. after a database change)."""
        name = current_rater()
        if not name:
            return None
        todo = store.assignments(name)
        if not items.keys() <= {a.item for a in todo}:
            todo = assign(name)
        return [a for a in todo if a.item in items]

    @app.route("/")
    def index():
        return redirect(url_for("vote" if current_rater() else "login"))

    @app.route("/login", methods=["GET", "POST"])
    def login():
        if request.method == "GET":
            return render(LOGIN)
        return sign_in(request.form.get("token", ""))

    @app.route("/join/<token>")
    def join(token: str):
        return sign_in(token)

    @app.route("/logout")
    def logout():
        session.pop("rater", None)
        session.pop("invite", None)
        return redirect(url_for("login"))

    @app.route("/vote", methods=["GET", "POST"])
    def vote():
        todo = rater_assignments()
        if todo is None:
            return redirect(url_for("login"))
        name = current_rater()
        if request.method == "POST":
            a = store.assignment(name, request.form.get("item", ""))
            choices = {axis: request.form.get(axis) for axis in AXES}
            if a is None or a.item not in items or any(c not in CHOICES for c in choices.values()):
                abort(400)
            store.add_votes(name, items[a.item], a.left_model, choices)
            return redirect(url_for("vote"))
        voted = store.voted_items(name)
        pending = [a for a in todo if a.item not in voted]
        if not pending:
            return render(DONE, total=len(todo))
        item = items[pending[0].item]
        return render(
            VOTE, item=item, done=len(todo) - len(pending), total=len(todo), axes=AXES, choices=CHOICES
        )

    @app.route("/video/<side>/<path:name>")
    def video(side: str, name: str):
        rater = current_rater()
        a = store.assignment(rater, name) if rater else None
        if side not in ("left", "right") or a is None:
            abort(404)
        model = a.left_model if side == "left" else ("b" if a.left_model == "a" else "a")
        path = video_path(roots[model], name, items)
        if path is None:
            abort(404)
        return send_file(path, mimetype="video/mp4", conditional=True, max_age=0)

    @app.route("/results")
    def results():
        sent = request.args.get("admin")
        if sent is not None:
            if not hmac.compare_digest(sent.encode(), admin_token.encode()):
                abort(403)
            session["admin"] = True
            return redirect(url_for("results"))  # the token leaves the address bar
        if not session.get("admin"):
            abort(403)
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


def check_port(port: int) -> int:
    if isinstance(port, bool) or not 1 <= port <= 65535:
        raise MovieGenError(f"--port must be in 1-65535, got {port}")
    return port


def bind_server(app: Flask, host: str, port: int):
    """A threaded WSGI server already listening on ``host:port`` (one error line when it cannot)."""
    import socket

    from werkzeug.serving import make_server

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
            return make_server(host, port, app, threaded=True, fd=sock.fileno())  # werkzeug dups the fd
    except OSError as e:
        raise MovieGenError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    except (OverflowError, ValueError, UnicodeError) as e:
        raise MovieGenError(f"cannot listen on {host}:{port}: {e}") from None


def _run_server(server) -> None:
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


DB_HELP = "SQLite file the votes and invites go to."


@humaneval_app.command()
def serve(
    a: Annotated[Path, typer.Option("--a", help="Folder of model A's MP4 videos.")],
    b: Annotated[Path, typer.Option("--b", help="Folder of model B's MP4 videos (same file names).")],
    db: Annotated[Path, typer.Option("--db", help=DB_HELP)] = Path("votes.sqlite"),
    port: Annotated[int, typer.Option(help="Port to listen on (1-65535).")] = 8000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    seed: Annotated[int | None, typer.Option(help="Reproducible per-rater order and left/right.")] = None,
    admin_token: Annotated[
        str | None, typer.Option(help="Token that opens /results (default: a new random one, printed).")
    ] = None,
) -> None:
    """Serve the rating web app: invited raters vote left / right / tie per axis (see `invite`)."""
    check_port(port)
    app = create_app(a, b, db, seed=seed, admin_token=admin_token)
    if not app.config["MOVIEGEN_STORE"].invited():
        raise MovieGenError(f"no rater is invited yet: run `moviegen humaneval invite NAME ... --db {db}`")
    server = bind_server(app, host, port)
    url = _url(host, server.socket.getsockname()[1])
    typer.echo(f"{app.config['MOVIEGEN_ITEMS']} video pairs; rating on {url}/ (votes: {db})")
    typer.echo(f"results (keep private): {url}/results?admin={app.config['MOVIEGEN_ADMIN_TOKEN']}")
    _run_server(server)


@humaneval_app.command()
def invite(
    names: Annotated[list[str], typer.Argument(help="Rater names (one personal link each).")],
    db: Annotated[Path, typer.Option("--db", help=DB_HELP)] = Path("votes.sqlite"),
    url: Annotated[str, typer.Option(help="The address raters will open (as `serve` prints it).")] = (
        "http://127.0.0.1:8000"
    ),
) -> None:
    """Invite raters: print a personal link per name (only its hash is stored; re-inviting revokes)."""
    clean = [rater_name(n) for n in names]
    if len(set(clean)) != len(clean):
        raise MovieGenError("each rater name may be given once")
    store = VoteStore(db)
    for name in clean:
        typer.echo(f"{name}\t{url.rstrip('/')}/join/{store.invite(name)}")


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
