"""The pairwise human-evaluation app (paper §3.6): pairing, blind voting, storage, serving, reports, CLI."""

import csv
import json
import logging
import os
import socket
import sqlite3
import threading
from pathlib import Path

import pytest
import torch
from flask import Flask
from typer.testing import CliRunner

from moviegen.errors import MovieGenError
from moviegen.eval.humaneval import (
    Item,
    VoteStore,
    create_app,
    export_csv,
    humaneval_app,
    outcome_of,
    pair_videos,
    report,
    video_path,
)
from moviegen.eval.winrate import AXES, summarize
from moviegen.video import write_video

NAMES = ["cat.mp4", "dog.mp4", "sub/owl.mp4"]


def tiny_video(path: Path, level: float) -> Path:
    """A 4-frame 16×16 clip of flat grey ``level`` in [-1, 1] (different levels → different bytes)."""
    return write_video(path, torch.full((3, 4, 16, 16), level), fps=8)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("videos")
    dir_a, dir_b = root / "model_alpha", root / "model_beta"
    for name in NAMES:
        tiny_video(dir_a / name, -0.5)
        tiny_video(dir_b / name, 0.5)
    tiny_video(dir_a / "only_a.mp4", 0.0)
    (dir_a / "index.json").write_text(json.dumps([{"file": "cat.mp4", "prompt": "A cat <b>jumps</b>"}]))
    (root / "secret.mp4").write_bytes(b"outside")
    for d in (dir_a, dir_b):
        os.symlink(root / "secret.mp4", d / "escape.mp4")
    return dir_a, dir_b


@pytest.fixture
def app(folders, tmp_path) -> Flask:
    app = create_app(*folders, tmp_path / "votes.sqlite", seed=0, secret_key="test")
    app.config["TESTING"] = True
    return app


def login(app: Flask, name: str):
    """A client signed in through rater ``name``'s invite link."""
    token = app.config["MOVIEGEN_STORE"].invite(name)
    client = app.test_client()
    response = client.get(f"/join/{token}")
    assert response.status_code == 302 and response.location.endswith("/vote")
    return client


def csrf_of(client) -> str:
    page = client.get("/vote").get_data(as_text=True)
    return page.split('name="csrf" value="')[1].split('"')[0]


def admin(app: Flask):
    client = app.test_client()
    response = client.get(f"/results?admin={app.config['MOVIEGEN_ADMIN_TOKEN']}")
    assert response.status_code == 302 and "admin=" not in response.location
    return client


def vote_all(app: Flask, client, rater: str, plan: dict[str, str]) -> list[str]:
    """Vote every pending item so that each axis gets outcome ``plan[axis]`` ("a", "b" or "tie")."""
    store: VoteStore = app.config["MOVIEGEN_STORE"]
    seen = []
    while True:
        page = client.get("/vote").get_data(as_text=True)
        if 'id="done"' in page:
            return seen
        item = page.split('name="item" id="item" value="')[1].split('"')[0]
        csrf = page.split('name="csrf" value="')[1].split('"')[0]
        left = store.assignment(rater, item).left_model
        side = {left: "left", ("b" if left == "a" else "a"): "right", "tie": "tie"}
        form = {"csrf": csrf, "item": item, **{axis: side[plan.get(axis, "tie")] for axis in AXES}}
        assert client.post("/vote", data=form).status_code == 302
        seen.append(item)


def test_pairing_by_relative_name_with_index_prompts(folders, caplog):
    with caplog.at_level(logging.WARNING, logger="moviegen.eval.humaneval"):
        items = pair_videos(*folders)
    assert items == [
        Item("cat.mp4", "A cat <b>jumps</b>"),
        Item("dog.mp4", "dog"),
        Item("sub/owl.mp4", "owl"),
    ]
    assert "only_a.mp4" in caplog.text and "escape.mp4" in caplog.text


def test_pairing_errors(folders, tmp_path):
    with pytest.raises(MovieGenError, match="video folder not found"):
        pair_videos(tmp_path / "missing", folders[1])
    (tmp_path / "empty").mkdir()
    with pytest.raises(MovieGenError, match="no MP4 videos with the same name"):
        pair_videos(folders[0], tmp_path / "empty")
    bad = tmp_path / "bad"
    tiny_video(bad / "cat.mp4", 0.0)
    (bad / "index.json").write_text('{"file": "cat.mp4"}')
    with pytest.raises(MovieGenError, match="index.json"):
        pair_videos(folders[0], bad)


