"""Lambda entry points and Powertools wiring; nothing else.

The model is loaded here, at import, so it happens once per container during Lambda's init
phase and never on a request.
"""

from __future__ import annotations

import warnings
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from handler import api, memory, model, s3

# /health and rejected requests legitimately publish no application metric: not worth a warning each.
warnings.filterwarnings("ignore", message="No application metrics to publish")

logger = Logger()
tracer = Tracer()
metrics = Metrics()

memory.configure()  # before any image is decoded: freed memory returns to the OS
classifier = model.classifier()  # cold start: verify checksums, load, warm up
metrics.set_default_dimensions(backend=classifier.info.backend)
logger.info("model ready", extra={"model": classifier.info.to_dict()})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def api_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway (REST v1 proxy or HTTP API v2) -> JSON answer."""
    return api.resolve(event, context)


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def s3_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """S3 ``ObjectCreated`` notifications, direct or in an SQS batch -> result records in S3."""
    return s3.handle(event, context)
