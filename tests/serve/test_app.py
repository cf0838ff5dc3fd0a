"""The service's API end to end in one process (FastAPI's TestClient runs the worker thread too): every task,
the cascade's stages, progress over SSE, cancel, the queue bound, the token and bad requests."""

import json
import time

import pytest
import torch
from fastapi.testclient import TestClient

from moviegen.data.people import People
from moviegen.serve.app import create_app
from moviegen.serve.requests import Limits
from moviegen.serve.worker import ModelPaths
from moviegen.video import read_image, read_video, write_image, write_video

TINY = ModelPaths(generators={"tiny": "tiny-random", "world": "world"}, default_generator="tiny")
SMALL = {"prompt": "a red circle moves right", "frames": 8, "height": 32, "width": 32, "steps": 2}


def wait(client, job_id, until=("done", "failed", "cancelled"), timeout=120.0, headers=None):
    end = time.time() + timeout
    while time.time() < end:
        job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if job["status"] in until:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(tmp_path / "data", TINY, Limits(max_queue=8, max_upload_bytes=1 << 20))) as c:
        yield c


def test_generate_video_and_image_results(client, tmp_path):
    video = client.post("/v1/jobs", json=SMALL)
    assert video.status_code == 202 and video.json()["status"] == "queued"
    image = client.post("/v1/jobs", json=SMALL | {"frames": 1})
    job = wait(client, video.json()["id"])
    assert job["status"] == "done", job["error"]
    assert job["progress"] == {"stage": "sampling", "step": 2, "total": 2, "stages": ["sampling"], "fraction": 1.0}
    result = client.get(job["result"])
    assert result.status_code == 200 and result.headers["content-type"] == "video/mp4"
    (tmp_path / "out.mp4").write_bytes(result.content)
    frames, fps = read_video(tmp_path / "out.mp4")
    assert frames.shape == (3, 8, 32, 32) and fps == 16
    job = wait(client, image.json()["id"])
    result = client.get(job["result"])
    assert result.headers["content-type"] == "image/png"
    (tmp_path / "out.png").write_bytes(result.content)
    assert read_image(tmp_path / "out.png").shape == (3, 1, 32, 32)
    listed = client.get("/v1/jobs").json()
    assert [j["id"] for j in listed["jobs"]] == [image.json()["id"], video.json()["id"]]
    assert listed["counts"]["done"] == 2
    assert client.get("/v1/jobs?status=queued").json()["jobs"] == []


def test_events_stream_progress_until_done(client):
    job_id = client.post("/v1/jobs", json=SMALL | {"steps": 6}).json()["id"]
    events = []
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    assert events[-1][0] == "done" and events[-1][1]["progress"]["fraction"] == 1.0
    assert all(name == "progress" for name, _ in events[:-1])
    steps = [e["progress"]["step"] for name, e in events if e["status"] == "running"]
    assert steps == sorted(steps) and len(events) >= 2


def test_cancel_running_and_queued_jobs(client):
    running = client.post("/v1/jobs", json=SMALL | {"steps": 250}).json()["id"]
    queued = client.post("/v1/jobs", json=SMALL).json()["id"]
    end = time.time() + 60
    while client.get(f"/v1/jobs/{running}").json()["progress"]["step"] < 2 and time.time() < end:
        time.sleep(0.02)
    assert client.delete(f"/v1/jobs/{queued}").json()["status"] == "cancelled"
    assert client.delete(f"/v1/jobs/{running}").status_code == 200
    job = wait(client, running)
    assert job["status"] == "cancelled" and job["progress"]["step"] < 250
    assert client.get(f"/v1/jobs/{running}/result").status_code == 409
    assert wait(client, queued)["started"] is None  # never ran


def test_full_queue_answers_429_and_nothing_hangs(tmp_path):
    app = create_app(tmp_path / "data", TINY, Limits(max_queue=2))
    with TestClient(app) as client:
        codes = [client.post("/v1/jobs", json=SMALL | {"steps": 250}).status_code for _ in range(4)]
        assert codes[:2] == [202, 202] and codes[2:] == [429, 429]
        refused = client.post("/v1/jobs", json=SMALL)
        assert "queue is full" in refused.json()["error"]
        for job in client.get("/v1/jobs").json()["jobs"]:
            client.delete(f"/v1/jobs/{job['id']}")
        assert client.post("/v1/jobs", json=SMALL).status_code == 202


