"""Small helpers to read Lambda proxy results in tests."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from collections.abc import Iterator


def body_json(result: dict) -> dict:
    """The JSON body of a Lambda proxy result."""
    assert not result.get("isBase64Encoded"), "JSON answers must not be base64-encoded"
    return json.loads(result["body"])


def header(result: dict, name: str) -> str | None:
    """A response header from either ``headers`` (HTTP v2) or ``multiValueHeaders`` (REST v1)."""
    for key, value in (result.get("headers") or {}).items():
        if key.lower() == name.lower():
            return value
    for key, values in (result.get("multiValueHeaders") or {}).items():
        if key.lower() == name.lower():
            return ", ".join(values)
    return None


@contextlib.contextmanager
def serving(server) -> Iterator[str]:
    """Run a ``LocalApiServer`` in a thread; yield its URL; shut it down afterwards."""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def local_site(app, stage: str | None = None, uploads: bool = False) -> Iterator[str]:
    """The local API server on 127.0.0.1 in a thread; with ``uploads``, moto's S3 and the notifier.

    Yields the base URL. Environment and cached settings are restored afterwards, so the rest of
    the session sees the configuration it had.
    """
    from handler import config, s3
    from handler.local.server import LocalApiServer

    saved = dict(os.environ)
    local = None
    if uploads:
        from handler.local.s3_stack import LocalS3

        local = LocalS3(bucket=f"site-{uuid.uuid4().hex[:8]}")
        config.settings.cache_clear()
        local.notify(app.s3_handler)
    try:
        with serving(LocalApiServer(app.api_handler, port=0, quiet=True, stage=stage)) as url:
            yield url
    finally:
        if local:
            local.stop()
            os.environ.clear()
            os.environ.update(saved)
            config.settings.cache_clear()
            s3.client.cache_clear()