def test_login_and_blind_vote_page(app, folders):
    client = app.test_client()
    assert client.get("/").location.endswith("/login")
    assert client.get("/vote").location.endswith("/login")
    page = client.get("/login").get_data(as_text=True)
    assert 'id="token"' in page and 'id="rater"' not in page  # no name login: invites only
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    assert client.post("/login", data={"csrf": csrf, "token": "guess"}).status_code == 403
    assert client.get("/join/guess").status_code == 403
    token = app.config["MOVIEGEN_STORE"].invite("ada")
    assert client.post("/login", data={"token": token}).status_code == 400  # no CSRF token
    assert client.post("/login", data={"csrf": csrf, "token": token}).location.endswith("/vote")
    assert 'id="current-rater">ada<' in client.get("/vote").get_data(as_text=True)
    client = login(app, "ada")
    page = client.get("/vote").get_data(as_text=True)
    assert 'id="left-video"' in page and 'id="right-video"' in page and 'id="submit"' in page
    assert "Left" in page and "Right" in page and "Item 1 of 3" in page
    assert page.count("<video ") == 2 and "controls loop muted autoplay" in page
    for axis in AXES:
        for choice in ("left", "right", "tie"):
            assert f'name="{axis}" id="{axis}-{choice}" value="{choice}"' in page
    assert "model_alpha" not in page and "model_beta" not in page
    assert "/video/left/" in page and "/video/right/" in page


def test_prompt_is_escaped(app):
    client = login(app, "ada")
    for _ in NAMES:
        page = client.get("/vote").get_data(as_text=True)
        item = page.split('name="item" id="item" value="')[1].split('"')[0]
        if item == "cat.mp4":
            assert "A cat &lt;b&gt;jumps&lt;/b&gt;" in page and "<b>jumps" not in page
            return
        csrf = page.split('name="csrf" value="')[1].split('"')[0]
        client.post("/vote", data={"csrf": csrf, "item": item, **dict.fromkeys(AXES, "tie")})
    pytest.fail("cat.mp4 never shown")


def test_vote_flow_maps_sides_back_to_models(app, tmp_path):
    plan = {"text_alignment": "a", "realness": "tie"}  # other axes: B wins
    plan.update({axis: "b" for axis in AXES if axis not in plan})
    for rater in ("ada", "bob"):
        client = login(app, rater)
        assert sorted(vote_all(app, client, rater, plan)) == sorted(NAMES)
        assert "All 3 items rated" in client.get("/vote").get_data(as_text=True)
    results = {r.axis: r for r in report(tmp_path / "votes.sqlite")}
    assert list(results) == list(AXES)
    assert results["text_alignment"].net_win_rate == 100.0 and results["text_alignment"].wins == 6
    assert results["realness"].net_win_rate == 0.0 and results["realness"].ties == 6
    assert results["aesthetics"].net_win_rate == -100.0 and results["aesthetics"].losses == 6
    # two raters per item → σ from two annotation rounds; all rounds equal → σ = 0 → ±100 significant
    assert results["aesthetics"].sigma_method == "rounds" and results["aesthetics"].significant
    assert not results["realness"].significant


def test_repeat_and_bad_submissions(app, tmp_path):
    client = login(app, "ada")
    form = {"csrf": csrf_of(client), "item": "dog.mp4", **dict.fromkeys(AXES, "left")}
    assert client.post("/vote", data=form).status_code == 302
    assert client.post("/vote", data=form).status_code == 302  # double submit: ignored
    assert len(VoteStore(tmp_path / "votes.sqlite").votes()) == len(AXES)
    assert client.post("/vote", data={**form, "realness": "maybe"}).status_code == 400
    assert client.post("/vote", data={**form, "item": "only_a.mp4"}).status_code == 400
    assert client.post("/vote", data={k: v for k, v in form.items() if k != "aesthetics"}).status_code == 400
    assert app.test_client().post("/vote", data=form).status_code == 400  # another session's CSRF token
    assert client.post("/vote", data={**form, "csrf": "forged"}).status_code == 400
    assert client.post("/vote", data={k: v for k, v in form.items() if k != "csrf"}).status_code == 400
    assert len(VoteStore(tmp_path / "votes.sqlite").votes()) == len(AXES)


