"""What the local stand-ins log: one readable access line per request by default, or Lambda's own
shape (``LOG_FORMAT=json``: JSON logs, an EMF blob per event). ``imgrec serve`` sets it up; each
execution environment (``environment``) and the S3 notifier's worker run their handler through
``clearing_metrics``."""

from __future__ import annotations

import os
import warnings


def lambda_log_format() -> bool:
    """Whether ``imgrec serve`` shows what Lambda would log (``LOG_FORMAT=json``)."""
    return os.environ.get("LOG_FORMAT", "text").strip().lower() == "json"


def quiet_local_logs() -> None:
    """``imgrec serve`` prints one readable access line per request: Powertools' logs at WARNING and
    its metrics off (``LOG_FORMAT=json`` keeps Lambda's shape: JSON logs, an EMF blob per request)."""
    if lambda_log_format():
        return
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    warnings.filterwarnings("ignore", message="No application metrics to publish")


def clearing_metrics(handler):
    """``handler``, leaving no metrics behind when they are off: Powertools still accumulates what
    ``add_metric`` adds, and prints it at 100 values even when off. With Lambda's log format
    (``LOG_FORMAT=json``) metrics are on and each event flushes its own."""
    if lambda_log_format():
        return handler
    from aws_lambda_powertools import Metrics

    def run(event, context):
        try:
            return handler(event, context)
        finally:
            Metrics().clear_metrics()

    return run
