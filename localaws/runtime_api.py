"""A minimal Lambda Runtime API on 127.0.0.1, to run the real ``awslambdaric`` without Docker.

The container image starts ``python -m awslambdaric handler.app.api_handler`` (the base image's
bootstrap); the runtime client then long-polls ``/runtime/invocation/next`` on
``$AWS_LAMBDA_RUNTIME_API``. This module is that endpoint, plus what the Runtime Interface
Emulator adds for callers: ``POST /2015-03-31/functions/function/invocations`` runs one event.

    imgrec rie [--handler handler.app.api_handler] [--port 9000]
    curl -d @events/api-rest-health.json http://127.0.0.1:9000/2015-03-31/functions/function/invocations

The runtime client segfaults when ``/next`` lacks any of the ``Lambda-Runtime-*`` headers sent
below, so all of them are always sent. Like Lambda, an event over 6 MB is refused before the
function sees it.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"
MAX_PAYLOAD = 6 * 1024 * 1024  # Lambda's synchronous invocation payload limit
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:image-recognition-local"


@dataclass
class Invocation:
    request_id: str
    payload: bytes
    deadline_ms: int
    done: threading.Event
    kind: str = ""  # "response" | "error"
    body: bytes = b""


class RuntimeApi(ThreadingHTTPServer):
    """The Runtime API the runtime client talks to, and ``invoke`` for callers (tests, ``rie``)."""

    daemon_threads = True

    def __init__(self, port: int = 0, timeout_s: float = 30.0) -> None:
        self.pending: queue.Queue[Invocation] = queue.Queue()
        self.invocations: dict[str, Invocation] = {}
        self.init_error: bytes | None = None
        self.init_failed = threading.Event()  # set when the runtime client reports an init error
        self.timeout_s = timeout_s
        super().__init__(("127.0.0.1", port), _Handler)

    @property
    def address(self) -> str:
        """The value for ``AWS_LAMBDA_RUNTIME_API``."""
        host, port = self.server_address[:2]
        return f"{host}:{port}"

    def invoke(self, event: Any, timeout_s: float | None = None) -> tuple[str, Any]:
        """Run one event; ``("response", answer)``, ``("error", error)`` or ``("rejected", error)``."""
        payload = event if isinstance(event, bytes) else json.dumps(event).encode()
        if len(payload) > MAX_PAYLOAD:
            return "rejected", {
                "errorType": "RequestEntityTooLargeException",
                "errorMessage": f"Request must be smaller than {MAX_PAYLOAD} bytes for the Invoke operation",
            }
        timeout = timeout_s or self.timeout_s
        invocation = Invocation(
            request_id=str(uuid.uuid4()),
            payload=payload,
            deadline_ms=int((time.time() + timeout) * 1000),
            done=threading.Event(),
        )
        self.invocations[invocation.request_id] = invocation
        self.pending.put(invocation)
        if not invocation.done.wait(timeout):
            raise TimeoutError(f"no answer within {timeout} s (did the runtime client start?)")
        del self.invocations[invocation.request_id]
        return invocation.kind, json.loads(invocation.body or b"null")


class _Handler(BaseHTTPRequestHandler):
    server: RuntimeApi
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the runtime client polls continuously: keep the console quiet

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path != f"{PREFIX}/invocation/next":
            self._reply(404)
            return
        invocation = self.server.pending.get()  # long poll, as Lambda does
        self._reply(
            200,
            invocation.payload,
            {
                "Content-Type": "application/json",
                "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]};Sampled=0",
            },
        )

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == INVOKE_PATH:  # the emulator's invoke endpoint, for callers
            kind, answer = self.server.invoke(body)
            status = 200 if kind == "response" else 502
            self._reply(status, json.dumps(answer).encode(), {"Content-Type": "application/json"})
            return
        if self.path == f"{PREFIX}/init/error":
            self.server.init_error = body
            self.server.init_failed.set()
            self._reply(202, b'{"status":"OK"}')
            return
        parts = self.path.removeprefix(f"{PREFIX}/invocation/").split("/")
        invocation = self.server.invocations.get(parts[0]) if len(parts) == 2 else None
        if invocation is None or parts[1] not in ("response", "error"):
            self._reply(404)
            return
        invocation.kind, invocation.body = parts[1], body
        invocation.done.set()
        self._reply(202, b'{"status":"OK"}')


def start_runtime_client(
    api: RuntimeApi, handler: str, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """``python -m awslambdaric HANDLER`` against ``api``: the container image's bootstrap."""
    return subprocess.Popen(
        [sys.executable, "-m", "awslambdaric", handler],
        env={
            **os.environ,
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "AWS_LAMBDA_FUNCTION_NAME": "image-recognition-local",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/image-recognition-local",
            "AWS_LAMBDA_LOG_STREAM_NAME": "local",
            "POWERTOOLS_TRACE_DISABLED": "true",
            **(env or {}),
        },
    )


def serve(handler: str, port: int) -> int:
    """``imgrec rie``: the Runtime API, the runtime client, and the invoke endpoint."""
    api = RuntimeApi(port=port, timeout_s=60)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    client = start_runtime_client(api, handler)
    print(f"Runtime API on {api.address}; invoke with:", flush=True)
    print(f"  curl -d @events/api-rest-health.json http://{api.address}{INVOKE_PATH}", flush=True)
    try:
        return client.wait()
    except KeyboardInterrupt:
        client.terminate()
        return 0
    finally:
        api.shutdown()
