"""The HTTP API and the studio page of ``moviegen serve`` (FastAPI on uvicorn).

Routes (a contract):

- ``POST /v1/jobs``: a JSON :class:`JobRequest`, or ``multipart/form-data`` with the same JSON in a
  ``request`` field and the files ``reference`` (a PNG/JPEG face, for ``generate``) or ``source`` (an MP4, for
  ``edit`` / ``upsample`` / ``audio``) → 202 ``{"id": ..., "status": "queued"}``; 429 when the queue is full;
- ``GET /v1/jobs`` (newest first, ``?status=&limit=&offset=``), ``GET /v1/jobs/{id}`` (status and progress),
  ``GET /v1/jobs/{id}/events`` (server-sent events until the job ends), ``GET /v1/jobs/{id}/result`` (the
  MP4 or PNG), ``DELETE /v1/jobs/{id}`` (cancel);
- ``GET /v1/info`` (tasks and models available here, the bounds), ``GET /`` (the studio), ``GET /docs`` (the
  API described from its OpenAPI schema, ``/openapi.json``).

Every error is a 4xx/5xx with a JSON body ``{"error": "..."}``. With a token, every ``/v1`` route needs
``Authorization: Bearer <token>`` (or ``?token=`` for what a browser loads by URL: the events and the
result). FastAPI's own ``/docs`` loads Swagger UI from a CDN, which a machine without the internet cannot
reach; this server renders its own page from the same schema instead.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import json
import shutil
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from moviegen.errors import MovieGenError
from moviegen.serve.jobs import FINISHED, STATUSES, JobStore, QueueFull, is_job_id, new_job_id
from moviegen.serve.requests import UPLOADS, JobRequest, Limits, check_request, check_upload, sniff_upload
from moviegen.serve.worker import ModelPaths, Models, Worker

STUDIO = Path(__file__).with_name("studio.html")


def _error(status: int, message: str, **extra) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


class ServeState:
    """What the routes share: the store, the worker, the folders, the bounds, the token."""

    def __init__(self, data: Path, paths: ModelPaths, limits: Limits, token: str | None, device: str):
        self.data, self.paths, self.limits, self.token, self.device = Path(data), paths, limits, token, device
        self.results, self.uploads = self.data / "results", self.data / "uploads"
        for folder in (self.results, self.uploads):
            folder.mkdir(parents=True, exist_ok=True)
        self.store = JobStore(self.data / "jobs.sqlite", max_queue=limits.max_queue)
        self.members = paths.members()
        self.worker = Worker(self.store, Models(paths, device), self.results)

    def start(self) -> None:
        self.store.recover()
        self._clean()
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()
        self.worker.join(timeout=30)

    def _clean(self) -> None:
        """Leftovers of a killed server: temporary files of results never published, uploads of requests that
        were never queued."""
        for tmp in self.results.glob(".*"):
            tmp.unlink(missing_ok=True)
        for folder in self.uploads.iterdir():
            if folder.name.endswith(".tmp") or (is_job_id(folder.name) and self.store.get(folder.name) is None):
                shutil.rmtree(folder, ignore_errors=True)

    def authorized(self, request: Request) -> bool:
        if self.token is None:
            return True
        given = request.headers.get("authorization", "")
        given = given[7:] if given.lower().startswith("bearer ") else request.query_params.get("token", "")
        return hmac.compare_digest(given.encode(), self.token.encode())

    def info(self) -> dict:
        return {
            "tasks": {"generate": True} | {t: self.members[t] for t in ("edit", "upsample", "audio")},
            "reference": self.members["reference"],
            "models": list(self.paths.generators),
            "default_model": self.paths.default_generator,
            "limits": asdict(self.limits),
            "device": self.device,
            "auth": self.token is not None,
        }


async def _read_job(request: Request, state: ServeState, job_id: str) -> tuple[JobRequest, dict]:
    """The request and the uploaded files (saved under ``uploads/<id>.tmp/``) of a POST."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    files: dict[str, Path] = {}
    if kind == "application/json":
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise HTTPException(400, "the body is not valid JSON") from None
    elif kind == "multipart/form-data":
        form = await request.form(max_files=len(UPLOADS), max_fields=4)
        unknown = set(form) - {"request", *UPLOADS}
        if unknown:
            raise HTTPException(422, f"unknown form fields: {', '.join(sorted(unknown))}")
        raw = form.get("request", "{}")
        if not isinstance(raw, str):
            raise HTTPException(422, "the 'request' form field must be JSON text, not a file")
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            raise HTTPException(400, "the 'request' form field is not valid JSON") from None
        folder = state.uploads / f"{job_id}.tmp"
        for name in UPLOADS:
            upload = form.get(name)
            if upload is None:
                continue
            if isinstance(upload, str):
                raise HTTPException(422, f"'{name}' must be a file upload")
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / (name + Path(upload.filename or "").suffix.lower()[:8])
            size = 0
            with open(path, "wb") as f:
                while chunk := await upload.read(1 << 20):
                    size += len(chunk)
                    if size > state.limits.max_upload_bytes:
                        raise HTTPException(413, f"the {name} file is over {state.limits.max_upload_bytes} bytes")
                    f.write(chunk)
            with open(path, "rb") as f:
                sniff_upload(f.read(16), name)
            files[name] = path
    else:
        raise HTTPException(415, "send application/json, or multipart/form-data with files")
    if not isinstance(body, dict):
        raise HTTPException(422, "the request must be a JSON object")
    try:
        return JobRequest.model_validate(body), files
    except ValidationError as e:
        raise RequestValidationError(e.errors()) from None


