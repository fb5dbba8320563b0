"""A local HTTP server that behaves like API Gateway in front of ``api_handler`` (dev only).

Each request becomes a REST API (v1) proxy event, with bodies of binary media types
base64-encoded as API Gateway does; the handler's answer is written back, base64-decoded when
``isBase64Encoded``. Like API Gateway it serves under a stage path when given one (``/prod/...``,
anything else is 403), keeps repeated headers and query parameters in the multi-value fields,
and refuses bodies over 10 MB. Its own refusals (413, 414, 431, 501, a bad ``Content-Length``, a
body that stops arriving) are JSON in the project's ``{"error", "code"}`` shape.

Concurrency is Lambda's: connections are served in threads, but a function instance never runs
two events at once. Concurrent requests go to separate *execution environments* (``start`` builds
one: in ``imgrec serve``, a process of its own with its own function and model,
``localaws.environment``), started on demand up to a limit and then reused; a request that finds
them all busy waits for one, and one whose process ended is replaced. So ``handler/`` needs no
locks or per-thread state for the local server's sake.

``POST /feedback`` is a privileged write, as on AWS (context ``feedbackAuth=iam``, the default):
there API Gateway lets through only a request signed by an IAM principal and puts that caller in
the event's ``requestContext``. Here a local credential stands in for the signature:
``Authorization: Bearer <token>``, the token from ``IMGREC_REVIEWER_TOKEN`` (default
``local-reviewer``), and the event names ``localaws.events.LOCAL_REVIEWER`` as its caller. Without
it the answer is API Gateway's: 403, and the function never runs. The demo page this server serves
carries the credential (a ``<meta name="feedback-credential">`` it adds; the deployed function
never does), so its feedback control works locally. With ``feedback_auth="none"`` anyone may send
a correction, and none has a caller (the function stores it as anonymous).
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import html
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from handler.contract import FEEDBACK_AUTH_MODES
from localaws.context import LocalContext
from localaws.environment import EnvironmentLost
from localaws.events import LOCAL_REVIEWER, Caller, rest_event

# API Gateway refuses bodies over 10 MB before Lambda sees them.
API_GATEWAY_MAX_BODY = 10 * 1024 * 1024
# A client that announces more body than it sends is dropped after this long, never waited on.
READ_TIMEOUT_SECONDS = 10.0
GATEWAY_CODES = {
    400: "bad_request",
    403: "forbidden",
    408: "request_timeout",
    413: "request_too_large",
    414: "uri_too_long",
    431: "headers_too_large",
    501: "method_not_implemented",
    502: "bad_gateway",
}

# The local stand-in for a reviewer's IAM signature on POST /feedback (see the module).
REVIEWER_TOKEN_VARIABLE = "IMGREC_REVIEWER_TOKEN"
DEFAULT_REVIEWER_TOKEN = "local-reviewer"
FEEDBACK_ROUTE = ("POST", "/feedback")
CREDENTIAL_META = "feedback-credential"  # the demo page reads its credential from this meta tag
_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{1,200}")

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
# Concurrent requests served at once by default (one function instance, and model, each).
ENVIRONMENTS = 4


class ExecutionEnvironments:
    """Lambda's execution environments, locally: each runs one event at a time; a request takes an
    idle one, or starts a new one (its cold start) while fewer than ``most`` exist, or waits."""

    def __init__(
        self, start: Callable[[], Handler], most: int = ENVIRONMENTS, warm: Handler | None = None
    ) -> None:
        """``warm``: an environment already started (the server's cold start, before it listens)."""
        if most < 1:
            raise ValueError("at least one execution environment")
        self._start = start
        self._most = most
        self._idle: list[Handler] = [warm] if warm is not None else []
        self.started = len(self._idle)
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def handler(self) -> Iterator[Handler]:
        """An environment's handler, for one invocation."""
        with self._changed:
            while not self._idle and self.started >= self._most:
                self._changed.wait()
            handler = self._idle.pop() if self._idle else None
            if handler is None:
                self.started += 1
        if handler is None:
            try:
                handler = self._start()
            except BaseException:
                with self._changed:
                    self.started -= 1
                    self._changed.notify()
                raise
        lost = False
        try:
            yield handler
        except EnvironmentLost:  # its process ended: the next request starts a new one
            lost = True
            raise
        finally:  # the function answered, or raised (a 502): either way the environment is free again
            with self._changed:
                if lost:
                    self.started -= 1
                else:
                    self._idle.append(handler)
                self._changed.notify()
            if lost:
                _close(handler)

    def close(self) -> None:
        """End the idle environments (their processes, for ``FunctionProcess``)."""
        with self._changed:
            idle, self._idle = self._idle, []
        for handler in idle:
            _close(handler)


def _close(handler: Handler) -> None:
    close = getattr(handler, "close", None)
    if callable(close):
        close()


def _gateway_error(status: int, message: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"error": message, "code": GATEWAY_CODES.get(status, "gateway_error")}).encode()
    return status, {"Content-Type": "application/json", "Cache-Control": "no-store"}, body


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


