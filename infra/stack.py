"""The app's stack: uploads bucket, capture, functions, API (REST or HTTP), monitoring and the model's
drift alarms, backfill, gradual delivery, and the outputs ops need."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.components.api import RestFrontDoor
from infra.components.backfill import Backfill
from infra.components.capture import Capture
from infra.components.delivery import GradualDeployment
from infra.components.drift import DriftAlarms, ServedModel
from infra.components.functions import ClassifierFunctions
from infra.components.http_api import HttpFrontDoor
from infra.components.monitoring import Monitoring
from infra.components.rollout_alarms import RolloutAlarms
from infra.components.uploads import Uploads
from infra.settings import Settings


class ImageRecognitionStack(Stack):
    """Its parts stay reachable (``uploads``, ``capture``, ``functions``, ``delivery``, ``backfill``):
    ``infra.nag`` names the findings it accepts after them, not after literals."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings, **kwargs) -> None:
        super().__init__(
            scope, construct_id, description="Serverless MobileNetV2 image recognition", **kwargs
        )
        self.settings = settings
        self.uploads = Uploads(self, "Uploads", settings=settings)
        self.capture = Capture(self, "Capture", settings=settings, uploads_bucket=self.uploads.bucket)
        self.functions = self._functions()
        model = ServedModel.of(settings)
        front_door = (
            HttpFrontDoor(self, "Api", settings=settings, function=self.functions.live)
            if settings.api_type == "http"
            else RestFrontDoor(self, "Api", settings=settings, function=self.functions.live)
        )
        monitoring = self._monitoring(front_door, model)
        self.delivery = self._delivery(monitoring)
        self.backfill: Backfill | None = None
        if self.functions.bulk_worker is not None:
            self.backfill = self._backfill(monitoring, self.functions.bulk_worker)
        self._outputs(front_door, monitoring)

    def _functions(self) -> ClassifierFunctions:
        """The functions, fed by the uploads queue and granted exactly their S3 and capture access."""
        uploads, capture = self.uploads, self.capture
        functions = ClassifierFunctions(
            self,
            "Functions",
            settings=self.settings,
            bucket_name=uploads.bucket.bucket_name,
            capture_environment=capture.environment,
        )
        uploads.connect(functions.worker_live)
        uploads.connect_api(functions.api)
        capture.grant_api(functions.api)
        capture.grant_worker(functions.worker)
        if functions.bulk_worker is not None:
            capture.grant_worker(functions.bulk_worker)
        return functions

    def _monitoring(self, front_door: HttpFrontDoor | RestFrontDoor, model: ServedModel) -> Monitoring:
        """Ops' alarms and dashboard, with the served model's answers and its drift alarms."""
        functions, uploads = self.functions, self.uploads
        monitoring = Monitoring(
            self,
            "Monitoring",
            settings=self.settings,
            front_door=front_door,
            api_function=functions.api,
            worker=functions.worker,
            queue=uploads.queue,
            dead_letters=uploads.dead_letters,
        )
        monitoring.watch_model(model)
        self.drift = DriftAlarms(self, "Drift", settings=self.settings, model=model, topic=monitoring.topic)
        monitoring.watch_drift(self.drift.alarms)
        return monitoring

    def _delivery(self, monitoring: Monitoring) -> GradualDeployment:
        """A new version takes traffic gradually; the rollback alarms (on the dashboard too) stop it."""
        functions = self.functions
        rollout = RolloutAlarms(
            self,
            "RolloutAlarms",
            settings=self.settings,
            api_live=functions.live,
            worker_live=functions.worker_live,
            topic=monitoring.topic,
        )
        monitoring.watch_rollouts([*rollout.api, *rollout.worker])
        return GradualDeployment(
            self,
            "Delivery",
            settings=self.settings,
            api_live=functions.live,
            worker_live=functions.worker_live,
            rollback_alarms=rollout.rollback_alarms,
        )

    def _backfill(self, monitoring: Monitoring, bulk_worker: lambda_.Function) -> Backfill:
        """Classifying stored photos (``enableBackfill``): watched, and its entry points as outputs."""
        backfill = Backfill(
            self, "Backfill", settings=self.settings, bucket=self.uploads.bucket, worker=bulk_worker
        )
        monitoring.watch_backfill(backfill.state_machine, bulk_worker)
        self._backfill_outputs(backfill)
        return backfill

    def _outputs(self, front_door: HttpFrontDoor | RestFrontDoor, monitoring: Monitoring) -> None:
        """What ops and the smoke tests read after a deploy: where to send photos, where answers land."""
        settings, uploads = self.settings, self.uploads
        CfnOutput(self, "ApiUrl", value=front_door.url, description="POST {url}predict with a photo")
        CfnOutput(self, "Stage", value=settings.stage or "default", description="deploy stage (-c stage)")
        CfnOutput(
            self,
            "UploadsBucket",
            value=uploads.bucket.bucket_name,
            description=f"put photos under {settings.uploads_prefix}",
        )
        CfnOutput(
            self, "UploadsLocation", value=f"s3://{uploads.bucket.bucket_name}/{settings.uploads_prefix}"
        )
        CfnOutput(self, "ResultsLocation", value=uploads.results_location, description="one JSON per photo")
        CfnOutput(self, "DeadLetterQueueUrl", value=uploads.dead_letters.queue_url)
        CfnOutput(self, "DashboardUrl", value=monitoring.dashboard_url)
        CfnOutput(self, "AlarmTopicArn", value=monitoring.topic.topic_arn)

    def _backfill_outputs(self, backfill: Backfill) -> None:
        """How to start a backfill: the state machine, or S3 Batch Operations with the bulk worker."""
        CfnOutput(
            self,
            "BackfillStateMachineArn",
            value=backfill.state_machine.state_machine_arn,
            description='aws stepfunctions start-execution --input \'{"prefix": "archive/"}\'',
        )
        CfnOutput(
            self, "BackfillRunsLocation", value=f"s3://{backfill.bucket.bucket_name}/{backfill.runs_prefix}"
        )
        CfnOutput(
            self,
            "BulkWorkerArn",
            value=backfill.worker.function_arn,
            description="S3 Batch Operations LambdaInvoke FunctionArn",
        )
        CfnOutput(
            self,
            "BatchOperationsRoleArn",
            value=backfill.batch_operations_role.role_arn,
            description="aws s3control create-job --role-arn",
        )
        CfnOutput(
            self,
            "BatchOperationsLocation",
            value=f"s3://{backfill.bucket.bucket_name}/{backfill.batch_operations_prefix}",
            description="manifests and completion reports of S3 Batch Operations jobs",
        )