def test_invites_are_personal_hashed_and_revocable(app, folders, tmp_path):
    store: VoteStore = app.config["MOVIEGEN_STORE"]
    ada = login(app, "ada")
    with sqlite3.connect(tmp_path / "votes.sqlite") as db:
        (stored,) = db.execute("SELECT token_sha256 FROM invites WHERE rater = 'ada'").fetchone()
    assert len(stored) == 64 and store.rater_of(stored) == "ada"
    token = store.invite("ada")  # a new link for ada: the old one and its session stop working
    assert ada.get("/vote").location.endswith("/login")
    assert ada.get("/video/left/dog.mp4").status_code == 404
    with sqlite3.connect(tmp_path / "votes.sqlite") as db:
        rows = db.execute("SELECT token_sha256 FROM invites").fetchall()
    assert token not in json.dumps(rows) and len(rows) == 1
    again = app.test_client()
    assert again.get(f"/join/{token}").location.endswith("/vote")
    assert store.invited() == ["ada"]
    with pytest.raises(MovieGenError, match="1 to 64"):
        store.invite("  ")


def test_cookies_and_results_behind_the_admin_token(app):
    client = login(app, "ada")
    cookie = client.get_cookie("session")
    assert cookie.http_only and cookie.same_site == "Lax"
    response = client.get("/vote")
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert client.get("/results").status_code == 403  # raters never see results during the study
    assert client.get("/results?admin=wrong").status_code == 403
    assert "/results" not in client.get("/vote").get_data(as_text=True)
    assert "no votes yet" in admin(app).get("/results").get_data(as_text=True)


def test_signed_in_rater_survives_a_restart_not_a_foreign_database(app, folders, tmp_path):
    client = login(app, "ada")
    cookie = client.get_cookie("session").value
    restarted = create_app(*folders, tmp_path / "votes.sqlite", seed=0, secret_key="test")  # same db and key
    again = restarted.test_client()
    again.set_cookie("session", cookie)
    assert "Item 1 of 3" in again.get("/vote").get_data(as_text=True)
    fresh = create_app(*folders, tmp_path / "fresh.sqlite", seed=0, secret_key="test")  # ada not invited
    stranger = fresh.test_client()
    stranger.set_cookie("session", cookie)
    assert stranger.get("/vote").location.endswith("/login")
    assert fresh.config["MOVIEGEN_STORE"].assignments("ada") == []


def test_randomisation_is_recorded_per_rater(app, folders, tmp_path):
    store: VoteStore = app.config["MOVIEGEN_STORE"]
    orders, lefts = set(), set()
    for k in range(8):
        client = login(app, f"rater{k}")
        vote_all(app, client, f"rater{k}", {})
        assignments = store.assignments(f"rater{k}")
        orders.add(tuple(a.item for a in assignments))
        lefts.update(a.left_model for a in assignments)
        for a in assignments:  # the served left video is the recorded left model's file
            left = client.get(f"/video/left/{a.item}").data
            right = client.get(f"/video/right/{a.item}").data
            dirs = dict(zip("ab", folders, strict=True))
            assert left == (dirs[a.left_model] / a.item).read_bytes() != right
    assert len(orders) > 1 and lefts == {"a", "b"}
    for row in store.votes():
        assert {row["left_model"], row["right_model"]} == {"a", "b"}
        assert row["left_model"] == store.assignment(row["rater"], row["item"]).left_model
        assert row["outcome"] == outcome_of(row["choice"], row["left_model"]) == "tie"
    assert (
        outcome_of("left", "b") == "b" and outcome_of("right", "b") == "a" and outcome_of("left", "a") == "a"
    )
    # the same seed and rater name give the same order and sides in a fresh database
    again = create_app(*folders, tmp_path / "again.sqlite", seed=0)
    login(again, "rater3")
    assert again.config["MOVIEGEN_STORE"].assignments("rater3") == store.assignments("rater3")


