"""cdk-nag AwsSolutions checks, and every finding we accept, each with its reason, in one place.

cdk-nag 3 is a CDK validation plugin: a finding that is not acknowledged fails ``cdk synth``
(``ValidationFailed``) and is written to ``cdk.out/validation-report.json``. Acknowledgments are
scoped to the constructs they concern, so the same finding elsewhere still fails the build.

A finding names what it is about the way cdk-nag prints it (``<{logical id}.Arn>/{prefix}*``):
the acknowledgments of resources are built after the stack, from the very tokens its constructs
granted (the bucket's ARN for objects under the configured prefix, the function's ARN, the state
machine's executions), never from a hashed logical ID or a prefix written here. ``unused`` finds an
acknowledgment that no longer suppresses anything (stale: remove it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aws_cdk import Acknowledgment, App, Arn, ArnFormat, Stack, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from infra.components.api import FEEDBACK, RestFrontDoor
from infra.components.backfill import Backfill
from infra.components.http_api import HttpFrontDoor
from infra.github_deploy import GithubDeployStack
from infra.stack import ImageRecognitionStack

PLUGIN = "AwsSolutions"
LAMBDA_BASIC = "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
CODEDEPLOY_LIMITED = (
    "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSCodeDeployRoleForLambdaLimited"
)
APIGW_LOGS = "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"


@dataclass(frozen=True)
class Accepted:
    rule: str  # the rule name as the report prints it, e.g. "AwsSolutions-IAM4[Policy::...]"
    reason: str
    scopes: tuple[str, ...]  # construct paths under the stack (the construct and its children)


def flatten(reference: Any) -> str:
    """A resolved CloudFormation value as cdk-nag writes it into a finding (its
    ``flattenCfnReference``): ``{"Fn::GetAtt": [id, "Arn"]}`` is ``<id.Arn>``, ``{"Ref": id}`` is
    ``<id>``, ``Fn::Join`` joins, ``${...}`` becomes ``<...>``, anything else is its compact JSON."""
    if reference is None:
        return ""
    if isinstance(reference, str):
        return reference.replace("${", "<").replace("}", ">")
    if isinstance(reference, dict):
        if reference.get("Fn::Join"):
            delimiter, items = reference["Fn::Join"]
            return delimiter.join(flatten(item) for item in items)
        if reference.get("Fn::Sub"):
            return flatten(reference["Fn::Sub"])
        if reference.get("Fn::GetAtt"):
            resource, attribute = reference["Fn::GetAtt"]
            return f"<{flatten(resource)}.{flatten(attribute)}>"
        if reference.get("Fn::ImportValue"):
            return flatten(reference["Fn::ImportValue"])
        if reference.get("Ref"):
            return f"<{flatten(reference['Ref'])}>"
    return json.dumps(reference, separators=(",", ":"), ensure_ascii=False)


def wildcard(stack: Stack, resource: str) -> str:
    """The IAM5 rule cdk-nag reports for ``resource`` (an ARN, tokens and all) in a policy of ``stack``."""
    return f"AwsSolutions-IAM5[Resource::{flatten(stack.resolve(resource))}]"


# The app's stack, whatever its settings (the bulk worker's and the state machine's scopes are added
# when the Backfill is on: see ``fixed_accepted``).
LAMBDA_BASIC_REASON = (
    "AWSLambdaBasicExecutionRole only allows writing the function's own CloudWatch logs; "
    "it is the AWS-maintained least-privilege policy for that."
)
NO_RESOURCE_LEVEL_REASON = (
    "X-Ray's PutTraceSegments and PutTelemetryRecords, and the CloudWatch Logs log-delivery "
    "actions Step Functions logging needs, do not support resource-level permissions."
)


def fixed_accepted(stack: ImageRecognitionStack) -> tuple[Accepted, ...]:
    """Managed logging policies and X-Ray/log-delivery actions on every function (and the state
    machine), and the two prefixes of the uploads bucket the functions work in."""
    settings, bucket = stack.settings, stack.uploads.bucket
    functions = ("Functions/Api", "Functions/Worker")
    functions += ("Functions/BulkWorker",) if stack.functions.bulk_worker is not None else ()
    state_machine = ("Backfill/StateMachine",) if stack.backfill is not None else ()
    return (
        Accepted(
            f"AwsSolutions-IAM4[{LAMBDA_BASIC}]",
            LAMBDA_BASIC_REASON,
            (*functions, "Delivery/PreTrafficHook", "BucketNotificationsHandler"),
        ),
        Accepted(
            "AwsSolutions-IAM5[Resource::*]",
            NO_RESOURCE_LEVEL_REASON,
            (*functions, "Delivery/PreTrafficHook", *state_machine),
        ),
        Accepted(
            wildcard(stack, bucket.arn_for_objects(f"{settings.uploads_prefix}*")),
            "The worker reads any object under the uploads prefix (only): keys are random ids. The API "
            "presigns POST forms for new keys there and checks that an upload arrived.",
            ("Functions/Worker", "Functions/Api"),
        ),
        Accepted(
            wildcard(stack, bucket.arn_for_objects(f"{settings.results_prefix}*")),
            "The workers write (and read back, for idempotency) one record per object under "
            f"{settings.results_prefix} only; the API reads them for GET /results/{{id}}.",
            ("Functions/Worker", "Functions/Api", *functions[2:]),
        ),
        Accepted(
            wildcard(stack, stack.capture.objects),
            "Sampled predictions are stored (and the API stores and reads their feedback) under the "
            "capture prefix only, in keys named by the prediction id: unknown in advance.",
            ("Functions/Api", *(functions[1:] if settings.capture_on else ())),
        ),
    )


def front_door(stack: ImageRecognitionStack) -> RestFrontDoor | HttpFrontDoor:
    """The stack's API (REST or HTTP), whose routes the API findings are scoped to."""
    (door,) = [c for c in stack.node.find_all() if isinstance(c, RestFrontDoor | HttpFrontDoor)]
    return door


