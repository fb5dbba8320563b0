"""Small helpers shared by the constructs."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_logs as logs
from constructs import Construct

R = logs.RetentionDays
# The periods CloudWatch Logs accepts, in days.
RETENTION_PERIODS = {
    1: R.ONE_DAY, 3: R.THREE_DAYS, 5: R.FIVE_DAYS, 7: R.ONE_WEEK, 14: R.TWO_WEEKS, 30: R.ONE_MONTH,
    60: R.TWO_MONTHS, 90: R.THREE_MONTHS, 120: R.FOUR_MONTHS, 150: R.FIVE_MONTHS, 180: R.SIX_MONTHS,
    365: R.ONE_YEAR, 400: R.THIRTEEN_MONTHS, 545: R.EIGHTEEN_MONTHS, 731: R.TWO_YEARS,
    1096: R.THREE_YEARS, 1827: R.FIVE_YEARS, 2192: R.SIX_YEARS, 2557: R.SEVEN_YEARS,
    2922: R.EIGHT_YEARS, 3288: R.NINE_YEARS, 3653: R.TEN_YEARS,
}  # fmt: skip


def log_retention(days: int) -> logs.RetentionDays:
    """The shortest allowed retention that keeps logs at least ``days`` days."""
    return next((RETENTION_PERIODS[d] for d in sorted(RETENTION_PERIODS) if d >= days), R.TEN_YEARS)


def log_group(scope: Construct, construct_id: str, days: int) -> logs.LogGroup:
    """A log group kept at least ``days`` days, deleted with the stack (logs are not data)."""
    return logs.LogGroup(
        scope, construct_id, retention=log_retention(days), removal_policy=RemovalPolicy.DESTROY
    )


def access_log_format() -> apigw.AccessLogFormat:
    """The JSON access log of either API type: who asked what and how it went, never the body."""
    return apigw.AccessLogFormat.json_with_standard_fields(
        caller=False,
        http_method=True,
        ip=True,
        protocol=True,
        request_time=True,
        resource_path=True,
        response_length=True,
        status=True,
        user=False,
    )


def api_gateway_metric(name: str, dimensions: dict[str, str], statistic: str, period: Duration) -> cw.Metric:
    """One of API Gateway's own metrics for a stage (either API type: the dimensions differ)."""
    return cw.Metric(
        namespace="AWS/ApiGateway",
        metric_name=name,
        dimensions_map=dimensions,
        statistic=statistic,
        period=period,
    )
