"""Gradual, self-reverting rollouts: CodeDeploy moves alias ``live`` of the API and worker functions
to each new version (``deployment``: canary 10 % for 5 minutes, linear 10 % a minute, or all at
once), rolls back by itself when a rollback alarm fires (``rollout_alarms.py``: the new version's
own metrics, 1-minute periods), and lets no traffic reach a new API version before the pre-traffic
hook (``hooks/pre_traffic.py``) held it to the model's check set: its accuracy against the card's,
each photo's probability against the one recorded at build.

The worker has no hook: it is the same image as the API version the hook checked, deployed in the
same update, and its alias moves only after the API's deployment succeeded; its own rollback alarm
watches it then.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from handler.contract import IMAGENET_MODEL
from handler.recognition import manifest
from infra import model_cost
from infra.components.common import log_group
from infra.settings import IMAGENET_EXPORT, REPO_ROOT, Settings

HOOK_DIR = REPO_ROOT / "hooks"

CONFIGS = {
    "canary": codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_5_MINUTES,
    "linear": codedeploy.LambdaDeploymentConfig.LINEAR_10_PERCENT_EVERY_1_MINUTE,
    "all-at-once": codedeploy.LambdaDeploymentConfig.ALL_AT_ONCE,
}


HOOK_FILES = ("pre_traffic.py", "photo_event.json")
# The deployment serves the fp32 files (MODEL_PRECISION is not a deploy setting).
PRECISION = "fp32"


def gated_model_dir(settings: Settings) -> Path:
    """The model directory whose check set the pre-traffic hook holds the new version to (the ImageNet
    export is made in the image, Dockerfile stage 1, by the code and pinned weights `make model` runs)."""
    return settings.served_model_dir


def expected_model(settings: Settings) -> dict[str, str]:
    """The model the new version must report: the given model directory's, or the ImageNet export."""
    if settings.model_dir:
        fields = manifest.read(REPO_ROOT / settings.model_dir)
        return {"name": fields["name"], "version": fields["version"]}
    return dict(IMAGENET_MODEL)


def read_check_set(settings: Settings) -> dict:
    """The served model's check set, checked (present, recorded with this very build, within the
    hook's limits); a ``ValueError`` that says how to make one fails ``cdk synth``."""
    from training import checkset

    model_dir = gated_model_dir(settings)
    if not settings.model_dir and not (model_dir / manifest.MANIFEST_FILE).is_file():
        raise ValueError(
            f"the pre-traffic quality gate needs the ImageNet export's check set: run `make model` "
            f"(it exports the model to {IMAGENET_EXPORT} with its check set), or give -c modelDir=DIR"
        )
    try:
        document = checkset.read(model_dir, PRECISION)
    except checkset.CheckSetError as error:
        raise ValueError(f"modelDir {settings.model_dir or IMAGENET_EXPORT}: {error}") from None
    model = {key: document["model"][key] for key in ("name", "version")}
    if model != expected_model(settings):
        raise ValueError(
            f"{model_dir}: check set of {model}, but the deployment serves {expected_model(settings)}"
        )
    scored, required = document["accuracy_when_recorded"][PRECISION], document["expected_accuracy"]
    if scored < required - settings.quality_gate_accuracy_tolerance:
        raise ValueError(
            f"{model_dir}: this very build scores {scored:.3f} on its check photos, below the expected "
            f"{required:.3f} - qualityGateAccuracyTolerance {settings.quality_gate_accuracy_tolerance}: the "
            "pre-traffic gate would stop it. Choose more (or other) check photos with `imgrec check-set`, "
            "or give a larger -c qualityGateAccuracyTolerance."
        )
    return document


def hook_asset(settings: Settings) -> Path:
    """The hook's code, its event template and the model's check set (``check.json`` and the photos
    it lists, nothing else), in one folder named by its content, under build/."""
    from training import checkset

    document = read_check_set(settings)
    source = gated_model_dir(settings) / checkset.CHECK_DIR
    check_files = [checkset.CHECK_FILE, *(Path(entry["file"]).name for entry in document["photos"])]
    staged = [(HOOK_DIR / name, name) for name in HOOK_FILES]
    staged += [(source / name, f"{checkset.CHECK_DIR}/{name}") for name in check_files]
    digest = hashlib.sha256()
    for path, name in staged:
        digest.update(name.encode() + b"\0" + path.read_bytes())
    folder = REPO_ROOT / "build" / "hook-assets" / digest.hexdigest()[:16]
    if not folder.is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".hook-", dir=folder.parent))
        (staging / checkset.CHECK_DIR).mkdir()
        for path, name in staged:
            shutil.copyfile(path, staging / name)
        with contextlib.suppress(OSError):  # another synth made the same folder meanwhile
            os.replace(staging, folder)
        shutil.rmtree(staging, ignore_errors=True)
    return folder


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
        # CloudFormation updates the hook (its TARGET_VERSION_ARN) and the alarms (their version)
        # before it updates the API alias, whose update is the deployment; the worker's alias moves
        # only once the API's deployment succeeded: a build the gate stopped never reaches the worker.
        api_live.node.add_dependency(self.hook, *rollback_alarms["api"])
        worker_live.node.add_dependency(api_live, *rollback_alarms["worker"])

    def _pre_traffic_hook(self, settings: Settings, new_version: lambda_.IVersion) -> lambda_.Function:
        model = expected_model(settings)
        hook = lambda_.Function(
            self,
            "PreTrafficHook",
            runtime=lambda_.Runtime.PYTHON_3_14,  # standard library and the runtime's boto3 only
            handler="pre_traffic.handler",
            code=lambda_.Code.from_asset(str(hook_asset(settings))),
            timeout=Duration.minutes(5),  # up to 64 check photos, the new version's cold start included
            memory_size=256,
            tracing=lambda_.Tracing.ACTIVE,
            description="Pre-traffic quality gate: the new API version on the model's check set",
            environment={
                "TARGET_VERSION_ARN": new_version.function_arn,
                "EXPECTED_MODEL_NAME": model["name"],
                "EXPECTED_MODEL_VERSION": model["version"],
                "MODEL_PRECISION": PRECISION,
                "ACCURACY_TOLERANCE": str(settings.quality_gate_accuracy_tolerance),
                "PROBABILITY_TOLERANCE": str(settings.quality_gate_probability_tolerance),
                # The version serving now, whose cost on the same requests the new one is held to.
                "LIVE_ARN": f"{new_version.lambda_.function_arn}:live",
                **model_cost.gate_environment(settings, settings.model_need),
            },
            log_group=log_group(self, "PreTrafficHookLogs", settings.log_retention_days),
        )
        new_version.grant_invoke(hook)  # that version, and alias live to compare costs; not $LATEST
        hook.add_to_role_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"], resources=[f"{new_version.lambda_.function_arn}:live"]
            )
        )
        return hook