def scope_of(stack: Stack, construct: Construct) -> str:
    """A construct's path under the stack, as ``Accepted.scopes`` names it."""
    return construct.node.path.removeprefix(f"{stack.node.path}/")


PUBLIC_BY_DESIGN = (
    "A public inference API by design (like the AWS samples it replaces): the routes other than "
    "POST /feedback have no end-user identity to authenticate. "
)
ANONYMOUS_FEEDBACK = (
    "This deployment allows anonymous corrections (feedbackAuth=none): POST /feedback has no "
    "authorizer; its corrections are stored apart (.anonymous-feedback.json), without a caller, and "
    "exports and comparisons leave them out unless asked (--include-anonymous)."
)


def feedback_split(stack: ImageRecognitionStack, routes: dict) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the public routes' scopes, POST /feedback's): the public ones are unauthenticated by design;
    POST /feedback is authenticated with IAM unless feedbackAuth=none."""
    public = tuple(scope_of(stack, construct) for route, construct in routes.items() if route != FEEDBACK)
    return public, (scope_of(stack, routes[FEEDBACK]),)


def rest_api_accepted(stack: ImageRecognitionStack) -> tuple[Accepted, ...]:
    """The REST API (apiType=rest, the default): its logging role; APIG4 (no authorization) on the
    public methods only, POST /feedback being IAM-authenticated; COG4 (no Cognito user pool) on
    every method: the public ones have no end user, the feedback one's callers are IAM principals."""
    public, feedback = feedback_split(stack, front_door(stack).methods)
    iam = stack.settings.feedback_auth == "iam"
    accepted = (
        Accepted(
            f"AwsSolutions-IAM4[{APIGW_LOGS}]",
            "The account-level role API Gateway needs to write execution logs; AWS-managed and scoped to "
            "logs.",
            ("Api/RestApi/CloudWatchRole",),
        ),
        Accepted(
            "AwsSolutions-APIG4",
            PUBLIC_BY_DESIGN + "Protected by stage throttling, a usage plan with quota, an optional API "
            "key (context apiKeyRequired) and an optional WAF (context enableWaf).",
            public,
        ),
        Accepted(
            "AwsSolutions-COG4",
            "No end-user identity to authenticate on these public routes: see APIG4.",
            public,
        ),
    )
    if not iam:
        return (
            *accepted,
            Accepted("AwsSolutions-APIG4", ANONYMOUS_FEEDBACK, feedback),
            Accepted("AwsSolutions-COG4", ANONYMOUS_FEEDBACK, feedback),
        )
    return (
        *accepted,
        Accepted(
            "AwsSolutions-COG4",
            "POST /feedback is authenticated with IAM (SigV4): its callers are reviewers, IAM principals "
            "granted execute-api:Invoke on this route (output FeedbackReviewerPolicyArn), not end users "
            "of a Cognito user pool.",
            feedback,
        ),
    )


