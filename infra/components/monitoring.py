"""Dashboard and alarms: what ops watch, and what wakes them (via SNS)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

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


def graph(title: str, metrics: list[cw.IMetric], **kwargs: Any) -> cw.GraphWidget:
    """A dashboard graph a third of the row wide: three to a row keep the dashboard's grid."""
    return cw.GraphWidget(title=title, left=metrics, width=8, height=6, **kwargs)


@dataclass(frozen=True)
class ApiMetrics:
    """The front door's metrics over five minutes: the same objects feed its alarms and graphs, so
    what pages ops is what the dashboard shows."""

    front_door: FrontDoor
    requests: cw.Metric
    errors_5xx: cw.Metric
    error_rate: cw.MathExpression
    latency: dict[str, cw.Metric]

    @classmethod
    def of(cls, front_door: FrontDoor) -> ApiMetrics:
        def metric(kind: str, statistic: str) -> cw.Metric:
            return front_door.metric(kind, statistic, FIVE_MINUTES)

        requests, errors_5xx = metric("count", "Sum"), metric("5xx", "Sum")
        error_rate = cw.MathExpression(
            expression="IF(requests > 0, 100 * errors / requests, 0)",
            using_metrics={"requests": requests, "errors": errors_5xx},
            label="5xx rate (%)",
            period=FIVE_MINUTES,
        )
        latency = {p: metric("latency", p) for p in ("p50", "p90", "p99")}
        return cls(front_door, requests, errors_5xx, error_rate, latency)

    def metric(self, kind: str, statistic: str) -> cw.Metric:
        """Another of the front door's metrics (the dashboard's 4xx), over the same five minutes."""
        return self.front_door.metric(kind, statistic, FIVE_MINUTES)


