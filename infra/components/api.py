"""The REST API in front of the API function (``apiType=rest``, the default): binary media, CORS,
throttling, usage plan, optional API key, WAF; POST /feedback authenticated with IAM.

POST /feedback is a privileged write (``feedbackAuth=iam``, the default): API Gateway lets through
only a request signed (SigV4) by an IAM principal allowed ``execute-api:Invoke`` on that route,
and hands the function who it is (``requestContext``). IAM because it is the one mechanism both
API types share (HTTP APIs have no API keys or usage plans), reviewers are IAM principals a team
already manages, there is no shared secret to distribute or rotate, and an API key identifies a
client for throttling, it does not authenticate one. ``reviewer_access`` makes the grant one
attachment: a managed policy allowing exactly that route (outputs ``FeedbackInvokeArn`` and
``FeedbackReviewerPolicyArn``). Every other route stays public, as designed.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from handler.contract import BINARY_MEDIA_TYPES, PUBLIC_ROUTES, ROUTES
from infra.components.common import access_log_format, api_gateway_metric, log_group
from infra.settings import Settings

FEEDBACK = ("POST", "/feedback")
# The body POST /feedback takes (handler: 400 for a bad label or id, 404 for an unknown capture);
# API Gateway refuses anything else before the function runs.
FEEDBACK_SCHEMA = apigw.JsonSchema(
    schema=apigw.JsonSchemaVersion.DRAFT4,
    title="Feedback",
    type=apigw.JsonSchemaType.OBJECT,
    required=["prediction_id", "label"],
    properties={
        "prediction_id": apigw.JsonSchema(type=apigw.JsonSchemaType.STRING, min_length=1, max_length=1024),
        "label": apigw.JsonSchema(type=apigw.JsonSchemaType.STRING, min_length=1, max_length=256),
    },
)


def reviewer_access(scope: Construct, invoke_arn: str) -> iam.ManagedPolicy:
    """A managed policy allowing ``execute-api:Invoke`` on POST /feedback only (``invoke_arn``):
    attach it to the reviewers' role or group. Its ARN and the route's are stack outputs."""
    policy = iam.ManagedPolicy(
        scope,
        "FeedbackReviewers",
        description="POST /feedback of the image recognition API: send corrections (signed requests)",
        statements=[iam.PolicyStatement(actions=["execute-api:Invoke"], resources=[invoke_arn])],
    )
    outputs = (
        ("FeedbackInvokeArn", invoke_arn, "POST /feedback: grant execute-api:Invoke on this ARN"),
        ("FeedbackReviewerPolicyArn", policy.managed_policy_arn, "attach to the reviewers' role"),
    )
    for name, value, description in outputs:
        CfnOutput(scope, name, value=value, description=description).override_logical_id(name)
    return policy


def limited_routes(settings: Settings) -> dict[tuple[str, str], tuple[int, int]]:
    """Routes with their own, lower (rate, burst) limit than the stage's, among those served."""
    limits = {
        # Each upload form lets an anonymous client store up to MAX_UPLOAD_BYTES.
        ("POST", "/uploads"): (settings.uploads_throttle_rate_limit, settings.uploads_throttle_burst_limit),
        # Each feedback stores a small object; nobody needs to send many.
        FEEDBACK: (settings.feedback_throttle_rate_limit, settings.feedback_throttle_burst_limit),
    }
    return {route: limit for route, limit in limits.items() if route in ROUTES}


# API Gateway's own refusals (throttling, missing key, validation, too large) in the handler's shape.
ERROR_TEMPLATE = '{"error": $context.error.messageString, "code": "$context.error.responseType"}'


def content_length_at_least(threshold: int) -> str:
    """A regex matching decimal Content-Length values >= ``threshold`` (one digit then zeros)."""
    digits = str(threshold)
    first, zeros = digits[0], len(digits) - 1
    return f"^([{first}-9][0-9]{{{zeros}}}|[1-9][0-9]{{{zeros + 1},}})$"


def visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    """A WAF rule's (or the ACL's) CloudWatch metric and sampled requests, under ``name``."""
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
    )


def waf_rules(settings: Settings) -> list[wafv2.CfnWebACL.RuleProperty]:
    """Block a client over ``wafRateLimitPer5min``, and any body of ``wafMaxContentLength`` or more
    (by its Content-Length header: WAF inspects only the first kilobytes of a body)."""
    block = wafv2.CfnWebACL.RuleActionProperty(block={})
    return [
        wafv2.CfnWebACL.RuleProperty(
            name="RateLimitPerIp",
            priority=0,
            action=block,
            visibility_config=visibility("RateLimitPerIp"),
            statement=wafv2.CfnWebACL.StatementProperty(
                rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                    limit=settings.waf_rate_limit_per_5min, aggregate_key_type="IP"
                )
            ),
        ),
        wafv2.CfnWebACL.RuleProperty(
            name="MaxContentLength",
            priority=1,
            action=block,
            visibility_config=visibility("MaxContentLength"),
            statement=wafv2.CfnWebACL.StatementProperty(
                regex_match_statement=wafv2.CfnWebACL.RegexMatchStatementProperty(
                    regex_string=content_length_at_least(settings.waf_max_content_length),
                    field_to_match=wafv2.CfnWebACL.FieldToMatchProperty(
                        single_header={"Name": "content-length"}
                    ),
                    text_transformations=[
                        wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="NONE")
                    ],
                )
            ),
        ),
    ]


