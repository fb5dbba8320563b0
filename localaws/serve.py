"""``imgrec serve``: the API on 127.0.0.1 as API Gateway and Lambda would serve it. Each concurrent
request runs in an execution environment of its own (a process with its own function and model,
started on demand: ``environment``) behind the local API server (``server``); with ``--s3``, moto's
S3 (``s3_stack``) and the worker function, which classifies uploads as the S3 -> SQS path does."""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace

from handler import config
from handler.config import Settings
from localaws.environment import FunctionProcess
from localaws.logs import clearing_metrics, quiet_local_logs
from localaws.s3_stack import LocalS3
from localaws.server import DEFAULT_REVIEWER_TOKEN, ENVIRONMENTS, REVIEWER_TOKEN_VARIABLE, LocalApiServer


def run(port: int, host: str, stage: str | None, with_s3: bool) -> int:
    """Serve until Ctrl+C; the first environment's cold start happens before the server listens."""
    quiet_local_logs()
    settings, local_s3 = config.read_settings(), None
    if with_s3:
        local_s3 = LocalS3()
        settings = replace(settings, uploads_bucket=local_s3.bucket)
    s3_endpoint = local_s3.endpoint if local_s3 else None

    def start_environment() -> FunctionProcess:
        return FunctionProcess(settings, s3_endpoint)

    warm = start_environment()
    if local_s3:  # the worker function, with its own model, alone in this process
        from handler.function import Function

        local_s3.notify(clearing_metrics(Function.start(settings, s3_client=local_s3.client).s3_handler))
    token = os.environ.get(REVIEWER_TOKEN_VARIABLE, "").strip() or DEFAULT_REVIEWER_TOKEN
    with LocalApiServer(
        start_environment,
        port=port,
        host=host,
        stage=stage,
        environments=ENVIRONMENTS,
        warm=warm,
        feedback_auth=settings.feedback_auth,
        reviewer_token=token,
    ) as server:
        for line in announcement(server.url, settings, token, local_s3):
            print(line, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    if local_s3:
        local_s3.stop()
    return 0


def announcement(url: str, settings: Settings, token: str, local_s3: LocalS3 | None) -> list[str]:
    """What the server prints once it listens: where, how to call it, who may send feedback, and
    where uploads and captures go."""
    lines = [f"Demo page and API on {url}  (Ctrl+C to stop)", f"  curl -F image=@photo.jpg {url}predict"]
    if settings.feedback_auth == "iam":
        lines.append(
            f"  feedback: POST {url}feedback needs the local reviewer's credential, "
            f"-H 'Authorization: Bearer {token}' ({REVIEWER_TOKEN_VARIABLE}; on AWS: a SigV4 "
            "signature); the demo page sends it"
        )
    else:
        lines.append("  feedback: FEEDBACK_AUTH=none, corrections are anonymous (kept apart)")
    if local_s3:
        lines.append(f"  uploads: moto S3 on {local_s3.endpoint}, bucket {local_s3.bucket}")
    if local_s3 and (settings.capture_rate or settings.capture_uncertain_rate):
        where = f"s3://{settings.capture_bucket or local_s3.bucket}/{settings.capture_prefix}"
        uncertain = (
            settings.capture_rate
            if settings.capture_uncertain_rate is None
            else settings.capture_uncertain_rate
        )
        lines.append(
            f"  capture: rate {settings.capture_rate:g} (uncertain answers: {uncertain:g}) into {where}; "
            f"while this runs, "
            f"imgrec dataset export {where} --out build/exports/local --endpoint-url {local_s3.endpoint}"
        )
    return lines
