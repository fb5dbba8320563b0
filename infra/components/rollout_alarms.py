"""The rollback alarms of a gradual deployment: what CodeDeploy watches while alias ``live`` shifts.

Each measures the **new version alone** (its number is a dimension: Lambda's ``ExecutedVersion`` on
the alias, ``version`` on the function's own EMF signals, ``handler/answers/signals.py``) over **1-minute
periods**, and fires after ``rollbackMinutes`` breaching minutes in a row: inside the canary's
5 minutes, CloudWatch's delay of about a minute included. Stage-wide alarms (``monitoring.py``) keep
paging ops; they cannot tell a canary's failures from the old version's traffic.

- ``ApiRolloutFailureRate``: the version's 5xx answers (handled exceptions included) plus its
  invocations that failed outright (crash, timeout), per invocation, ≥ ``rollbackErrorRatePercent``.
- ``ApiRolloutP99Latency``: the version's p99 duration ≥ ``alarmP99LatencyMs``.
- ``ApiRolloutUncertainRate``: its predictions answered ``uncertain`` ≥ ``rollbackUncertainRatePercent``
  (a model with a confidence threshold; without one, never any data, never an alarm).
- ``WorkerRolloutFailureRate``: the worker version's failed batches or failed invocations ≥
  ``rollbackErrorRatePercent``.

Every alarm treats missing data as not breaching, and a minute with fewer than
``rollbackMinRequests`` requests as not breaching either: a minute with almost no traffic to the new
version is not evidence against it (a p99 of too few samples is not evaluated at all).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

from handler.contract import METRICS_NAMESPACE, SERVICE_NAME
from infra.settings import Settings

PERIOD = Duration.minutes(1)


def version_metric(alias: lambda_.Alias, name: str, statistic: str) -> cw.Metric:
    """Lambda's ``name`` for the invocations of ``alias`` that ran its current version."""
    function_name = alias.version.lambda_.function_name
    return cw.Metric(
        namespace="AWS/Lambda",
        metric_name=name,
        dimensions_map={
            "FunctionName": function_name,
            "Resource": f"{function_name}:{alias.alias_name}",
            "ExecutedVersion": alias.version.version,
        },
        statistic=statistic,
        period=PERIOD,
    )


def signal_metric(alias: lambda_.Alias, name: str, statistic: str) -> cw.Metric:
    """The function's own ``name`` signal (``handler/answers/signals.py``)
    from the alias's current version."""
    return cw.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={
            "service": SERVICE_NAME,
            "function": alias.version.lambda_.function_name,
            "version": alias.version.version,
        },
        statistic=statistic,
        period=PERIOD,
    )


class RolloutAlarms(Construct):
    """``rollback_alarms``: for the ``api`` and the ``worker`` deployment groups."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        api_live: lambda_.Alias,
        worker_live: lambda_.Alias,
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        self.settings = settings
        self.api = self._api_alarms(api_live)
        self.worker = [self._worker_alarm(worker_live)]
        for alarm in [*self.api, *self.worker]:
            alarm.add_alarm_action(actions.SnsAction(topic))
            alarm.add_ok_action(actions.SnsAction(topic))
        self.rollback_alarms: dict[str, list[cw.IAlarm]] = {"api": self.api, "worker": self.worker}

    def _api_alarms(self, api_live: lambda_.Alias) -> list[cw.Alarm]:
        """A new API version that fails, is slow, or is unsure of its answers is rolled back."""
        settings, minutes = self.settings, self.settings.rollback_minutes
        failing = f"{settings.rollback_error_rate_percent:g} %"
        api_failures = self._failure_rate(api_live, "AnswerFailed", "new API version: failed requests (%)")
        return [
            self._alarm(
                "ApiRolloutFailureRate",
                api_failures,
                settings.rollback_error_rate_percent,
                f"A new API version failed {failing} or more of its requests for {minutes} min",
            ),
            self._alarm(
                "ApiRolloutP99Latency",
                version_metric(api_live, "Duration", "p99"),  # too few samples: not evaluated (below)
                settings.alarm_p99_latency_ms,
                f"A new API version's p99 reached {settings.alarm_p99_latency_ms} ms for {minutes} min",
            ),
            self._alarm(
                "ApiRolloutUncertainRate",
                self._uncertain_rate(api_live),
                settings.rollback_uncertain_rate_percent,
                f"A new API version answered uncertain on {settings.rollback_uncertain_rate_percent:g} % "
                f"or more of its predictions for {minutes} min",
            ),
        ]

    def _worker_alarm(self, worker_live: lambda_.Alias) -> cw.Alarm:
        """A new worker version failing its batches is rolled back (it has no latency a user waits on)."""
        settings = self.settings
        # One SQS invocation is one batch (a redelivered one, one sample per message).
        worker_failures = self._failure_rate(
            worker_live, "BatchFailed", "new worker version: failed batches (%)"
        )
        return self._alarm(
            "WorkerRolloutFailureRate",
            worker_failures,
            settings.rollback_error_rate_percent,
            f"A new worker version failed {settings.rollback_error_rate_percent:g} % or more of its batches "
            f"for {settings.rollback_minutes} min",
        )

    def _uncertain_rate(self, api_live: lambda_.Alias) -> cw.MathExpression:
        """The version's share of ``uncertain`` answers, in minutes with ``rollbackMinRequests``
        predictions or more (0 otherwise: a few unsure answers are not evidence)."""
        enough = self.settings.rollback_min_requests
        return cw.MathExpression(
            expression=f"IF(predictions >= {enough}, 100 * uncertain, 0)",
            using_metrics={
                "uncertain": signal_metric(api_live, "ModelUncertain", "Average"),
                "predictions": signal_metric(api_live, "ModelUncertain", "SampleCount"),
            },
            label="new API version: uncertain predictions (%)",
            period=PERIOD,
        )

    def _failure_rate(self, alias: lambda_.Alias, signal: str, label: str) -> cw.MathExpression:
        """100 x (the version's ``signal`` failures + its crashed invocations) / its invocations, in
        minutes with at least ``rollbackMinRequests`` invocations (0 otherwise)."""
        failures = "100 * (FILL(failed, 0) + FILL(crashed, 0)) / invocations"
        return cw.MathExpression(
            expression=f"IF(invocations >= {self.settings.rollback_min_requests}, {failures}, 0)",
            using_metrics={
                "invocations": version_metric(alias, "Invocations", "Sum"),
                "crashed": version_metric(alias, "Errors", "Sum"),
                "failed": signal_metric(alias, signal, "Sum"),
            },
            label=label,
            period=PERIOD,
        )

    def _alarm(self, alarm_id: str, metric: cw.IMetric, threshold: float, description: str) -> cw.Alarm:
        """Breaching ``rollbackMinutes`` minutes in a row: quick enough to stop the canary."""
        return metric.create_alarm(
            self,
            alarm_id,
            alarm_description=description,
            threshold=threshold,
            evaluation_periods=self.settings.rollback_minutes,
            datapoints_to_alarm=self.settings.rollback_minutes,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            # A p99 of a handful of requests is their slowest one (a cold start): not evidence.
            evaluate_low_sample_count_percentile="ignore",
        )
