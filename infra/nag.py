"""cdk-nag AwsSolutions checks, and every finding we accept, each with its reason, in one place.

cdk-nag 3 is a CDK validation plugin: a finding that is not acknowledged fails ``cdk synth``
(``ValidationFailed``) and is written to ``cdk.out/validation-report.json``. Acknowledgments are
scoped to the constructs they concern, so the same finding elsewhere still fails the build.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Acknowledgment, App, Stack, Validations
from cdk_nag import AwsSolutionsChecks

from infra.settings import Settings

PLUGIN = "AwsSolutions"
LAMBDA_BASIC = "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
BUCKET = "<UploadsBucketC4B27CC7.Arn>"
BULK_WORKER = "<FunctionsBulkWorker44DFE178.Arn>"
CHILD_EXECUTIONS = (
    "arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:"
    '{"Fn::Select":[6,{"Fn::Split":[":",{"Ref":"BackfillStateMachine395F6B27"}]}]}'
)
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
        (
            "Functions/Api",
            "Functions/Worker",
            "Functions/BulkWorker",
            "Delivery/PreTrafficHook",
            "BucketNotificationsHandler",
        ),
    ),
    Accepted(
        "AwsSolutions-IAM5[Resource::*]",
        "X-Ray's PutTraceSegments and PutTelemetryRecords, and the CloudWatch Logs log-delivery "
        "actions Step Functions logging needs, do not support resource-level permissions.",
        (
            "Functions/Api",
            "Functions/Worker",
            "Functions/BulkWorker",
            "Delivery/PreTrafficHook",
            "Backfill/StateMachine",
        ),
    ),
    Accepted(
        f"AwsSolutions-IAM5[Resource::{BUCKET}/uploads/*]",
        "The worker reads any object under the uploads prefix (only): keys are random ids. The API "
        "presigns POST forms for new keys there and checks that an upload arrived.",
        ("Functions/Worker", "Functions/Api"),
    ),
    Accepted(
        f"AwsSolutions-IAM5[Resource::{BUCKET}/results/*]",
        "The workers write (and read back, for idempotency) one record per object under results/ "
        "only; the API reads them for GET /results/{id}.",
        ("Functions/Worker", "Functions/Api", "Functions/BulkWorker"),
    ),
)


# The REST API (apiType=rest, the default).
REST_API = (
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

# The HTTP API (apiType=http).
HTTP_API = (
    Accepted(
        "AwsSolutions-APIG4",
        "A public inference API by design (like the AWS samples it replaces): protected by stage and "
        "per-route throttling; HTTP APIs have no usage plans or WAF (README: what apiType=http gives up).",
        ("Api/HttpApi",),
    ),
)


DELIVERY = (
    Accepted(
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSCodeDeployRoleForLambdaLimited]",
        "AWS's own limited policy for CodeDeploy to shift a Lambda alias and invoke the deployment's hooks.",
        ("Delivery/Api", "Delivery/Worker"),
    ),
    Accepted(
        "AwsSolutions-IAM5[Resource::<DeliveryPreTrafficHook9FE133EC.Arn>:*]",
        "CodeDeploy invokes the pre-traffic hook (any of its versions, CDK's grant); no other function.",
        ("Delivery/Api",),
    ),
)

# Only when the operator turns the default WAF off (-c enableWaf=false).
WAF_OFF = Accepted(
    "AwsSolutions-APIG3",
    "The WAF web ACL is on by default; this deployment turned it off explicitly (enableWaf=false), "
    "accepting the stage throttle and usage plan as its only abuse limits.",
    ("Api/RestApi/DeploymentStage",),
)


def backfill_accepted(settings: Settings) -> tuple[Accepted, ...]:
    """What the Backfill construct (``enableBackfill``) needs; its read scope is ``backfillPrefix``."""
    state_machine, batch_operations = "Backfill/StateMachine", "Backfill/BatchOperationsRole"
    return (
        Accepted(
            f"AwsSolutions-IAM5[Resource::{BUCKET}/{settings.backfill_prefix}*]",
            "The bulk worker reads the objects under backfillPrefix, the prefix the operator allowed "
            "backfills to classify (an archive of existing keys, unknown in advance).",
            ("Functions/BulkWorker",),
        ),
        Accepted(
            f"AwsSolutions-IAM5[Resource::{BULK_WORKER}:*]",
            "Invoke the bulk worker and its versions (CDK's grant for a function); no other function.",
            (state_machine, batch_operations),
        ),
        Accepted(
            f"AwsSolutions-IAM5[Resource::{BUCKET}/results/backfill-runs/*]",
            "The Distributed Map writes its run manifest (one per execution, named by AWS) there only.",
            (state_machine,),
        ),
        Accepted(
            f"AwsSolutions-IAM5[Resource::{CHILD_EXECUTIONS}:*]",
            "A Distributed Map describes and stops its own child executions (AWS's documented policy), "
            "scoped to this state machine.",
            (state_machine,),
        ),
        Accepted(
            f"AwsSolutions-IAM5[Resource::{CHILD_EXECUTIONS}/*:*]",
            "A Distributed Map run can be redriven (its failed batches only): scoped to this state machine.",
            (state_machine,),
        ),
        Accepted(
            f"AwsSolutions-IAM5[Resource::{BUCKET}/results/batch-operations/*]",
            "S3 Batch Operations jobs read their manifest and write their completion report there only.",
            (batch_operations,),
        ),
    )


def accepted_for(settings: Settings) -> tuple[Accepted, ...]:
    """The findings this deployment accepts: the fixed ones, APIG3 when WAF is off, and the
    Backfill's when it is on."""
    api = REST_API if settings.api_type == "rest" else HTTP_API
    accepted = (*ACCEPTED, *api, *DELIVERY)
    accepted = (*accepted, WAF_OFF) if settings.api_type == "rest" and not settings.enable_waf else accepted
    return (*accepted, *backfill_accepted(settings)) if settings.enable_backfill else accepted


def add_checks(app: App) -> None:
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))


# The GitHub OIDC deploy stack (-c githubRepo=owner/name).
GITHUB_DEPLOY = (
    Accepted(
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iam::<AWS::AccountId>:role/cdk-hnb659fds-*]",
        "The deploy role may only assume CDK's bootstrap roles (deploy, file and image publishing, "
        "lookup), whose names CDK derives from the account, the Region and the qualifier.",
        ("DeployRole",),
    ),
    Accepted(
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:cloudformation:<AWS::Region>:<AWS::AccountId>:"
        "stack/ImageRecognition*/*]",
        "Read the outputs (ApiUrl) of this app's stacks, every stage; stack ids end in a generated uuid.",
        ("DeployRole",),
    ),
)


def acknowledge(stack: Stack, settings: Settings) -> None:
    """Acknowledge each accepted finding of the app's stack on the constructs it was accepted for."""
    acknowledge_findings(stack, accepted_for(settings))


def acknowledge_findings(stack: Stack, findings: tuple[Accepted, ...]) -> None:
    root = stack.node.path
    for accepted in findings:
        prefixes = tuple(f"{root}/{scope}" for scope in accepted.scopes)
        targets = [c for c in stack.node.find_all() if c.node.path.startswith(prefixes)]
        if not targets:
            raise ValueError(f"{accepted.rule}: no construct under {accepted.scopes}; remove or fix it")
        for target in targets:
            Validations.of(target).acknowledge(
                Acknowledgment(id=f"{PLUGIN}::{accepted.rule}", reason=accepted.reason)
            )