def default_generators() -> dict[str, str]:
    """The text-to-video models a server offers by default: the shipped ones (``generate``'s default first, the
    server's default too), and ``tiny-random``."""
    from moviegen.pipeline import GENERATE_DEFAULT, SHIPPED_MODELS

    names = sorted(SHIPPED_MODELS, key=lambda name: name != GENERATE_DEFAULT)
    shipped = [name for name in names if (SHIPPED_MODELS[name] / "model_index.json").is_file()]
    return {name: name for name in shipped} | {"tiny-random": "tiny-random"}


def create_app(data: str | Path, paths: ModelPaths | None = None, limits: Limits | None = None,
               token: str | None = None, device: str = "auto") -> FastAPI:  # fmt: skip
    """The service as an ASGI app; the worker starts with the app (uvicorn, or a TestClient)."""
    if paths is None:
        generators = default_generators()
        paths = ModelPaths(generators, next(iter(generators)))
    state = ServeState(Path(data), paths, limits or Limits(), token, device)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.start()
        yield
        state.stop()

    app = FastAPI(title="moviegen serve", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Movie Gen's cast (text-to-video, image, upsampler, Edit, PT2V, Audio) as jobs.")  # fmt: skip
    app.state.serve = state

    def openapi() -> dict:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            schemas["JobRequest"] = JobRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = [f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
                    for e in exc.errors()]  # fmt: skip
        return _error(422, "; ".join(problems) or "invalid request", problems=problems)

    @app.exception_handler(MovieGenError)
    async def refused(request: Request, exc: MovieGenError):
        return _error(422, str(exc))

    @app.middleware("http")
    async def guard(request: Request, call_next):
        path = request.url.path
        if path.startswith("/v1") and not state.authorized(request):
            return _error(401, "missing or wrong token (Authorization: Bearer <token>)")
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > state.limits.max_upload_bytes * 2 + 65536):
            return _error(413, f"the request is over {state.limits.max_upload_bytes * 2 + 65536} bytes")
        return await call_next(request)

    def find(job_id: str):
        job = state.store.get(job_id) if is_job_id(job_id) else None
        if job is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return job

    body_schema = {"$ref": "#/components/schemas/JobRequest"}
    multipart = {"type": "object", "properties": {
        "request": {"type": "string", "description": "the JobRequest as JSON text"},
        "reference": {"type": "string", "format": "binary", "description": "generate: a PNG/JPEG face"},
        "source": {"type": "string", "format": "binary", "description": "edit / upsample / audio: an MP4"}}}

    @app.post("/v1/jobs", status_code=202, summary="Submit a job", openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": body_schema},
                                      "multipart/form-data": {"schema": multipart}}}})  # fmt: skip
    async def submit(request: Request):
        """Queue a job → ``{"id", "status": "queued"}``. 422 names what is wrong; 429 when the queue is full."""
        job_id = new_job_id()
        tmp = state.uploads / f"{job_id}.tmp"
        try:
            req, files = await _read_job(request, state, job_id)
            values = check_request(req, state.limits, state.members, list(state.paths.generators), set(files))
            for name, path in files.items():
                await asyncio.to_thread(check_upload, name, path)
            uploads = {}
            if files:
                final = state.uploads / job_id
                tmp.rename(final)
                uploads = {name: str(final / path.name) for name, path in files.items()}
            try:
                job = state.store.submit(req.task, values, uploads, job_id)
            except QueueFull as e:
                shutil.rmtree(state.uploads / job_id, ignore_errors=True)
                return _error(429, str(e))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return JSONResponse({"id": job.id, "status": job.status}, status_code=202)

    @app.get("/v1/jobs", summary="List jobs")
    def list_jobs(status: str | None = None, limit: int = 50, offset: int = 0):
        """Jobs, newest first, with the queue's counts per status."""
        if status is not None and status not in STATUSES:
            raise HTTPException(422, f"unknown status {status!r} (one of {', '.join(STATUSES)})")
        if not (1 <= limit <= 500 and offset >= 0):
            raise HTTPException(422, "limit must be in [1, 500] and offset >= 0")
        jobs = state.store.list(status, limit, offset)
        return {"jobs": [j.public() for j in jobs], "counts": state.store.counts()}

    @app.get("/v1/jobs/{job_id}", summary="A job's status and progress")
    def job_status(job_id: str):
        return find(job_id).public()

    @app.delete("/v1/jobs/{job_id}", summary="Cancel a job")
    def cancel(job_id: str):
        """A queued job is cancelled at once, a running one after its current step."""
        find(job_id)
        return state.store.cancel(job_id).public()

    @app.get("/v1/jobs/{job_id}/result", summary="The result (MP4 or PNG)")
    def result(job_id: str):
        job = find(job_id)
        if job.status != "done":
            raise HTTPException(409, f"job {job_id} is {job.status}: no result")
        path = (state.results / job.result).resolve()
        if path.parent != state.results.resolve() or not path.is_file():
            raise HTTPException(410, f"the result of job {job_id} is gone from the results folder")
        media = "image/png" if path.suffix == ".png" else "video/mp4"
        return FileResponse(path, media_type=media, filename=path.name)

    @app.get("/v1/jobs/{job_id}/events", summary="Progress as server-sent events")
    async def events(job_id: str, request: Request):
        """``event: progress`` with the job's JSON whenever it changes, then one ``event: done`` /
        ``failed`` / ``cancelled``; a comment every 15 s keeps proxies from closing the stream."""
        find(job_id)

        async def stream():
            last, quiet = None, 0.0
            while True:
                job = await asyncio.to_thread(state.store.get, job_id)
                key = (job.status, job.stage, job.step)
                if key != last:
                    name = job.status if job.status in FINISHED else "progress"
                    yield f"event: {name}\ndata: {json.dumps(job.public())}\n\n"
                    last, quiet = key, 0.0
                if job.status in FINISHED or await request.is_disconnected():
                    return
                await asyncio.sleep(0.2)
                quiet += 0.2
                if quiet >= 15:
                    yield ": keep-alive\n\n"
                    quiet = 0.0

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip

    @app.get("/v1/info", summary="Tasks, models and bounds of this server")
    def info():
        return state.info()

    @app.get("/", include_in_schema=False)
    def studio():
        return HTMLResponse(STUDIO.read_text())

    @app.get("/docs", include_in_schema=False)
    def docs():
        return HTMLResponse(render_docs(app.openapi()))

    return app


