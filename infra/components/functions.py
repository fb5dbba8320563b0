"""The two Lambda functions: one container image, two commands (API and S3 worker)."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.components.common import log_retention
from infra.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
API_HANDLER = "handler.app.api_handler"
S3_HANDLER = "handler.app.s3_handler"

ARCHITECTURES = {"x86_64": lambda_.Architecture.X86_64, "arm64": lambda_.Architecture.ARM_64}
PLATFORMS = {"x86_64": ecr_assets.Platform.LINUX_AMD64, "arm64": ecr_assets.Platform.LINUX_ARM64}


def image_code(settings: Settings, command: str) -> lambda_.DockerImageCode:
    """The repository's Dockerfile; every function shares the image and differs by ``CMD``."""
    return lambda_.DockerImageCode.from_image_asset(
        str(REPO_ROOT),
        file="Dockerfile",
        cmd=[command],
        platform=PLATFORMS[settings.architecture],
        build_args={"MODEL_BACKEND": settings.model_backend},
    )


class ClassifierFunctions(Construct):
    """``api`` (behind API Gateway, alias ``live``) and ``worker`` (SQS batches of S3 uploads)."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings, bucket_name: str) -> None:
        super().__init__(scope, construct_id)
        environment = {
            "MODEL_BACKEND": settings.model_backend,
            "MAX_IMAGE_BYTES": str(settings.max_image_bytes),
            "MAX_IMAGE_PIXELS": str(settings.max_image_pixels),
            "ALLOWED_ORIGINS": settings.allowed_origins,
            "RESULTS_BUCKET": bucket_name,
            "RESULTS_PREFIX": settings.results_prefix,
            "POWERTOOLS_SERVICE_NAME": "image-recognition",
            "POWERTOOLS_METRICS_NAMESPACE": "ImageRecognition",
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }
        self.api = self._function(
            "Api",
            settings,
            API_HANDLER,
            environment,
            timeout=settings.api_timeout_seconds,
            description="MobileNetV2 image classification behind API Gateway",
            reserved=settings.reserved_concurrency or None,
        )
        self.live = lambda_.Alias(
            self,
            "ApiLive",
            alias_name="live",
            version=self.api.current_version,
            provisioned_concurrent_executions=settings.provisioned_concurrency or None,
        )
        self.worker = self._function(
            "Worker",
            settings,
            S3_HANDLER,
            environment,
            timeout=settings.s3_timeout_seconds,
            description="Classifies photos uploaded to S3 (SQS batches) and writes result records",
            reserved=None,
        )

    def _function(
        self,
        name: str,
        settings: Settings,
        command: str,
        environment: dict[str, str],
        *,
        timeout: int,
        description: str,
        reserved: int | None,
    ) -> lambda_.DockerImageFunction:
        log_group = logs.LogGroup(
            self,
            f"{name}Logs",
            retention=log_retention(settings.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        return lambda_.DockerImageFunction(
            self,
            name,
            code=image_code(settings, command),
            architecture=ARCHITECTURES[settings.architecture],
            memory_size=settings.memory_size,
            timeout=Duration.seconds(timeout),
            tracing=lambda_.Tracing.ACTIVE,
            environment=environment,
            log_group=log_group,
            reserved_concurrent_executions=reserved,
            description=description,
        )