class FeedbackGate:
    """API Gateway's IAM authorization of POST /feedback, locally: ``mode`` ``iam`` (a request needs
    the local credential, and its event names the local reviewer) or ``none`` (anyone, no caller)."""

    def __init__(self, mode: str = "iam", token: str = DEFAULT_REVIEWER_TOKEN) -> None:
        if mode not in FEEDBACK_AUTH_MODES:
            raise ValueError(f"feedback_auth must be one of {', '.join(FEEDBACK_AUTH_MODES)}, got {mode!r}")
        if not _TOKEN.fullmatch(token):
            raise ValueError(
                f"{REVIEWER_TOKEN_VARIABLE} must be 1 to 200 characters of A-Z a-z 0-9 . _ ~ + / = -"
            )
        self.mode = mode
        self.credential = f"Bearer {token}"

    @staticmethod
    def guards(method: str, path: str) -> bool:
        return (method, path.rstrip("/") or "/") == FEEDBACK_ROUTE

    def caller(self, method: str, path: str, authorization: str | None) -> Caller | str | None:
        """The caller the event carries (None: no caller), or a refusal's message (a string)."""
        if self.mode != "iam" or not self.guards(method, path):
            return None
        if authorization is None:
            return (
                "Missing Authentication Token: POST /feedback is a reviewer's write; send "
                f"Authorization: Bearer <{REVIEWER_TOKEN_VARIABLE}> (locally; on AWS a SigV4 signature)."
            )
        if not hmac.compare_digest(authorization.encode("utf-8", "replace"), self.credential.encode()):
            return "The request's credential is not the local reviewer's (see the server's start message)."
        return LOCAL_REVIEWER

    def page(self, body: bytes) -> bytes:
        """The demo page with the local credential in a meta tag (only when one is needed)."""
        if self.mode != "iam":
            return body
        meta = f'<meta name="{CREDENTIAL_META}" content="{html.escape(self.credential)}">\n'
        return body.replace(b"</head>", meta.encode() + b"</head>", 1)


def _is_page(method: str, path: str, answer: tuple[int, dict[str, str], bytes]) -> bool:
    status, headers, _ = answer
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    return (
        method in ("GET", "HEAD") and path == "/" and status == 200 and content_type.startswith("text/html")
    )


def _content_length(value: str | None) -> int | None:
    """The announced body length, or None when it is not a non-negative decimal integer."""
    if value is None:
        return 0
    value = value.strip()
    return int(value) if value.isdigit() and len(value) <= 12 else None


