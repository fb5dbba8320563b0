"""The Lambda functions: one package, one entry point each (API, S3 worker, bulk worker).

``packaging=image`` (default) builds the repository's Dockerfile; ``packaging=zip`` deploys the
code with the two layers ``make layers`` builds (runtime dependencies, model at /opt/model),
optionally with SnapStart.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from handler.contract import API_HANDLER, BULK_HANDLER, METRICS_NAMESPACE, S3_HANDLER, SERVICE_NAME
from infra.components.common import log_group
from infra.settings import Settings
from layers import base_images

REPO_ROOT = Path(__file__).resolve().parents[2]

ARCHITECTURES = {"x86_64": lambda_.Architecture.X86_64, "arm64": lambda_.Architecture.ARM_64}
PLATFORMS = {"x86_64": ecr_assets.Platform.LINUX_AMD64, "arm64": ecr_assets.Platform.LINUX_ARM64}
RUNTIMES = {"3.12": lambda_.Runtime.PYTHON_3_12, "3.13": lambda_.Runtime.PYTHON_3_13}


class ClassifierFunctions(Construct):
    """``api`` (behind API Gateway, alias ``live``), ``worker`` (SQS batches of S3 uploads, alias
    ``live``) and,
    with ``enableBackfill``, ``bulk_worker`` (Distributed Map batches, S3 Batch Operations tasks)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        bucket_name: str,
        capture_environment: dict[str, str],
    ) -> None:
        super().__init__(scope, construct_id)
        self.settings = settings
        self.layers: list[lambda_.ILayerVersion] = self._layers() if settings.packaging == "zip" else []
        environment = self._environment(bucket_name, capture_environment)
        self.api = self._function(
            "Api",
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
            S3_HANDLER,
            environment,
            timeout=settings.s3_timeout_seconds,
            description="Classifies photos uploaded to S3 (SQS batches) and writes result records",
            reserved=None,
        )
        # The queue feeds alias live, so a new worker version takes traffic gradually too.
        self.worker_live = lambda_.Alias(
            self, "WorkerLive", alias_name="live", version=self.worker.current_version
        )
        self.bulk_worker = self._bulk_worker(environment) if settings.enable_backfill else None

    def _environment(self, bucket_name: str, capture_environment: dict[str, str]) -> dict[str, str]:
        """The handler's settings (handler/config.py reads each), shared by every function: one
        package, the same limits whichever entry point a photo arrives by."""
        settings = self.settings
        return {
            "MODEL_BACKEND": settings.model_backend,
            "MAX_IMAGE_BYTES": str(settings.max_image_bytes),
            "MAX_IMAGE_PIXELS": str(settings.max_image_pixels),
            "DECODE_WORKERS": str(settings.decode_workers),
            "DECODE_MEMORY_MB": str(settings.decode_memory_mb),
            "DECODE_CPU_MS": str(settings.decode_cpu_ms),
            "DECODE_REQUEST_CPU_MS": str(settings.decode_request_cpu_ms),
            "DECODE_REQUEST_DEADLINE_MS": str(settings.decode_request_deadline_ms),
            "ALLOWED_ORIGINS": settings.allowed_origins,
            "RESULTS_BUCKET": bucket_name,
            "RESULTS_PREFIX": settings.results_prefix,
            "UPLOADS_BUCKET": bucket_name,
            "UPLOADS_PREFIX": settings.uploads_prefix,
            "MAX_UPLOAD_BYTES": str(settings.max_upload_bytes),
            "MAX_IMAGES_PER_REQUEST": str(settings.max_images_per_request),
            "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            "POWERTOOLS_LOG_LEVEL": "INFO",
            # Every function that answers may capture its predictions (infra/components/capture.py).
            **capture_environment,
        }

    def _bulk_worker(self, environment: dict[str, str]) -> lambda_.Function:
        """The backfill's worker: its own timeout, because a batch of stored photos is not an SQS batch."""
        return self._function(
            "BulkWorker",
            BULK_HANDLER,
            environment,
            timeout=self.settings.backfill_timeout_seconds,
            description="Classifies stored photos: Distributed Map batches, S3 Batch Operations tasks",
            reserved=None,
        )

    def _layers(self) -> list[lambda_.ILayerVersion]:
        layers_dir = REPO_ROOT / self.settings.layers_dir
        if self.settings.model_dir:
            self._check_model_layer(layers_dir / "model-layer.zip")
        runtime = RUNTIMES[self.settings.python_version]
        architecture = ARCHITECTURES[self.settings.architecture]
        return [
            lambda_.LayerVersion(
                self,
                name,
                code=lambda_.Code.from_asset(str(layers_dir / archive)),
                compatible_runtimes=[runtime],
                compatible_architectures=[architecture],
                description=description,
            )
            for name, archive, description in (
                ("RuntimeLayer", "runtime-layer.zip", "ai-edge-litert, NumPy, Pillow, Powertools, boto3"),
                ("ModelLayer", "model-layer.zip", "MobileNetV2 fp32 TFLite, labels, manifest at /opt/model"),
            )
        ]

    def _code(self, command: str) -> dict:
        """Code, handler and runtime for ``command`` in the configured packaging."""
        return self._zip_code(command) if self.settings.packaging == "zip" else self._image_code(command)

    def _zip_code(self, command: str) -> dict:
        """The function's code from ``make layers``, on the two layers, SnapStart if asked for."""
        settings = self.settings
        return {
            "code": lambda_.Code.from_asset(str(REPO_ROOT / settings.layers_dir / "function")),
            "handler": command,
            "runtime": RUNTIMES[settings.python_version],
            "layers": self.layers,
            "snap_start": lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if settings.snap_start else None,
        }

    def _image_code(self, command: str) -> dict:
        """The Dockerfile's image, ``command`` its entry point; ``modelDir`` ships as a build context."""
        settings = self.settings
        build_args = {
            "MODEL_BACKEND": settings.model_backend,
            "PYTHON_VERSION": settings.python_version,
            # Base images pinned by digest where layers/base-images.json records one (make base-digests).
            **base_images.pinned(settings.python_version),
        }
        given: dict = {}
        if settings.model_dir:  # ship that directory at /opt/model instead of the ImageNet export
            model_dir = REPO_ROOT / settings.model_dir
            build_args["MODEL_ORIGIN"] = "given"
            given = {
                "build_contexts": {"model-dir": str(model_dir.resolve())},
                # The context is outside the asset's directory: its manifest (which pins every
                # file by sha256) makes a new model a new image.
                "extra_hash": hashlib.sha256((model_dir / "manifest.json").read_bytes()).hexdigest(),
            }
        return {
            "code": lambda_.Code.from_asset_image(
                str(REPO_ROOT),
                file="Dockerfile",
                cmd=[command],
                platform=PLATFORMS[settings.architecture],
                build_args=build_args,
                **given,
            ),
            "handler": lambda_.Handler.FROM_IMAGE,
            "runtime": lambda_.Runtime.FROM_IMAGE,
        }

    def _check_model_layer(self, archive: Path) -> None:
        """The model layer must hold the model directory asked for (``make layers MODEL_DIR=...``)."""
        wanted = (REPO_ROOT / self.settings.model_dir / "manifest.json").read_bytes()
        hint = f"run `make layers MODEL_DIR={self.settings.model_dir}` before synth"
        if not archive.is_file():
            raise ValueError(f"packaging=zip with modelDir: no {archive}; {hint}")
        with zipfile.ZipFile(archive) as layer:
            if layer.read("model/manifest.json") != wanted:
                raise ValueError(f"{archive} holds another model than {self.settings.model_dir}; {hint}")

    def _function(
        self,
        name: str,
        command: str,
        environment: dict[str, str],
        *,
        timeout: int,
        description: str,
        reserved: int | None,
    ) -> lambda_.Function:
        settings = self.settings
        function_logs = log_group(self, f"{name}Logs", settings.log_retention_days)
        return lambda_.Function(
            self,
            name,
            **self._code(command),
            architecture=ARCHITECTURES[settings.architecture],
            memory_size=settings.memory_size,
            timeout=Duration.seconds(timeout),
            tracing=lambda_.Tracing.ACTIVE,
            environment=environment,
            log_group=function_logs,
            reserved_concurrent_executions=reserved,
            description=description,
        )
