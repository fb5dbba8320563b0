"""The function's entry points for one runtime, wrapped in Powertools' Logger, Tracer and Metrics.

``handler.app`` builds one from the environment at import (Lambda's init phase); tests and the
dev tools build their own from the settings and S3 client they choose.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from handler import config

# Before any module below creates its Logger or Metrics: every door (Lambda, CLI, tests) then uses
# one service name and namespace (the stack and the image set them explicitly as well).
config.apply_powertools_defaults()

from aws_lambda_powertools import Logger, Metrics, Tracer  # noqa: E402
from aws_lambda_powertools.logging import correlation_paths  # noqa: E402
from aws_lambda_powertools.metrics.functions import is_metrics_disabled  # noqa: E402
from aws_lambda_powertools.utilities.typing import LambdaContext  # noqa: E402

from handler.answers import signals  # noqa: E402
from handler.config import Settings  # noqa: E402
from handler.http.api import Api  # noqa: E402
from handler.recognition.sandbox import DecodeSandbox  # noqa: E402
from handler.records import bulk, notifications  # noqa: E402
from handler.runtime import Runtime  # noqa: E402

logger = Logger()
tracer = Tracer()
metrics = Metrics()
# Powertools prints the cold-start metric through ``single_metric``, which ignores
# POWERTOOLS_METRICS_DISABLED (3.x): honour the switch here (``imgrec serve`` sets it).
COLD_START_METRIC = not is_metrics_disabled()
# A health check or a refused request adds no metric: Powertools then warns once per invocation,
# which says nothing an operator can act on (its documentation suggests this filter).
warnings.filterwarnings("ignore", message="No application metrics to publish")

Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def entry_point(handler: Handler, correlation_id_path: str | None = None) -> Handler:
    """One wrapping for every entry point, outermost first: the logger's Lambda context (and the
    request id as correlation id for the API), the X-Ray segment (responses not captured: images and
    batches outgrow its 64 KB), the metrics flushed per invocation with the cold start, and our own
    duration and memory signals innermost, so they measure the handler alone."""
    measured = signals.measured(handler)
    flushed = metrics.log_metrics(capture_cold_start_metric=COLD_START_METRIC)(measured)
    traced = tracer.capture_lambda_handler(flushed, capture_response=False)
    return logger.inject_lambda_context(traced, correlation_id_path=correlation_id_path)


class Function:
    """``api_handler``, ``s3_handler`` and ``bulk_handler`` bound to one runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.api = Api(runtime.answerer, runtime.settings, runtime.storage, runtime.capture)
        metrics.set_default_dimensions(backend=runtime.recognizer.classifier.info.backend)

        def api_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
            """API Gateway (REST v1 proxy or HTTP API v2) -> JSON answer."""
            answer = self.api.resolve(event, context)
            signals.answer(int(answer.get("statusCode", 500)))
            return answer

        def s3_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
            """S3 ``ObjectCreated`` notifications, direct or in an SQS batch -> result records in S3."""
            return notifications.handle(self.runtime.records, event)

        def bulk_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
            """Distributed Map batches and S3 Batch Operations tasks -> result records in S3."""
            return bulk.handle(self.runtime.records, event)

        self.api_handler = entry_point(api_handler, correlation_paths.API_GATEWAY_REST)
        self.s3_handler = entry_point(s3_handler)
        self.bulk_handler = entry_point(bulk_handler)

    @classmethod
    def start(
        cls, settings: Settings, s3_client: Any = None, sandbox: DecodeSandbox | None = None
    ) -> Function:
        """The cold start: the decode sandbox (``sandbox`` when already launched), the model
        verified, loaded and warmed up."""
        function = cls(Runtime.start(settings, s3_client, sandbox))
        logger.info("model ready", extra={"model": function.runtime.recognizer.classifier.info.to_dict()})
        return function
