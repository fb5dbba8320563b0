"""Gradual, self-reverting rollouts: CodeDeploy moves alias ``live`` of the API and worker functions
to each new version (``deployment``: canary 10 % for 5 minutes, linear 10 % a minute, or all at
once), rolls back by itself when a rollback alarm fires, and lets no traffic reach a new API
version before the pre-traffic hook (``hooks/pre_traffic.py``) saw it classify a real photo.

The worker has no hook: it is the same image as the API version the hook checked, deployed in the
same update; its errors alarm rolls it back.
"""

from __future__ import annotations

import json
from pathlib import Path

from aws_cdk import Duration, SymlinkFollowMode
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from handler.contract import IMAGENET_HOOK_TOP1, IMAGENET_MODEL
from handler.recognition import manifest
from infra.components.common import log_group
from infra.settings import REPO_ROOT, Settings

CONFIGS = {
    "canary": codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_5_MINUTES,
    "linear": codedeploy.LambdaDeploymentConfig.LINEAR_10_PERCENT_EVERY_1_MINUTE,
    "all-at-once": codedeploy.LambdaDeploymentConfig.ALL_AT_ONCE,
}


def expected_model(settings: Settings) -> dict[str, str]:
    """The model the new version must report: the given model directory's, or the ImageNet export."""
    if settings.model_dir:
        fields = manifest.read(REPO_ROOT / settings.model_dir)
        return {"name": fields["name"], "version": fields["version"]}
    return dict(IMAGENET_MODEL)


HOOK_PHOTO_EVENT = REPO_ROOT / "hooks" / "photo_event.json"


def expected_top1(settings: Settings) -> str:
    """The top-1 label the pre-traffic hook requires of the new version, following the model served:
    ``preTrafficTop1`` when given (it must be one of that model's classes; ``-``: none), else what
    the ImageNet export answers for the hook's photo, or, for ``-c modelDir``, what that model
    answers for it, computed here (the serving decoder and LiteRT, offline, in well under a second)."""
    wanted = settings.pre_traffic_top1.strip()
    if wanted == "-":
        return ""
    if not settings.model_dir:
        return wanted or IMAGENET_HOOK_TOP1
    model_dir = REPO_ROOT / settings.model_dir
    classes = [label for _, label in manifest.read_labels(model_dir, manifest.read(model_dir))]
    if wanted:
        if wanted not in classes:
            raise ValueError(
                f"preTrafficTop1 {wanted!r} is not one of the classes of modelDir {settings.model_dir} "
                f"({', '.join(classes[:10])}{', …' if len(classes) > 10 else ''})"
            )
        return wanted
    return top1_of_hook_photo(model_dir)


def top1_of_hook_photo(model_dir: Path) -> str:
    """What the model in ``model_dir`` answers for the hook's photo (a committed, trusted fixture,
    decoded in-process)."""
    import base64

    from handler.recognition import imaging, model

    event = json.loads(HOOK_PHOTO_EVENT.read_text())
    photo = base64.b64decode(event["body"]) if event.get("isBase64Encoded") else event["body"].encode()
    classifier = model.load_classifier(model_dir, "litert", threads=1)
    pixels = imaging.to_array(photo, imaging.DecodeLimits(max_bytes=len(photo), max_pixels=40_000_000))
    (ranked,) = classifier.classify(pixels, top_k=1)
    return ranked[0].label


class GradualDeployment(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        api_live: lambda_.Alias,
        worker_live: lambda_.Alias,
        rollback_alarms: dict[str, list[cw.IAlarm]],
    ) -> None:
        super().__init__(scope, construct_id)
        application = codedeploy.LambdaApplication(self, "Application")
        rollback = codedeploy.AutoRollbackConfig(
            failed_deployment=True, stopped_deployment=True, deployment_in_alarm=True
        )

        def group(name: str, alias: lambda_.Alias, **hooks) -> codedeploy.LambdaDeploymentGroup:
            return codedeploy.LambdaDeploymentGroup(
                self,
                name,
                application=application,
                alias=alias,
                deployment_config=CONFIGS[settings.deployment],
                alarms=rollback_alarms[name.lower()],
                auto_rollback=rollback,
                **hooks,
            )

        self.hook = self._pre_traffic_hook(settings, api_live.version)
        self.api = group("Api", api_live, pre_hook=self.hook)
        self.worker = group("Worker", worker_live)

    def _pre_traffic_hook(self, settings: Settings, new_version: lambda_.IVersion) -> lambda_.Function:
        model = expected_model(settings)
        hook = lambda_.Function(
            self,
            "PreTrafficHook",
            runtime=lambda_.Runtime.PYTHON_3_14,  # standard library and the runtime's boto3 only
            handler="pre_traffic.handler",
            code=lambda_.Code.from_asset(
                str(REPO_ROOT / "hooks"),
                follow_symlinks=SymlinkFollowMode.ALWAYS,  # photo_event.json is the committed fixture
                exclude=["__pycache__", "*.pyc", "__init__.py"],
            ),
            timeout=Duration.minutes(2),  # a cold start of the new version included
            memory_size=256,
            tracing=lambda_.Tracing.ACTIVE,
            description="Pre-traffic check: the new API version must classify a real photo",
            environment={
                "TARGET_VERSION_ARN": new_version.function_arn,
                "EXPECTED_TOP1": expected_top1(settings),
                "EXPECTED_MODEL_NAME": model["name"],
                "EXPECTED_MODEL_VERSION": model["version"],
            },
            log_group=log_group(self, "PreTrafficHookLogs", settings.log_retention_days),
        )
        new_version.grant_invoke(hook)  # that version only: not the alias, not $LATEST
        return hook
