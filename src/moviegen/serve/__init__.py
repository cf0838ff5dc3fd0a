"""``moviegen serve``: the cast behind an HTTP API and a web studio.

- :mod:`moviegen.serve.jobs`: the persistent job queue (SQLite in WAL mode): what was accepted is run,
  also after a crash, and a finished result is never lost;
- :mod:`moviegen.serve.worker`: one worker thread that keeps the models loaded and runs the jobs through
  :mod:`moviegen.cascade`, the same path as ``moviegen generate`` / ``edit`` / ``upsample`` / ``audio``;
- :mod:`moviegen.serve.requests`: what a job request may be (its model, the bounds, the checks);
- :mod:`moviegen.serve.app`: the FastAPI routes and token check, the offline OpenAPI page and the
  studio page.
"""
