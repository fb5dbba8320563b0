"""A local HTTP server that behaves like API Gateway in front of ``api_handler`` (dev only).

Each request becomes a REST API (v1) proxy event, with bodies of binary media types
base64-encoded as API Gateway does; the handler's answer is written back, base64-decoded when
``isBase64Encoded``. Like API Gateway it serves under a stage path when given one (``/prod/...``,
anything else is 403), keeps repeated headers and query parameters in the multi-value fields,
and refuses bodies over 10 MB. One invocation at a time, like one Lambda execution environment.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from handler.local.context import LocalContext
from handler.local.events import rest_event

# API Gateway refuses bodies over 10 MB before Lambda sees them.
API_GATEWAY_MAX_BODY = 10 * 1024 * 1024

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def _gateway_error(status: int, message: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"message": message}).encode()
    return status, {"Content-Type": "application/json"}, body


def call_handler(handler: Handler, event: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """Invoke the handler with a proxy event; return status, headers and the body bytes."""
    result = handler(event, LocalContext())
    headers = dict(result.get("headers") or {})
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[name] = ", ".join(values)
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
    return int(result.get("statusCode", 502)), headers, raw


def split_stage(path: str, stage: str | None) -> str | None:
    """``/prod/predict`` -> ``/predict`` for stage ``prod``; None when outside the stage."""
    if not stage:
        return path
    prefix = f"/{stage}"
    if path == prefix or path.startswith(prefix + "/"):
        return path[len(prefix) :] or "/"
    return None


def make_request_handler(handler: Handler, stage: str | None) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()

    class ProxyRequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "image-recognition-local"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            url = urlsplit(self.path)
            path = split_stage(url.path, stage)
            if length > API_GATEWAY_MAX_BODY:
                status, headers, body = _gateway_error(413, "Request Entity Too Large")
                self.close_connection = True
            elif path is None:  # API Gateway's answer for a path outside the stage
                self.rfile.read(length)
                status, headers, body = _gateway_error(403, "Missing Authentication Token")
            else:
                body_in = self.rfile.read(length) if length else b""
                event = rest_event(
                    self.command,
                    path,
                    body=body_in,
                    headers=self.headers.items(),
                    query=url.query,
                    stage=stage or "",
                )
                with lock:
                    status, headers, body = call_handler(handler, event)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve

        def log_message(self, format: str, *args: Any) -> None:
            self.server.log(format % args)  # type: ignore[attr-defined]

    return ProxyRequestHandler


class LocalApiServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` on 127.0.0.1 with the handler mounted; port 0 picks a free port."""

    daemon_threads = True
    # The listen backlog: socketserver's default of 5 resets connections under concurrent clients.
    request_queue_size = 128

    def __init__(
        self,
        handler: Handler,
        port: int = 3000,
        host: str = "127.0.0.1",
        quiet: bool = False,
        stage: str | None = None,
    ):
        super().__init__((host, port), make_request_handler(handler, stage))
        self.quiet = quiet
        self.stage = stage

    @property
    def url(self) -> str:
        """The base URL, stage included, with a trailing slash (like the stack's ApiUrl output)."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/" + (f"{self.stage}/" if self.stage else "")

    def log(self, line: str) -> None:
        if not self.quiet:
            print(f"[serve] {line}", flush=True)