def test_token_guards_the_api_but_not_the_pages(tmp_path):
    with TestClient(create_app(tmp_path / "data", TINY, token="s3cret")) as client:
        assert client.get("/v1/jobs").status_code == 401
        assert client.get("/v1/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert "token" in client.post("/v1/jobs", json=SMALL).json()["error"]
        assert client.get("/v1/jobs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        job_id = client.post("/v1/jobs?token=s3cret", json=SMALL).json()["id"]
        wait(client, job_id, headers={"Authorization": "Bearer s3cret"})
        assert client.get(f"/v1/jobs/{job_id}/result?token=s3cret").status_code == 200
        assert client.get("/").status_code == 200 and client.get("/docs").status_code == 200


BAD = [
    ({"frames": 8}, 422, "needs a prompt"),
    (SMALL | {"frames": "8"}, 422, "frames: Input should be a valid integer"),
    (SMALL | {"seed": 1.5}, 422, "seed"),
    (SMALL | {"colour": "red"}, 422, "colour: Extra inputs are not permitted"),
    (SMALL | {"height": 40}, 422, "multiple of 16"),
    (SMALL | {"width": 4096}, 422, "at most 512"),
    (SMALL | {"frames": 100_000}, 422, "at most 128"),
    (SMALL | {"steps": 0}, 422, "steps"),
    (SMALL | {"prompt": "x" * 2001}, 422, "at most 2000"),
    (SMALL | {"model": "../../etc"}, 422, "unknown model"),
    (SMALL | {"schedule": "cosine"}, 422, "schedule"),
    (SMALL | {"guidance": -1}, 422, "guidance"),
    (SMALL | {"task": "edit"}, 422, "needs a source video"),
    (SMALL | {"task": "dance"}, 422, "task"),
    ([1, 2], 422, "JSON object"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD)
def test_bad_requests_are_4xx_with_a_json_error(client, body, status, message):
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == status and message in response.json()["error"]
    assert client.get("/v1/jobs").json()["jobs"] == []


def test_bad_bodies_paths_and_uploads(client, tmp_path):
    def error(response, status):
        assert response.status_code == status and response.headers["content-type"] == "application/json"
        return response.json()["error"]

    assert "not valid JSON" in error(client.post("/v1/jobs", content=b"{nope", headers={"Content-Type": "application/json"}), 400)
    assert "multipart" in error(client.post("/v1/jobs", content=b"prompt=x", headers={"Content-Type": "text/plain"}), 415)
    for path in ("/v1/jobs/..%2F..%2Fetc%2Fpasswd/result", "/v1/jobs/%2Fetc%2Fpasswd", "/v1/jobs/0123/result",
                 "/v1/jobs/" + "a" * 32 + "/events"):  # fmt: skip
        assert error(client.get(path), 404)
    assert error(client.delete("/v1/jobs/" + "f" * 32), 404)
    assert error(client.get("/v1/jobs?status=lost"), 422)
    edit = json.dumps({"task": "edit", "prompt": "make the circle blue"})
    not_video = client.post("/v1/jobs", data={"request": edit}, files={"source": ("a.mp4", b"#!/bin/sh\n" * 10)})
    assert "must be an MP4" in error(not_video, 422)
    big = b"\x00\x00\x00\x18ftypisom" + bytes(2 << 20)
    assert "over" in error(client.post("/v1/jobs", data={"request": edit}, files={"source": ("a.mp4", big)}), 413)
    corrupt = b"\x00\x00\x00\x18ftypisom" + bytes(1000)
    assert "not a readable video" in error(client.post("/v1/jobs", data={"request": edit}, files={"source": ("a.mp4", corrupt)}), 422)
    face = json.dumps({"prompt": "a person smiling"})
    not_image = client.post("/v1/jobs", data={"request": face}, files={"reference": ("f.png", b"GIF89a" + bytes(100))})
    assert "PNG or JPEG" in error(not_image, 422)
    wrong_task = client.post("/v1/jobs", data={"request": edit}, files={"reference": ("f.png", b"\x89PNG\r\n\x1a\n")})
    assert "for the generate task" in error(wrong_task, 422)
    extra = client.post("/v1/jobs", data={"request": edit}, files={"path": (None, "/etc/passwd")})
    assert "unknown form fields" in error(extra, 422)
    assert client.get("/v1/jobs").json()["jobs"] == []
    assert not any((tmp_path / "data" / "uploads").iterdir())  # refused uploads leave nothing behind


def test_members_through_uploads_and_the_cascade(client, tmp_path):
    """Edit, upsample and audio of an uploaded video, PT2V from an uploaded face, and generate → upsample →
    audio, with the shipped member models (a few steps each)."""
    write_video(tmp_path / "src.mp4", torch.rand(3, 8, 64, 64) * 2 - 1, fps=16)
    write_image(tmp_path / "face.png", People(4, 64, 1, seed=3).reference("test", 0).video[:, 0])
    source = (tmp_path / "src.mp4").read_bytes()
    jobs = {
        "edit": ({"task": "edit", "prompt": "make the circle blue", "steps": 2}, "source", source),
        "upsample": ({"task": "upsample", "steps": 2}, "source", source),
        "audio": ({"task": "audio", "prompt": "knocks as it bounces", "music": "piano music", "steps": 3}, "source",
                  source),
        "reference": ({"prompt": "a person smiling", "steps": 2}, "reference", (tmp_path / "face.png").read_bytes()),
    }
    ids = {}
    for name, (body, field, data) in jobs.items():
        response = client.post("/v1/jobs", data={"request": json.dumps(body)}, files={field: ("x", data)})
        assert response.status_code == 202, response.json()
        ids[name] = response.json()["id"]
    cascade = client.post("/v1/jobs", json={"prompt": "a red circle moves right", "model": "world", "steps": 2,
                                            "upsample": True, "audio": True})  # fmt: skip
    ids["cascade"] = cascade.json()["id"]
    shapes = {"edit": (3, 8, 64, 64), "upsample": (3, 8, 128, 128), "audio": (3, 8, 64, 64),
              "reference": (3, 16, 64, 64), "cascade": (3, 16, 128, 128)}  # fmt: skip
    for name, job_id in ids.items():
        job = wait(client, job_id, timeout=300)
        assert job["status"] == "done", (name, job["error"])
        (tmp_path / f"{name}.mp4").write_bytes(client.get(job["result"]).content)
        assert read_video(tmp_path / f"{name}.mp4")[0].shape == shapes[name], name
    assert wait(client, ids["cascade"])["progress"]["stages"] == ["sampling", "upsampling", "audio"]
    assert wait(client, ids["audio"])["progress"]["total"] == 3  # the request's steps reach the audio model
    import av

    for name in ("audio", "cascade"):
        with av.open(str(tmp_path / f"{name}.mp4")) as container:
            assert container.streams.audio and container.streams.audio[0].codec_context.name == "aac"
    assert not (tmp_path / "data" / "uploads" / f"{ids['edit']}.tmp").exists()


def test_a_failing_job_fails_with_its_error_and_the_worker_goes_on(client, tmp_path):
    write_image(tmp_path / "blank.png", torch.zeros(3, 64, 64))
    face = client.post("/v1/jobs", data={"request": json.dumps({"prompt": "a person", "steps": 2})},
                       files={"reference": ("blank.png", (tmp_path / "blank.png").read_bytes())})  # fmt: skip
    job = wait(client, face.json()["id"])
    assert job["status"] == "failed" and "no face found" in job["error"]
    assert wait(client, client.post("/v1/jobs", json=SMALL).json()["id"])["status"] == "done"


def test_docs_and_studio_pages(client):
    spec = client.get("/openapi.json").json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/events", "/v1/jobs/{job_id}/result",
            "/v1/info"} <= set(spec["paths"])  # fmt: skip
    assert set(spec["paths"]["/v1/jobs"]) == {"get", "post"} and "delete" in spec["paths"]["/v1/jobs/{job_id}"]
    assert "frames" in spec["components"]["schemas"]["JobRequest"]["properties"]
    docs = client.get("/docs").text
    assert "/v1/jobs/{job_id}/events" in docs and "JobRequest" in docs and "cdn" not in docs.lower()
    studio = client.get("/")
    assert studio.headers["content-type"].startswith("text/html") and 'id="prompt"' in studio.text
    info = client.get("/v1/info").json()
    assert info["models"] == ["tiny", "world"] and info["tasks"]["generate"] and info["limits"]["max_queue"] == 8