def http_api_accepted(stack: ImageRecognitionStack) -> tuple[Accepted, ...]:
    """The HTTP API (apiType=http): APIG4 on the public routes only (POST /feedback has an IAM
    authorizer, unless feedbackAuth=none)."""
    public, feedback = feedback_split(stack, front_door(stack).routes)
    accepted = (
        Accepted(
            "AwsSolutions-APIG4",
            PUBLIC_BY_DESIGN + "Protected by stage and per-route throttling; HTTP APIs have no usage "
            "plans or WAF (docs/deploy.md: the REST and HTTP API table).",
            public,
        ),
    )
    if stack.settings.feedback_auth == "iam":
        return accepted
    return (*accepted, Accepted("AwsSolutions-APIG4", ANONYMOUS_FEEDBACK, feedback))


def delivery_accepted(stack: ImageRecognitionStack) -> tuple[Accepted, ...]:
    """CodeDeploy's role for the two deployment groups, and its grant to invoke the pre-traffic hook."""
    return (
        Accepted(
            f"AwsSolutions-IAM4[{CODEDEPLOY_LIMITED}]",
            "AWS's own limited policy for CodeDeploy to shift a Lambda alias and invoke the deployment's "
            "hooks.",
            ("Delivery/Api", "Delivery/Worker"),
        ),
        Accepted(
            wildcard(stack, f"{stack.delivery.hook.function_arn}:*"),
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


def child_executions(backfill: Backfill) -> str:
    """The ARN of the state machine's executions, built as CDK's Distributed Map grants build it."""
    machine = backfill.state_machine
    return Stack.of(machine).format_arn(
        service="states",
        resource="execution",
        resource_name=Arn.split(machine.state_machine_arn, ArnFormat.COLON_RESOURCE_NAME).resource_name,
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


def backfill_accepted(stack: ImageRecognitionStack, backfill: Backfill) -> tuple[Accepted, ...]:
    """What the Backfill construct (``enableBackfill``) needs; its read scope is ``backfillPrefix``."""
    state_machine, batch_operations = "Backfill/StateMachine", "Backfill/BatchOperationsRole"
    bucket, executions = backfill.bucket, child_executions(backfill)
    return (
        Accepted(
            wildcard(stack, bucket.arn_for_objects(f"{backfill.settings.backfill_prefix}*")),
            "The bulk worker reads the objects under backfillPrefix, the prefix the operator allowed "
            "backfills to classify (an archive of existing keys, unknown in advance).",
            ("Functions/BulkWorker",),
        ),
        Accepted(
            wildcard(stack, f"{backfill.worker.function_arn}:*"),
            "Invoke the bulk worker and its versions (CDK's grant for a function); no other function.",
            (state_machine, batch_operations),
        ),
        Accepted(
            wildcard(stack, bucket.arn_for_objects(f"{backfill.runs_prefix}*")),
            "The Distributed Map writes its run manifest (one per execution, named by AWS) there only.",
            (state_machine,),
        ),
        Accepted(
            wildcard(stack, f"{executions}:*"),
            "A Distributed Map describes and stops its own child executions (AWS's documented policy), "
            "scoped to this state machine.",
            (state_machine,),
        ),
        Accepted(
            wildcard(stack, f"{executions}/*:*"),
            "A Distributed Map run can be redriven (its failed batches only): scoped to this state machine.",
            (state_machine,),
        ),
        Accepted(
            wildcard(stack, bucket.arn_for_objects(f"{backfill.batch_operations_prefix}*")),
            "S3 Batch Operations jobs read their manifest and write their completion report there only.",
            (batch_operations,),
        ),
    )


def app_accepted(stack: ImageRecognitionStack) -> tuple[Accepted, ...]:
    """The findings this deployment accepts: the fixed ones, the API's, the delivery's, APIG3 when
    WAF is off, and the Backfill's when it is on."""
    settings = stack.settings
    api = rest_api_accepted(stack) if settings.api_type == "rest" else http_api_accepted(stack)
    accepted = (*fixed_accepted(stack), *api, *delivery_accepted(stack))
    accepted = (*accepted, WAF_OFF) if settings.api_type == "rest" and not settings.enable_waf else accepted
    return (*accepted, *backfill_accepted(stack, stack.backfill)) if stack.backfill is not None else accepted


def add_checks(app: App) -> None:
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))


# The GitHub OIDC deploy stack (-c githubRepo=owner/name).
def github_deploy_accepted(stack: GithubDeployStack) -> tuple[Accepted, ...]:
    return (
        Accepted(
            wildcard(stack, stack.bootstrap_roles),
            "The deploy role may only assume CDK's bootstrap roles (deploy, file and image publishing, "
            "lookup), whose names CDK derives from the account, the Region and the qualifier.",
            ("DeployRole",),
        ),
        Accepted(
            wildcard(stack, stack.app_stacks),
            "Read the outputs (ApiUrl) of this app's stacks, every stage; stack ids end in a generated uuid.",
            ("DeployRole",),
        ),
    )


def accepted_for(stack: Stack) -> tuple[Accepted, ...]:
    """The findings accepted in one of the app's stacks, built from that stack as it stands."""
    if isinstance(stack, ImageRecognitionStack):
        return app_accepted(stack)
    if isinstance(stack, GithubDeployStack):
        return github_deploy_accepted(stack)
    raise TypeError(f"no accepted findings known for {type(stack).__name__} {stack.node.path}")


def acknowledge(stack: Stack) -> None:
    """Acknowledge each accepted finding of a built stack on the constructs it was accepted for."""
    acknowledge_findings(stack, accepted_for(stack))


def acknowledge_findings(stack: Stack, findings: Iterable[Accepted]) -> None:
    """Each finding on every construct under its scopes; a scope that matches no construct raises."""
    root = stack.node.path
    constructs = stack.node.find_all()
    for accepted in findings:
        for scope in accepted.scopes:
            targets = [c for c in constructs if c.node.path.startswith(f"{root}/{scope}")]
            if not targets:
                raise ValueError(f"{accepted.rule}: no construct under {scope}; remove or fix it")
            for target in targets:
                Validations.of(target).acknowledge(
                    Acknowledgment(id=f"{PLUGIN}::{accepted.rule}", reason=accepted.reason)
                )


def unused(report: dict, stack: Stack, findings: Iterable[Accepted]) -> list[str]:
    """Stale acknowledgments: each accepted finding, on each of its scopes, that suppressed no
    violation (same rule, same reason, a construct under that scope) in ``validation-report.json``."""
    suppressed = {
        (violation["ruleName"], violation["reason"], construct["constructPath"])
        for plugin in report["pluginReports"]
        if plugin["pluginName"] == PLUGIN
        for violation in plugin["suppressedViolations"]
        for construct in violation["violatingConstructs"]
    }
    return [
        f"{accepted.rule} on {scope}"
        for accepted in findings
        for scope in accepted.scopes
        if not any(
            (rule, reason) == (accepted.rule, accepted.reason)
            and path.startswith(f"{stack.node.path}/{scope}")
            for rule, reason, path in suppressed
        )
    ]


def stale(app: App, report: dict) -> list[str]:
    """Every stale acknowledgment of the app's stacks (``[]``: each one suppresses a real finding)."""
    stacks = [child for child in app.node.children if isinstance(child, Stack)]
    return [
        f"{stack.node.path}: {entry}"
        for stack in stacks
        for entry in unused(report, stack, accepted_for(stack))
    ]
