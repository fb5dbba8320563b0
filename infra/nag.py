"""cdk-nag AwsSolutions checks, and every finding we accept, each with its reason, in one place.

cdk-nag 3 is a CDK validation plugin: a finding that is not acknowledged fails ``cdk synth``
(``ValidationFailed``) and is written to ``cdk.out/validation-report.json``. Acknowledgments are
scoped to the constructs they concern, so the same finding elsewhere still fails the build.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Acknowledgment, App, Stack, Validations
from cdk_nag import AwsSolutionsChecks

PLUGIN = "AwsSolutions"
LAMBDA_BASIC = "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
APIGW_LOGS = "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"


@dataclass(frozen=True)
class Accepted:
    rule: str  # the rule name as the report prints it, e.g. "AwsSolutions-IAM4[Policy::...]"
    reason: str
    scopes: tuple[str, ...]  # construct paths under the stack (prefixes)


ACCEPTED = (
    Accepted(
        f"AwsSolutions-IAM4[{LAMBDA_BASIC}]",
        "AWSLambdaBasicExecutionRole only allows writing the function's own CloudWatch logs; "
        "it is the AWS-maintained least-privilege policy for that.",
        ("Functions/Api", "Functions/Worker", "BucketNotificationsHandler"),
    ),
    Accepted(
        "AwsSolutions-IAM5[Resource::*]",
        "X-Ray's PutTraceSegments and PutTelemetryRecords do not support resource-level permissions.",
        ("Functions/Api", "Functions/Worker"),
    ),
    Accepted(
        "AwsSolutions-IAM5[Resource::<UploadsBucketC4B27CC7.Arn>/uploads/*]",
        "The worker reads any object under the uploads prefix (only): keys are random ids. The API "
        "presigns POST forms for new keys there and checks that an upload arrived.",
        ("Functions/Worker", "Functions/Api"),
    ),
    Accepted(
        "AwsSolutions-IAM5[Resource::<UploadsBucketC4B27CC7.Arn>/results/*]",
        "The worker writes (and reads back, for idempotency) one record per upload under results/ "
        "only; the API reads them for GET /results/{id}.",
        ("Functions/Worker", "Functions/Api"),
    ),
    Accepted(
        f"AwsSolutions-IAM4[{APIGW_LOGS}]",
        "The account-level role API Gateway needs to write execution logs; AWS-managed and scoped to logs.",
        ("Api/RestApi/CloudWatchRole",),
    ),
    Accepted(
        "AwsSolutions-APIG4",
        "A public inference API by design (like the AWS samples it replaces): protected by stage "
        "throttling, a usage plan with quota, an optional API key (context apiKeyRequired) and an "
        "optional WAF (context enableWaf).",
        ("Api/RestApi/Default",),
    ),
    Accepted(
        "AwsSolutions-COG4",
        "No end-user identity to authenticate: see APIG4. Teams needing it add an authorizer.",
        ("Api/RestApi/Default",),
    ),
)


# Only when the operator turns the default WAF off (-c enableWaf=false).
WAF_OFF = Accepted(
    "AwsSolutions-APIG3",
    "The WAF web ACL is on by default; this deployment turned it off explicitly (enableWaf=false), "
    "accepting the stage throttle and usage plan as its only abuse limits.",
    ("Api/RestApi/DeploymentStage",),
)


def accepted_for(waf_enabled: bool) -> tuple[Accepted, ...]:
    """The findings this deployment accepts: the fixed ones, plus APIG3 when WAF is off."""
    return ACCEPTED if waf_enabled else (*ACCEPTED, WAF_OFF)


def add_checks(app: App) -> None:
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def acknowledge(stack: Stack, waf_enabled: bool) -> None:
    """Acknowledge each accepted finding on the constructs it was accepted for."""
    root = stack.node.path
    for accepted in accepted_for(waf_enabled):
        prefixes = tuple(f"{root}/{scope}" for scope in accepted.scopes)
        targets = [c for c in stack.node.find_all() if c.node.path.startswith(prefixes)]
        if not targets:
            raise ValueError(f"{accepted.rule}: no construct under {accepted.scopes}; remove or fix it")
        for target in targets:
            Validations.of(target).acknowledge(
                Acknowledgment(id=f"{PLUGIN}::{accepted.rule}", reason=accepted.reason)
            )
