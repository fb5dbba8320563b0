"""Dashboard and alarms: what ops watch, and what wakes them (via SNS)."""

from __future__ import annotations

from typing import Protocol

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from handler.contract import METRICS_NAMESPACE, SERVICE_NAME, top_class_metric
from infra.components.drift import ServedModel
from infra.settings import Settings

FIVE_MINUTES = Duration.minutes(5)
NAMESPACE = METRICS_NAMESPACE  # the functions' POWERTOOLS_METRICS_NAMESPACE
SERVICE = SERVICE_NAME


def service_count(name: str, period: Duration) -> cw.Metric:
    """A count the function's Powertools metrics publish with the service dimension only."""
    return cw.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map={"service": SERVICE},
        statistic="Sum",
        period=period,
    )


class FrontDoor(Protocol):
    """The API in front of the function, either type: its metrics by kind."""

    def metric(self, kind: str, statistic: str, period: Duration) -> cw.Metric: ...


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        front_door: FrontDoor,
        api_function: lambda_.Function,
        worker: lambda_.Function,
        queue: sqs.Queue,
        dead_letters: sqs.Queue,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(self, "Alarms", display_name="Image recognition alarms", enforce_ssl=True)
        if settings.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(settings.alarm_email))

        def api_metric(kind: str, statistic: str) -> cw.Metric:
            return front_door.metric(kind, statistic, FIVE_MINUTES)

        requests = api_metric("count", "Sum")
        errors_5xx = api_metric("5xx", "Sum")
        error_rate = cw.MathExpression(
            expression="IF(requests > 0, 100 * errors / requests, 0)",
            using_metrics={"requests": requests, "errors": errors_5xx},
            label="5xx rate (%)",
            period=FIVE_MINUTES,
        )
        latency = {p: api_metric("latency", p) for p in ("p50", "p90", "p99")}

        self.alarms = [
            error_rate.create_alarm(
                self,
                "Api5xxRate",
                alarm_description=f"API 5xx above {settings.alarm_5xx_rate_percent}% of requests (5 min)",
                threshold=settings.alarm_5xx_rate_percent,
                evaluation_periods=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
            latency["p99"].create_alarm(
                self,
                "ApiP99Latency",
                alarm_description=f"API p99 latency above {settings.alarm_p99_latency_ms} ms for 15 minutes",
                threshold=settings.alarm_p99_latency_ms,
                evaluation_periods=3,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
        ]
        dlq_depth = dead_letters.metric_approximate_number_of_messages_visible(
            period=FIVE_MINUTES, statistic="Maximum"
        )
        happened = [
            (f"{name}{kind}", metric, f"{name} function {kind.lower()}")
            for name, function in (("Api", api_function), ("Worker", worker))
            for kind, metric in (
                ("Errors", function.metric_errors(period=FIVE_MINUTES)),
                ("Throttles", function.metric_throttles(period=FIVE_MINUTES)),
            )
        ]
        happened.append(
            ("DeadLettersNotEmpty", dlq_depth, "Uploads could not be processed after retries: see the DLQ")
        )
        # Each of these should never happen: one occurrence in five minutes is an alarm.
        self.alarms += [
            metric.create_alarm(
                self,
                alarm_id,
                alarm_description=description,
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            )
            for alarm_id, metric, description in happened
        ]
        # Exceptions the API function answered as 500s: Lambda's Errors metric never counts them.
        server_errors = cw.Metric(
            namespace=NAMESPACE,
            metric_name="ServerErrors",
            dimensions_map={"service": SERVICE, "backend": settings.model_backend},
            statistic="Sum",
            period=Duration.minutes(1),
        )
        self.alarms.append(
            server_errors.create_alarm(
                self,
                "ApiServerErrors",
                alarm_description="The API function answered a 500 (a handled exception) within a minute",
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            )
        )
        for alarm in self.alarms:
            alarm.add_alarm_action(actions.SnsAction(self.topic))
            alarm.add_ok_action(actions.SnsAction(self.topic))
        self.dashboard = cw.Dashboard(self, "Dashboard", default_interval=Duration.hours(3))

        def graph(title: str, metrics: list[cw.IMetric], **kwargs) -> cw.GraphWidget:
            return cw.GraphWidget(title=title, left=metrics, width=8, height=6, **kwargs)

        inference = cw.Metric(
            namespace=NAMESPACE,
            metric_name="InferenceMs",
            dimensions_map={"service": SERVICE, "backend": settings.model_backend},
            statistic="p50",
            period=FIVE_MINUTES,
        )
        functions = (api_function, worker)
        self.dashboard.add_widgets(
            graph("API requests", [requests, api_metric("4xx", "Sum"), errors_5xx]),
            graph("API latency (ms)", list(latency.values())),
            graph("API 5xx rate (%)", [error_rate]),
        )
        self.dashboard.add_widgets(
            graph(
                "Lambda duration p50/p99 (ms)",
                [f.metric_duration(statistic=s) for f in functions for s in ("p50", "p99")],
            ),
            graph(
                "Lambda errors and throttles",
                [m for f in functions for m in (f.metric_errors(), f.metric_throttles())],
            ),
            graph(
                "Lambda concurrency",
                [f.metric("ConcurrentExecutions", statistic="Maximum") for f in functions],
            ),
        )
        self.dashboard.add_widgets(
            cw.LogQueryWidget(
                title="Cold starts: init duration (ms)",
                log_group_names=[f.log_group.log_group_name for f in functions],
                query_lines=[
                    'filter @type = "REPORT" and ispresent(@initDuration)',
                    "stats count() as coldStarts, avg(@initDuration) as avgInitMs,"
                    " max(@initDuration) as maxInitMs by bin(5m)",
                ],
                view=cw.LogQueryVisualizationType.LINE,
                width=8,
                height=6,
            ),
            graph(
                "Upload queue: oldest message age (s)",
                [queue.metric_approximate_age_of_oldest_message(statistic="Maximum")],
            ),
            graph("Dead-letter queue depth", [dlq_depth]),
        )
        self.dashboard.add_widgets(graph("Model inference p50 (ms)", [inference]))
        self._graph = graph

    def watch_rollouts(self, rollback_alarms: list[cw.IAlarm]) -> None:
        """The rollback alarms' states beside the graphs: a rollout in trouble shows on the dashboard."""
        self.dashboard.add_widgets(
            cw.AlarmStatusWidget(
                title="Rollback alarms (the version being deployed)", alarms=rollback_alarms, width=24
            )
        )

    def watch_backfill(self, state_machine: sfn.StateMachine, bulk_worker: lambda_.Function) -> None:
        """A failed backfill run is an alarm; its progress, worker and images on the dashboard."""
        failed = state_machine.metric_failed(period=FIVE_MINUTES, statistic="Sum")
        alarm = failed.create_alarm(
            self,
            "BackfillExecutionsFailed",
            alarm_description="A backfill run failed: more batches failed than tolerated, or bad input. "
            "Its manifest under results/backfill-runs/ lists the failed batches; redrive or rerun it.",
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        alarm.add_ok_action(actions.SnsAction(self.topic))
        self.alarms.append(alarm)
        images = [service_count(name, Duration.minutes(1)) for name in ("ImagesProcessed", "ImagesFailed")]
        self.dashboard.add_widgets(
            self._graph(
                "Backfill runs",
                [
                    state_machine.metric_started(),
                    state_machine.metric_succeeded(),
                    failed,
                    state_machine.metric_aborted(),
                ],
            ),
            self._graph(
                "Bulk worker: duration p50/p99 (ms), concurrency",
                [bulk_worker.metric_duration(statistic=s) for s in ("p50", "p99")],
                right=[bulk_worker.metric("ConcurrentExecutions", statistic="Maximum")],
            ),
            self._graph("Images per minute (all workers): classified, error records", images),
        )

    def watch_model(self, model: ServedModel) -> None:
        """The served model's answers (against its card's validation baseline when it has one) and
        what capture and feedback stored."""
        baseline = model.baseline

        def line(value: float | None, label: str) -> list[cw.HorizontalAnnotation]:
            return [] if value is None else [cw.HorizontalAnnotation(value=value, label=label)]

        widgets = [
            self._graph(
                f"Model {model.name} {model.version}: mean top-1 confidence",
                [model.metric("Top1Confidence", "Average", FIVE_MINUTES, "mean top-1 confidence")],
                left_annotations=line(baseline and baseline.mean_top1_confidence, "validation baseline"),
                left_y_axis=cw.YAxisProps(min=0, max=1),
            ),
            self._graph(
                "Uncertain and out-of-domain answers (share of predictions)",
                [
                    model.metric("ModelUncertain", "Average", FIVE_MINUTES, "uncertain share"),
                    model.metric("ModelOutOfDomain", "Average", FIVE_MINUTES, "out-of-domain share"),
                ],
                left_annotations=line(baseline and baseline.uncertain_rate, "validation baseline"),
                left_y_axis=cw.YAxisProps(min=0, max=1),
            ),
        ]
        if model.top_classes:
            widgets.append(
                self._graph(
                    "Top-1 class shares",
                    [
                        model.metric(top_class_metric(label), "Average", FIVE_MINUTES, label)
                        for label in model.top_classes
                    ],
                    left_y_axis=cw.YAxisProps(min=0, max=1),
                )
            )
        capture = [
            service_count(name, FIVE_MINUTES) for name in ("CaptureStored", "CaptureFailed", "FeedbackStored")
        ]
        widgets.append(self._graph("Capture and feedback (per 5 min)", capture))
        self.dashboard.add_widgets(*widgets[:3])
        self.dashboard.add_widgets(*widgets[3:])

    def watch_drift(self, drift_alarms: list[cw.IAlarm]) -> None:
        """The drift alarms' states on the dashboard (they notify the topic themselves)."""
        if drift_alarms:
            self.dashboard.add_widgets(
                cw.AlarmStatusWidget(
                    title="Model drift against the validation baseline", alarms=drift_alarms, width=24
                )
            )

    @property
    def dashboard_url(self) -> str:
        return (
            f"https://console.aws.amazon.com/cloudwatch/home?region={self.dashboard.stack.region}"
            f"#dashboards:name={self.dashboard.dashboard_name}"
        )
