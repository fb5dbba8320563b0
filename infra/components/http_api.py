"""The HTTP API in front of the API function (``apiType=http``): payload format 2.0, which the
handler speaks; the same routes, CORS, stage and per-route throttling, JSON access logs.

What it gives up against the REST API: usage plans and API keys, AWS WAF on the API, request
validation, and API Gateway's own JSON error bodies (its 4xx/5xx are plain ``{"message"}``).
What it gains: about a third of the price per request and lower added latency. POST /feedback has
the same IAM authorization as on the REST API (``api.reviewer_access``; ``feedbackAuth``).
"""

from __future__ import annotations

import jsii
from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from handler.contract import ROUTES
from infra.components.api import FEEDBACK, limited_routes, reviewer_access
from infra.components.common import access_log_format, api_gateway_metric, log_group
from infra.settings import Settings

DEFAULT_STAGE = "$default"  # no stage in the path: the function sees the routes as they are


@jsii.implements(apigwv2.IAccessLogSettings)
class AccessLogs:
    """Where and how the stage writes its access log (the interface has no CDK class)."""

    def __init__(self, destination: apigwv2.IAccessLogDestination, log_format: apigw.AccessLogFormat) -> None:
        self._destination = destination
        self._format = log_format

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return self._format


class HttpFrontDoor(Construct):
    """The HTTP API (``apiType=http``): cheaper, no WAF or API keys; the same routes and limits."""

    def __init__(
        self, scope: Construct, construct_id: str, *, settings: Settings, function: lambda_.IFunction
    ) -> None:
        super().__init__(scope, construct_id)
        self.http_api = apigwv2.HttpApi(
            self,
            "HttpApi",
            description="MobileNetV2 image recognition (HTTP API)",
            create_default_stage=False,
            cors_preflight=apigwv2.CorsPreflightOptions(
                allow_origins=settings.origins,
                allow_methods=[apigwv2.CorsHttpMethod.GET, apigwv2.CorsHttpMethod.POST],
                allow_headers=["Content-Type"],
                max_age=Duration.hours(1),
            ),
        )
        self.routes = self._routes(settings, function)
        if settings.feedback_auth == "iam":
            method, path = FEEDBACK
            reviewer_access(self, self.http_api.arn_for_execute_api(method, path, DEFAULT_STAGE))
        self.stage = self._stage(settings)

    def _routes(
        self, settings: Settings, function: lambda_.IFunction
    ) -> dict[tuple[str, str], apigwv2.HttpRoute]:
        """Every route of the contract, to the one function; POST /feedback signed if ``feedbackAuth=iam``."""
        integration = integrations.HttpLambdaIntegration(
            "Function", function, payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0
        )
        routes: dict[tuple[str, str], apigwv2.HttpRoute] = {}
        feedback_iam = settings.feedback_auth == "iam"
        for method, path in ROUTES:
            # A correction is a reviewer's signed request (feedbackAuth=iam); the rest is public.
            iam_only = feedback_iam and (method, path) == FEEDBACK
            (routes[(method, path)],) = self.http_api.add_routes(
                path=path,
                methods=[apigwv2.HttpMethod(method)],
                integration=integration,
                authorizer=authorizers.HttpIamAuthorizer() if iam_only else None,
            )
        return routes

    def _stage(self, settings: Settings) -> apigwv2.HttpStage:
        """The default stage: the stage's throttling and the routes' own lower limits, access logs."""
        access_logs = log_group(self, "AccessLogs", settings.log_retention_days)
        stage = apigwv2.HttpStage(
            self,
            "Stage",
            http_api=self.http_api,
            stage_name=DEFAULT_STAGE,
            auto_deploy=True,
            detailed_metrics_enabled=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=settings.throttle_rate_limit, burst_limit=settings.throttle_burst_limit
            ),
            access_log_settings=AccessLogs(apigwv2.LogGroupLogDestination(access_logs), access_log_format()),
        )
        # Routes with a lower limit of their own (uploads, feedback: api.limited_routes).
        stage.node.default_child.route_settings = {
            f"{method} {path}": {"ThrottlingRateLimit": rate, "ThrottlingBurstLimit": burst}
            for (method, path), (rate, burst) in limited_routes(settings).items()
        }
        return stage

    @property
    def url(self) -> str:
        return self.stage.url

    def metric(self, kind: str, statistic: str, period: Duration) -> cw.Metric:
        """``count``, ``4xx``, ``5xx`` or ``latency`` of the default stage."""
        names = {"count": "Count", "4xx": "4xx", "5xx": "5xx", "latency": "Latency"}
        dimensions = {"ApiId": self.http_api.api_id, "Stage": DEFAULT_STAGE}
        return api_gateway_metric(names[kind], dimensions, statistic, period)