def render_docs(spec: dict) -> str:
    """The OpenAPI schema as one self-contained HTML page (no scripts, no CDN)."""
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(spec['info']['title'])} API</title>",
             "<style>body{font:15px system-ui;max-width:60em;margin:2em auto;padding:0 1em}code,pre{background:#f3f3f3}"
             "td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}"
             ".m{font-weight:bold;text-transform:uppercase;margin-right:.5em}</style></head><body>",
             f"<h1>{e(spec['info']['title'])}</h1><p>{e(spec['info'].get('description', ''))}</p>",
             "<p>The machine-readable schema: <a href='/openapi.json'>/openapi.json</a>.</p>"]  # fmt: skip
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            parts.append(f"<h2><span class='m'>{e(method)}</span><code>{e(path)}</code></h2>")
            parts.append(f"<p><b>{e(op.get('summary', ''))}</b></p><pre>{e(op.get('description', ''))}</pre>")
            params = op.get("parameters", [])
            if params:
                rows = "".join(f"<tr><td><code>{e(p['name'])}</code></td><td>{e(p['in'])}</td>"
                               f"<td>{e(json.dumps(p.get('schema', {})))}</td></tr>" for p in params)  # fmt: skip
                parts.append(f"<table><tr><th>parameter</th><th>in</th><th>schema</th></tr>{rows}</table>")
            if "requestBody" in op:
                kinds = ", ".join(op["requestBody"]["content"])
                parts.append(f"<p>Body: {e(kinds)}</p>")
            codes = ", ".join(op.get("responses", {}))
            parts.append(f"<p>Responses: {e(codes)}</p>")
    schema = spec.get("components", {}).get("schemas", {}).get("JobRequest")
    if schema:
        parts.append("<h2>JobRequest</h2><table><tr><th>field</th><th>type and bounds</th><th>default</th>"
                     "<th>what</th></tr>")  # fmt: skip
        for name, prop in schema["properties"].items():
            kind = {k: v for k, v in prop.items() if k not in ("title", "description", "default")}
            parts.append(f"<tr><td><code>{e(name)}</code></td><td><code>{e(json.dumps(kind))}</code></td>"
                         f"<td>{e(json.dumps(prop.get('default')))}</td><td>{e(prop.get('description', ''))}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)