class RestFrontDoor(Construct):
    """The REST API and its stage: routes to the API function, limits, the usage plan, and WAF."""

    def __init__(
        self, scope: Construct, construct_id: str, *, settings: Settings, function: lambda_.IFunction
    ) -> None:
        super().__init__(scope, construct_id)
        self.stage_name = settings.stage_name
        self.rest_api = self._rest_api(settings)
        self._json_refusals(settings.origins[0])
        self.methods = self._routes(settings, apigw.LambdaIntegration(function))
        if settings.feedback_auth == "iam":
            method, path = FEEDBACK
            reviewer_access(self, self.rest_api.arn_for_execute_api(method, path, settings.stage_name))
        self._usage_plan(settings)
        if settings.enable_waf:
            self._web_acl(settings)

    def _rest_api(self, settings: Settings) -> apigw.RestApi:
        """The API and its stage: binary photos, CORS, the stage's and the routes' own throttling,
        tracing and access logs (never bodies: they are photos)."""
        access_logs = log_group(self, "AccessLogs", settings.log_retention_days)
        return apigw.RestApi(
            self,
            "RestApi",
            description="MobileNetV2 image recognition",
            binary_media_types=list(BINARY_MEDIA_TYPES),
            cloud_watch_role=True,
            endpoint_types=[apigw.EndpointType.REGIONAL],
            default_cors_preflight_options=apigw.CorsOptions(
                allow_origins=settings.origins,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["Content-Type", "X-Api-Key"],
            ),
            deploy_options=apigw.StageOptions(
                stage_name=settings.stage_name,
                throttling_rate_limit=settings.throttle_rate_limit,
                throttling_burst_limit=settings.throttle_burst_limit,
                method_options={
                    f"{path}/{method}": apigw.MethodDeploymentOptions(
                        throttling_rate_limit=rate, throttling_burst_limit=burst
                    )
                    for (method, path), (rate, burst) in limited_routes(settings).items()
                },
                tracing_enabled=True,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # bodies are photos: never log them
                metrics_enabled=True,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=access_log_format(),
            ),
        )

    def _json_refusals(self, origin: str) -> None:
        """API Gateway's own 4xx and 5xx answered in the handler's JSON shape, readable by the page."""
        for response_type in (apigw.ResponseType.DEFAULT_4_XX, apigw.ResponseType.DEFAULT_5_XX):
            self.rest_api.add_gateway_response(
                f"Json{response_type.response_type}",
                type=response_type,
                templates={"application/json": ERROR_TEMPLATE},
                response_headers={"Access-Control-Allow-Origin": f"'{origin}'"},
            )

    def _routes(
        self, settings: Settings, integration: apigw.LambdaIntegration
    ) -> dict[tuple[str, str], apigw.Method]:
        """Every route of the contract, to the one function; bodies checked before it runs."""
        validator = self.rest_api.add_request_validator(
            # Parameters: a Content-Type header is required. Body: validated only where a model is
            # declared (POST /feedback's; none for images), which is what cdk-nag's APIG2 asks for.
            "Validate",
            validate_request_parameters=True,
            validate_request_body=True,
        )
        return {
            (method, path): self._route(method, path, settings, integration, validator)
            for method, path in ROUTES
        }

    def _route(
        self,
        method: str,
        path: str,
        settings: Settings,
        integration: apigw.LambdaIntegration,
        validator: apigw.RequestValidator,
    ) -> apigw.Method:
        """One route: who may call it (key, IAM) and what its request must carry."""
        resource = self.rest_api.root
        for part in filter(None, path.split("/")):
            resource = resource.get_resource(part) or resource.add_resource(part)
        needs_body = (method, path) in (("POST", "/predict"), FEEDBACK)
        # POST /feedback's JSON body is checked against its model before the function runs.
        models = {"application/json": self._feedback_model()} if (method, path) == FEEDBACK else None
        feedback_iam = settings.feedback_auth == "iam"
        return resource.add_method(
            method,
            integration,
            # The demo page and the OpenAPI document are public even when predictions need a key.
            api_key_required=settings.api_key_required and (method, path) not in PUBLIC_ROUTES,
            # A correction is a reviewer's signed request (feedbackAuth=iam); the rest is public.
            authorization_type=(
                apigw.AuthorizationType.IAM if feedback_iam and (method, path) == FEEDBACK else None
            ),
            request_validator=validator if needs_body else None,
            request_parameters={"method.request.header.Content-Type": True} if needs_body else None,
            request_models=models,
        )

    def _usage_plan(self, settings: Settings) -> None:
        """The stage's limits and daily quota as a plan, so API keys (apiKeyRequired) have one."""
        plan = self.rest_api.add_usage_plan(
            "UsagePlan",
            description="Default plan for image recognition clients",
            throttle=apigw.ThrottleSettings(
                rate_limit=settings.throttle_rate_limit, burst_limit=settings.throttle_burst_limit
            ),
            quota=apigw.QuotaSettings(limit=settings.usage_plan_quota_per_day, period=apigw.Period.DAY),
        )
        plan.add_api_stage(stage=self.rest_api.deployment_stage)
        if settings.api_key_required:
            plan.add_api_key(self.rest_api.add_api_key("ApiKey", description="Default client key"))

    def _feedback_model(self) -> apigw.Model:
        return self.rest_api.add_model(
            "FeedbackModel", content_type="application/json", model_name="Feedback", schema=FEEDBACK_SCHEMA
        )

    @property
    def url(self) -> str:
        return self.rest_api.url

    def metric(self, kind: str, statistic: str, period: Duration) -> cw.Metric:
        """``count``, ``4xx``, ``5xx`` or ``latency`` of this stage, as API Gateway publishes them."""
        names = {"count": "Count", "4xx": "4XXError", "5xx": "5XXError", "latency": "Latency"}
        dimensions = {"ApiName": self.rest_api.rest_api_name, "Stage": self.stage_name}
        return api_gateway_metric(names[kind], dimensions, statistic, period)

    def _web_acl(self, settings: Settings) -> None:
        """WAF on the stage: a flooding client or an oversized body is refused before the function runs."""
        acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=visibility("ImageRecognitionApi"),
            rules=waf_rules(settings),
        )
        wafv2.CfnWebACLAssociation(
            self,
            "WebAclAssociation",
            resource_arn=self.rest_api.deployment_stage.stage_arn,
            web_acl_arn=acl.attr_arn,
        )