class Monitoring(Construct):
    """The alarm topic, the alarms and the dashboard; the ``watch_*`` methods add what other
    components own (rollouts, backfill, the model) once they exist."""

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
        api = ApiMetrics.of(front_door)
        dlq_depth = dead_letters.metric_approximate_number_of_messages_visible(
            period=FIVE_MINUTES, statistic="Maximum"
        )
        self.alarms = [
            *self._api_alarms(api, settings),
            *self._never_alarms(api_function, worker, dlq_depth),
            self._server_errors_alarm(settings.model_backend),
        ]
        for alarm in self.alarms:
            self._notify(alarm)
        self.dashboard = cw.Dashboard(self, "Dashboard", default_interval=Duration.hours(3))
        functions = (api_function, worker)
        self.dashboard.add_widgets(*self._api_graphs(api))
        self.dashboard.add_widgets(*self._function_graphs(functions))
        self.dashboard.add_widgets(*self._queue_graphs(functions, queue, dlq_depth))
        self.dashboard.add_widgets(
            graph("Model inference p50 (ms)", [self._inference(settings.model_backend)])
        )

    def _notify(self, alarm: cw.Alarm) -> None:
        """The topic hears an alarm going off and clearing: ops know when it is over, too."""
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        alarm.add_ok_action(actions.SnsAction(self.topic))

    def _at_least_once(self, alarm_id: str, metric: cw.IMetric, description: str) -> cw.Alarm:
        """An alarm on something that should never happen: one occurrence in a period is one."""
        return metric.create_alarm(
            self,
            alarm_id,
            alarm_description=description,
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )

    def _api_alarms(self, api: ApiMetrics, settings: Settings) -> list[cw.Alarm]:
        """What users feel: a 5xx rate above the setting over five minutes, a slow p99 for fifteen
        (three periods: one slow period is a spike, not an outage)."""
        return [
            api.error_rate.create_alarm(
                self,
                "Api5xxRate",
                alarm_description=f"API 5xx above {settings.alarm_5xx_rate_percent}% of requests (5 min)",
                threshold=settings.alarm_5xx_rate_percent,
                evaluation_periods=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
            api.latency["p99"].create_alarm(
                self,
                "ApiP99Latency",
                alarm_description=f"API p99 latency above {settings.alarm_p99_latency_ms} ms for 15 minutes",
                threshold=settings.alarm_p99_latency_ms,
                evaluation_periods=3,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
        ]

    def _never_alarms(
        self, api_function: lambda_.Function, worker: lambda_.Function, dlq_depth: cw.Metric
    ) -> list[cw.Alarm]:
        """Function errors and throttles, and uploads given up on: each should never happen, so
        one in five minutes is an alarm."""
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
        return [self._at_least_once(alarm_id, metric, text) for alarm_id, metric, text in happened]

    def _server_errors_alarm(self, backend: str) -> cw.Alarm:
        """Exceptions the API function answered as 500s: Lambda's Errors metric never counts them,
        so the function's own metric pages within a minute."""
        server_errors = cw.Metric(
            namespace=NAMESPACE,
            metric_name="ServerErrors",
            dimensions_map={"service": SERVICE, "backend": backend},
            statistic="Sum",
            period=Duration.minutes(1),
        )
        return self._at_least_once(
            "ApiServerErrors",
            server_errors,
            "The API function answered a 500 (a handled exception) within a minute",
        )

    @staticmethod
    def _api_graphs(api: ApiMetrics) -> list[cw.IWidget]:
        """The first row: what callers see (requests by outcome, latency, the alarmed 5xx rate)."""
        return [
            graph("API requests", [api.requests, api.metric("4xx", "Sum"), api.errors_5xx]),
            graph("API latency (ms)", list(api.latency.values())),
            graph("API 5xx rate (%)", [api.error_rate]),
        ]

    @staticmethod
    def _function_graphs(functions: tuple[lambda_.Function, ...]) -> list[cw.IWidget]:
        """The second row: both functions side by side, so a slow or failing one stands out."""
        return [
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
        ]

    @staticmethod
    def _queue_graphs(
        functions: tuple[lambda_.Function, ...], queue: sqs.Queue, dlq_depth: cw.Metric
    ) -> list[cw.IWidget]:
        """The third row: cold starts (from the REPORT log lines: no metric has them) and the S3
        path's backlog, which grows before anything fails."""
        cold_starts = cw.LogQueryWidget(
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
        )
        return [
            cold_starts,
            graph(
                "Upload queue: oldest message age (s)",
                [queue.metric_approximate_age_of_oldest_message(statistic="Maximum")],
            ),
            graph("Dead-letter queue depth", [dlq_depth]),
        ]

    @staticmethod
    def _inference(backend: str) -> cw.Metric:
        """The model's own time per batch, apart from decoding and the network."""
        return cw.Metric(
            namespace=NAMESPACE,
            metric_name="InferenceMs",
            dimensions_map={"service": SERVICE, "backend": backend},
            statistic="p50",
            period=FIVE_MINUTES,
        )

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
        alarm = self._at_least_once(
            "BackfillExecutionsFailed",
            failed,
            "A backfill run failed: more batches failed than tolerated, or bad input. "
            "Its manifest under results/backfill-runs/ lists the failed batches; redrive or rerun it.",
        )
        self._notify(alarm)
        self.alarms.append(alarm)
        images = [service_count(name, Duration.minutes(1)) for name in ("ImagesProcessed", "ImagesFailed")]
        self.dashboard.add_widgets(
            graph(
                "Backfill runs",
                [
                    state_machine.metric_started(),
                    state_machine.metric_succeeded(),
                    failed,
                    state_machine.metric_aborted(),
                ],
            ),
            graph(
                "Bulk worker: duration p50/p99 (ms), concurrency",
                [bulk_worker.metric_duration(statistic=s) for s in ("p50", "p99")],
                right=[bulk_worker.metric("ConcurrentExecutions", statistic="Maximum")],
            ),
            graph("Images per minute (all workers): classified, error records", images),
        )

    def watch_model(self, model: ServedModel) -> None:
        """The served model's answers (against its card's validation baseline when it has one) and
        what capture and feedback stored."""
        baseline = model.baseline

        def line(value: float | None, label: str) -> list[cw.HorizontalAnnotation]:
            return [] if value is None else [cw.HorizontalAnnotation(value=value, label=label)]

        widgets = [
            graph(
                f"Model {model.name} {model.version}: mean top-1 confidence",
                [model.metric("Top1Confidence", "Average", FIVE_MINUTES, "mean top-1 confidence")],
                left_annotations=line(baseline and baseline.mean_top1_confidence, "validation baseline"),
                left_y_axis=cw.YAxisProps(min=0, max=1),
            ),
            graph(
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
                graph(
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
        widgets.append(graph("Capture and feedback (per 5 min)", capture))
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
