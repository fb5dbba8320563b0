"""One Lambda execution environment, locally: a process of its own running the function.

Lambda gives each concurrent invocation an environment of its own: a process with its own
interpreter, modules and model, that runs one event at a time. Threads in one process are not
that: Powertools' event handler keeps the event it resolves on a class attribute
(``BaseRouter.current_event``), shared by every resolver of the process, so two functions serving at
once in one process answer each other's requests. ``imgrec serve`` therefore starts each
environment as a process (``multiprocessing``'s spawn: a fresh interpreter, like a cold start) and
sends it events over a pipe.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from handler.config import Settings
from localaws.logs import clearing_metrics
from training.cost import peak_mb

# How long a cold start may take (spawn, imports, the model, the decode sandbox) before it counts
# as failed.
START_TIMEOUT_S = 120.0
# Lambda's timeout for one event: the API function's (API Gateway gives up at 29 s).
DEFAULT_TIMEOUT_S = 30.0


class EnvironmentLost(RuntimeError):
    """The environment's process ended (it crashed or was killed): Lambda would start a new one."""


class FunctionFailed(RuntimeError):
    """The function raised: Lambda reports an unhandled error, API Gateway answers 502."""


class FunctionProcess:
    """A function (``handler.function.Function``) in a process of its own; call it like a handler.

    ``s3_endpoint``: the local S3 (moto) the function reaches for uploads and results. The process
    ends when ``close`` is called, or when this process ends (it reads end of file and exits).
    """

    def __init__(
        self,
        settings: Settings,
        s3_endpoint: str | None = None,
        entry: str = "api_handler",
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.timeout_s = timeout_s
        context = multiprocessing.get_context("spawn")
        self._one_event = threading.Lock()
        # Lambda's REPORT figures for the last event, as this process measured them: ``duration_ms``
        # (the handler's wall time) and ``max_memory_mb`` (the function process's peak so far; its
        # decode workers, separate processes, aside).
        self.last_report: dict[str, float] = {}
        self._connection, theirs = context.Pipe()
        self._process = context.Process(
            target=_serve_events, args=(theirs, settings, s3_endpoint, entry), daemon=True, name="function"
        )
        self._process.start()
        theirs.close()
        try:
            if not self._connection.poll(START_TIMEOUT_S):
                raise EnvironmentLost(f"the function did not start within {START_TIMEOUT_S:.0f} s")
            self._answer(START_TIMEOUT_S)  # "ready", or why it could not start
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        with self._one_event:  # an environment runs one event at a time; a second caller waits
            try:
                self._connection.send((event, context))
            except (OSError, EOFError):
                raise EnvironmentLost("the function's process is gone") from None
            return self._answer(self.timeout_s)

    def _answer(self, timeout_s: float) -> Any:
        """What the function sent back, within ``timeout_s``; past it, Lambda's timeout: the
        environment is ended (and replaced by the next request)."""
        try:
            if not self._connection.poll(timeout_s):
                self._process.kill()
                raise EnvironmentLost(f"the function timed out after {timeout_s:.0f} s")
            outcome, value, *report = self._connection.recv()
        except (OSError, EOFError):
            raise EnvironmentLost("the function's process ended while running an event") from None
        self.last_report = report[0] if report else {}
        if outcome == "raised":
            raise FunctionFailed(value)
        return value

    def close(self) -> None:
        self._connection.close()
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=5)


def _serve_events(connection: Connection, settings: Settings, s3_endpoint: str | None, entry: str) -> None:
    """The environment's process: a cold start, then one event at a time until the pipe closes."""
    try:
        handler = _start(settings, s3_endpoint, entry)
    except Exception as error:  # a cold start that fails is reported, never a hang
        connection.send(("raised", f"the function did not start: {type(error).__name__}: {error}"))
        return
    connection.send(("ready", None))
    while True:
        try:
            event, context = connection.recv()
        except (EOFError, OSError):
            return  # the server is gone
        started = time.perf_counter()
        try:
            outcome, value = "answered", handler(event, context)
        except Exception as error:
            traceback.print_exc()  # where Lambda would log it: the environment's own output
            outcome, value = "raised", f"{type(error).__name__}: {error}"
        connection.send((outcome, value, _report(started)))


def _report(started: float) -> dict[str, float]:
    """What Lambda's REPORT line says of an invocation that started at ``started``."""
    return {"duration_ms": round((time.perf_counter() - started) * 1000, 2), "max_memory_mb": peak_mb()}


def _start(settings: Settings, s3_endpoint: str | None, entry: str):
    from handler.function import Function  # not before: Powertools reads its settings at import
    from localaws.s3_stack import local_client  # moto's S3 proxy only when asked for (--s3)

    s3_client = local_client(s3_endpoint) if s3_endpoint else None
    return clearing_metrics(getattr(Function.start(settings, s3_client=s3_client), entry))