def test_concurrent_submits_lose_no_vote(app, tmp_path):
    store = VoteStore(tmp_path / "votes.sqlite")
    items = [Item(f"p{i}.mp4", f"prompt {i}") for i in range(20)]
    errors = []

    def direct(k):
        try:
            for item in items:
                store.add_votes(f"thread{k}", item, "ab"[k % 2], dict.fromkeys(AXES, "left"))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    def through_app(k):
        try:
            vote_all(app, login(app, f"web{k}"), f"web{k}", {"realness": "a"})
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=direct, args=(k,)) for k in range(12)]
    threads += [threading.Thread(target=through_app, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = store.votes()
    assert len(rows) == 12 * 20 * len(AXES) + 6 * 3 * len(AXES)
    assert len({r["id"] for r in rows}) == len(rows)
    with sqlite3.connect(tmp_path / "votes.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_video_route_serves_only_paired_files_inside_the_folders(app, folders):
    client = login(app, "ada")
    ok = client.get("/video/left/sub/owl.mp4")
    assert ok.status_code == 200 and ok.mimetype == "video/mp4"
    partial = client.get("/video/right/dog.mp4", headers={"Range": "bytes=0-9"})
    assert partial.status_code == 206 and len(partial.data) == 10
    secret = str(folders[0].parent / "secret.mp4")
    for url in [
        "/video/left/../secret.mp4",
        "/video/left/../../etc/passwd",
        "/video/left/sub/../../secret.mp4",
        "/video/left/%2e%2e/secret.mp4",
        "/video/right/%2e%2e%2fsecret.mp4",
        "/video/left/..%2F..%2Fetc%2Fpasswd",
        f"/video/left/{secret}",
        f"/video/left/{secret.lstrip('/')}",
        "/video/left/escape.mp4",  # symlink in both folders pointing outside
        "/video/right/escape.mp4",
        "/video/left/only_a.mp4",  # not a paired item
        "/video/left/index.json",
        "/video/a/dog.mp4",  # sides only
        "/video/left/missing.mp4",
    ]:
        assert client.get(url).status_code == 404, url
    assert app.test_client().get("/video/left/dog.mp4").status_code == 404  # not logged in


def test_video_path_checks_resolution_itself(folders):
    dir_a = folders[0]
    items = {n: Item(n, n) for n in ["dog.mp4", "escape.mp4", "../secret.mp4", "sub"]}
    assert video_path(dir_a, "dog.mp4", items) == (dir_a / "dog.mp4").resolve()
    assert video_path(dir_a, "escape.mp4", items) is None  # listed, but a symlink out of the folder
    assert video_path(dir_a, "../secret.mp4", items) is None
    assert video_path(dir_a, "sub", items) is None  # a folder
    assert video_path(dir_a, "cat.mp4", items) is None  # not listed


def test_results_page_report_and_csv(app, tmp_path):
    db = tmp_path / "votes.sqlite"
    lab = admin(app)
    assert "no votes yet" in lab.get("/results").get_data(as_text=True)
    vote_all(app, login(app, "ada"), "ada", {"text_alignment": "a", "motion_naturalness": "b"})
    results = report(db)
    page = lab.get("/results").get_data(as_text=True)
    for r in results:
        row = page.split(f'<tr id="row-{r.axis}">')[1].split("</tr>")[0]
        assert f'class="n">{r.n}<' in row and f'class="net">{r.net_win_rate:+.1f}<' in row
        assert f'class="sigma">{r.sigma:.1f}<' in row
        assert ('class="significant">*<' in row) == r.significant
    out = export_csv(db, tmp_path / "out" / "votes.csv")
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * len(AXES) and rows[0].keys() >= {
        "rater",
        "item",
        "left_model",
        "choice",
        "outcome",
    }
    assert summarize((r["item"], r["axis"], r["outcome"], int(r["id"])) for r in rows) == results
    assert os.listdir(out.parent) == ["votes.csv"]


def test_report_never_creates_a_database(tmp_path):
    missing = tmp_path / "nope.sqlite"
    with pytest.raises(MovieGenError, match="vote database not found"):
        report(missing)
    with pytest.raises(MovieGenError, match="vote database not found"):
        export_csv(missing, tmp_path / "x.csv")
    assert not missing.exists() and not (tmp_path / "x.csv").exists()
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 10)
    with pytest.raises(MovieGenError, match="not a vote database"):
        report(junk)


def test_cli_report_and_serve(app, folders, tmp_path, monkeypatch):
    runner = CliRunner()
    db = tmp_path / "votes.sqlite"
    vote_all(app, login(app, "ada"), "ada", {"overall_quality": "a"})
    vote_all(app, login(app, "bob"), "bob", {"overall_quality": "a"})
    result = runner.invoke(
        humaneval_app,
        ["report", str(db), "--csv", str(tmp_path / "v.csv"), "--json", str(tmp_path / "r.json")],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:6] == ["axis", "n", "win%", "loss%", "tie%", "net"]
    quality = next(line for line in lines if line.startswith("overall_quality"))
    assert quality.split() == ["overall_quality", "6", "100.0", "0.0", "0.0", "+100.0", "±", "0.0", "*"]
    assert next(line for line in lines if line.startswith("realness")).split()[-3:] == ["+0.0", "±", "0.0"]
    assert json.loads((tmp_path / "r.json").read_text())[0]["axis"] == "text_alignment"
    assert len((tmp_path / "v.csv").read_text().splitlines()) == 1 + 6 * len(AXES)

    missing = tmp_path / "missing.sqlite"
    result = runner.invoke(humaneval_app, ["report", str(missing)])
    assert result.exit_code != 0 and isinstance(result.exception, MovieGenError)
    assert "vote database not found" in str(result.exception) and not missing.exists()

    result = runner.invoke(humaneval_app, ["serve", "--a", str(tmp_path / "no"), "--b", str(folders[1])])
    assert isinstance(result.exception, MovieGenError) and "video folder not found" in str(result.exception)

    served = []
    monkeypatch.setattr("moviegen.eval.humaneval._run_server", lambda server: served.append(server))
    s_db = tmp_path / "s.sqlite"
    args = ["serve", "--a", str(folders[0]), "--b", str(folders[1]), "--db", str(s_db)]
    result = runner.invoke(humaneval_app, [*args, "--port", "8123"])
    assert isinstance(result.exception, MovieGenError) and "no rater is invited" in str(result.exception)
    result = runner.invoke(
        humaneval_app, ["invite", "ada", "bob", "--db", str(s_db), "--url", "http://lab:8123"]
    )
    assert result.exit_code == 0, result.output
    links = dict(line.split("\t") for line in result.output.splitlines())
    assert set(links) == {"ada", "bob"} and links["ada"].startswith("http://lab:8123/join/")
    with socket.socket() as probe:  # a free port, released before serve binds it
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    result = runner.invoke(humaneval_app, [*args, "--port", str(free), "--admin-token", "s3cret"])
    assert result.exit_code == 0, result.output
    ((server,),) = [served]
    try:
        assert server.socket.getsockname()[1] == free and isinstance(server.app, Flask)
        assert f"rating on http://127.0.0.1:{free}/" in result.output
        assert f"http://127.0.0.1:{free}/results?admin=s3cret" in result.output
        taken = runner.invoke(humaneval_app, [*args, "--port", str(free)])  # the port is held now
        assert isinstance(taken.exception, MovieGenError) and f"cannot listen on 127.0.0.1:{free}" in str(
            taken.exception
        )
    finally:
        server.server_close()
    for bad in ("99999", "0", "-1"):
        result = runner.invoke(humaneval_app, [*args, "--port", bad])
        assert isinstance(result.exception, MovieGenError) and "--port must be in 1-65535" in str(
            result.exception
        )
    assert "Usage" in runner.invoke(humaneval_app, []).output


def test_db_paths_that_are_not_vote_databases(folders, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello, not sqlite\n" * 20)
    (tmp_path / "folder").mkdir()
    for path, needle in (
        (text, "not an SQLite database"),
        (tmp_path / "folder", "is a directory"),
        (Path("/proc/version"), "cannot use"),
        (Path("/proc/x/votes.sqlite"), "cannot use"),
    ):
        with pytest.raises(MovieGenError, match=needle):
            create_app(*folders, path)
    assert text.read_text().startswith("hello")
    if os.geteuid() != 0:  # root writes through file modes
        locked = tmp_path / "locked.sqlite"
        VoteStore(locked)
        locked.chmod(0o444)
        with pytest.raises(MovieGenError, match="cannot use"):
            VoteStore(locked).invite("ada")


def test_humaneval_is_wired_into_the_moviegen_command(tmp_path, capsys):
    from tests.helpers import run_cli

    code, _, err = run_cli(capsys, "humaneval", "report", tmp_path / "missing.sqlite")
    assert code == 1 and err.startswith("error:") and not (tmp_path / "missing.sqlite").exists()
    code, _, err = run_cli(capsys, "humaneval", "serve", "--a", tmp_path / "x", "--b", tmp_path / "y")
    assert code == 1 and err.startswith("error:")