class ProxyRequestHandler(BaseHTTPRequestHandler):
    """One connection to the local API: each request becomes a REST API event for an execution
    environment of the server's, or API Gateway's own refusal."""

    server: LocalApiServer
    protocol_version = "HTTP/1.1"
    server_version = "image-recognition-local"
    sys_version = ""  # no "Python/3.x" banner

    def setup(self) -> None:
        self.timeout = self.server.read_timeout
        super().setup()

    def version_string(self) -> str:
        return self.server_version

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (414, 431, 501, malformed requests) in the project's shape."""
        phrase = message or HTTPStatus(code).phrase
        self._reply(*_gateway_error(code, phrase))
        self.close_connection = True

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        elapsed_ms = (time.perf_counter() - getattr(self, "_started", time.perf_counter())) * 1000
        path = urlsplit(getattr(self, "path", "") or "").path or "?"
        self.server.access(getattr(self, "command", "") or "-", path, status, elapsed_ms, len(body))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self) -> bytes | tuple[int, dict[str, str], bytes]:
        length = _content_length(self.headers.get("Content-Length"))
        if length is None:
            self.close_connection = True
            return _gateway_error(400, "Content-Length must be a non-negative integer.")
        if length > API_GATEWAY_MAX_BODY:
            self.close_connection = True
            return _gateway_error(413, f"The request body is over {API_GATEWAY_MAX_BODY} bytes.")
        try:
            body = self.rfile.read(length) if length else b""
        except TimeoutError:
            body = b""
        if len(body) < length:
            self.close_connection = True
            return _gateway_error(400, "The body is shorter than its Content-Length.")
        return body

    def _serve(self) -> None:
        self._started = time.perf_counter()
        url = urlsplit(self.path)
        stage, gate = self.server.stage, self.server.feedback
        path = split_stage(url.path, stage)
        body_in = self._read_body()
        if isinstance(body_in, tuple):
            self._reply(*body_in)
            return
        if path is None:  # API Gateway's answer for a path outside the stage
            self._reply(*_gateway_error(403, "Missing Authentication Token"))
            return
        caller = gate.caller(self.command, path, self.headers.get("Authorization"))
        if isinstance(caller, str):  # API Gateway's IAM authorization refused it: 403
            self._reply(*_gateway_error(403, caller))
            return
        host, port = self.server.server_address[:2]
        event = rest_event(
            self.command,
            path,
            body=body_in,
            headers=self.headers.items(),
            query=url.query,
            stage=stage or "",
            domain_name=f"{host}:{port}",
            caller=caller,
        )
        try:
            with self.server.environments.handler() as handler:
                answer = call_handler(handler, event)
        except Exception as error:  # the function crashed: API Gateway answers 502
            self.server.log(f"handler raised {type(error).__name__}: {error}")
            answer = _gateway_error(502, "The function failed; see the server log.")
        if _is_page(self.command, path, answer):
            status, headers, body = answer
            answer = (status, headers, gate.page(body))
        self._reply(*answer)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """The access line is written by ``_serve`` (with the time the function took)."""

    def log_message(self, format: str, *args: Any) -> None:
        self.server.log(format % args)


class LocalApiServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` on 127.0.0.1 in front of a function; port 0 picks a free port.

    ``start`` starts one execution environment and returns its handler; at most ``environments``
    run at once. A handler ``start`` returns must not be shared with another environment (each has
    its own model): to serve one shared function, pass ``environments=1`` (every request in turn).
    ``warm`` is an environment started before the server listens. ``feedback_auth`` and
    ``reviewer_token``: who may POST /feedback (``FeedbackGate``; the module says how).
    """

    daemon_threads = True
    # The listen backlog: socketserver's default of 5 resets connections under concurrent clients.
    request_queue_size = 128

    def __init__(
        self,
        start: Callable[[], Handler],
        port: int = 3000,
        host: str = "127.0.0.1",
        quiet: bool = False,
        stage: str | None = None,
        read_timeout: float = READ_TIMEOUT_SECONDS,
        environments: int = ENVIRONMENTS,
        warm: Handler | None = None,
        feedback_auth: str = "iam",
        reviewer_token: str = DEFAULT_REVIEWER_TOKEN,
    ):
        self.feedback = FeedbackGate(feedback_auth, reviewer_token)
        self.environments = ExecutionEnvironments(start, environments, warm)
        self.quiet = quiet
        self.stage = stage
        self.read_timeout = read_timeout
        super().__init__((host, port), ProxyRequestHandler)

    def server_close(self) -> None:
        super().server_close()
        self.environments.close()

    @property
    def url(self) -> str:
        """The base URL, stage included, with a trailing slash (like the stack's ApiUrl output)."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/" + (f"{self.stage}/" if self.stage else "")

    def log(self, line: str) -> None:
        if not self.quiet:  # one write per line: threads never interleave within a line
            sys.stdout.write(f"[serve] {line}\n")
            sys.stdout.flush()

    def access(self, method: str, path: str, status: int, elapsed_ms: float, answer_bytes: int) -> None:
        """One readable line per request: what was asked, the answer's status and size, how long."""
        self.log(f"{method} {path} -> {status} ({answer_bytes:,} bytes, {elapsed_ms:.0f} ms)")
