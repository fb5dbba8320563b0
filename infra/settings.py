"""Every deploy-time setting, read from CDK context with a documented default.

Each field's default is what ``cdk.json`` ships; override one with ``cdk deploy -c key=value``
(values from the command line arrive as strings and are converted to the field's type).
A test keeps ``cdk.json`` and these defaults identical.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

from constructs import Node

from handler.config import decode_wall_ms_for
from handler.contract import BACKENDS, FEEDBACK_AUTH_MODES, MB_PER_VCPU, Defaults
from handler.recognition import manifest as model_manifest
from handler.recognition.manifest import ModelError
from infra import model_cost

REPO_ROOT = Path(__file__).resolve().parent.parent

ARCHITECTURES = ("x86_64", "arm64")
API_TYPES = ("rest", "http")
STAGES = ("", "staging", "prod")
DEPLOYMENTS = ("canary", "linear", "all-at-once")
PACKAGINGS = ("image", "zip")
PYTHON_RUNTIMES = ("3.12", "3.13")
# Lambda's CPU share grows with memory: 1 vCPU at 1,769 MB, up to 6 vCPUs at 10,240 MB.
MAX_VCPUS = 6
# What the function's own process holds besides its decode workers (measured: ~250 MB with litert,
# ~1.3 GB with TensorFlow), with headroom.
PARENT_MB = {"litert": 512, "keras": 1536}
MIN_DECODE_MEMORY_MB, MAX_DECODE_MEMORY_MB = 256, 2048
# The model the ImageNet deployment serves: exported by `make model` (and the Dockerfile's stage 1).
IMAGENET_EXPORT = "build/model"


# Where sampled predictions are stored in the capture bucket (CAPTURE_PREFIX; handler/answers/capture.py).
CAPTURE_PREFIX = Defaults.CAPTURE_PREFIX
# Drift alarms wait this many periods; CloudWatch evaluates at most one day of periods.
DRIFT_EVALUATION_PERIODS = 3
MAX_DRIFT_PERIOD_MINUTES = 24 * 60 // DRIFT_EVALUATION_PERIODS

# The canary (10 % for 5 minutes) and how many 1-minute periods a rollback alarm may wait within it.
CANARY_MINUTES = 5
MAX_ROLLBACK_MINUTES = 3  # + a partial first minute + about a minute of CloudWatch's delay < 5


@dataclass(frozen=True)
class Settings:
    """Deploy settings; each field's ``doc`` is its line in docs/settings.md's context table."""

    stage: str = field(
        default="",
        metadata={"doc": "staging or prod: its own stack ImageRecognition-STAGE (empty: ImageRecognition)"},
    )
    api_type: str = field(
        default="rest",
        metadata={"doc": "rest (API Gateway REST, WAF, usage plan) or http (HTTP API, cheaper)"},
    )
    deployment: str = field(
        default="canary",
        metadata={
            "doc": "CodeDeploy for alias live: canary (10 % for 5 min), linear (10 %/min) or all-at-once"
        },
    )
    github_repo: str = field(
        default="",
        metadata={"doc": "owner/name: add the GitHub OIDC deploy stack (ImageRecognitionGithubDeploy)"},
    )
    github_branch: str = field(default="main", metadata={"doc": "the branch the OIDC role trusts"})
    github_oidc_provider_arn: str = field(
        default="", metadata={"doc": "reuse the account's GitHub OIDC provider (empty: create it)"}
    )
    packaging: str = field(
        default="image", metadata={"doc": "image (Dockerfile) or zip (make layers: code + 2 layers)"}
    )
    python_version: str = field(
        default="3.12", metadata={"doc": "Lambda Python for the image and zip (3.12+)"}
    )
    snap_start: bool = field(default=False, metadata={"doc": "SnapStart on published versions (zip only)"})
    layers_dir: str = field(
        default="build/layers", metadata={"doc": "make layers output used by packaging=zip"}
    )
    memory_size: int = field(default=2048, metadata={"doc": "function memory (MB); 1769 MB = 1 vCPU"})
    architecture: str = field(default="x86_64", metadata={"doc": "x86_64 or arm64 (Graviton)"})
    api_timeout_seconds: int = field(
        default=29, metadata={"doc": "API function timeout (API Gateway waits 29 s)"}
    )
    s3_timeout_seconds: int = field(default=120, metadata={"doc": "S3 worker timeout for one SQS batch"})
    model_dir: str = field(
        default="", metadata={"doc": "a model directory to serve instead of the ImageNet export (make train)"}
    )
    model_backend: str = field(
        default=Defaults.MODEL_BACKEND, metadata={"doc": "litert or keras (keras adds TensorFlow)"}
    )
    throttle_rate_limit: int = field(default=50, metadata={"doc": "stage steady-state requests per second"})
    throttle_burst_limit: int = field(default=100, metadata={"doc": "stage burst requests"})
    uploads_throttle_rate_limit: int = field(
        default=5, metadata={"doc": "POST /uploads steady-state requests per second (its own, lower limit)"}
    )
    uploads_throttle_burst_limit: int = field(default=10, metadata={"doc": "POST /uploads burst requests"})
    usage_plan_quota_per_day: int = field(default=100_000, metadata={"doc": "usage-plan requests per day"})
    api_key_required: bool = field(default=False, metadata={"doc": "require an API key (x-api-key)"})
    max_image_bytes: int = field(
        default=Defaults.MAX_IMAGE_BYTES, metadata={"doc": "largest image (MAX_IMAGE_BYTES)"}
    )
    max_upload_bytes: int = field(
        default=Defaults.MAX_UPLOAD_BYTES, metadata={"doc": "largest presigned upload"}
    )
    max_images_per_request: int = field(
        default=Defaults.MAX_IMAGES_PER_REQUEST, metadata={"doc": "images in one batch request"}
    )
    max_image_pixels: int = field(
        default=Defaults.MAX_IMAGE_PIXELS, metadata={"doc": "largest decoded image in pixels"}
    )
    decode_cpu_ms: int = field(
        default=Defaults.DECODE_CPU_MS,
        metadata={"doc": "one image's CPU time in its sandbox worker (DECODE_CPU_MS)"},
    )
    decode_request_cpu_ms: int = field(
        default=Defaults.DECODE_REQUEST_CPU_MS,
        metadata={"doc": "an API request's images together, CPU time (DECODE_REQUEST_CPU_MS)"},
    )
    decode_request_deadline_ms: int = field(
        default=Defaults.DECODE_REQUEST_DEADLINE_MS,
        metadata={
            "doc": "an API request's images together, wall clock: liveness (DECODE_REQUEST_DEADLINE_MS)"
        },
    )
    allowed_origins: str = field(
        default=Defaults.ALLOWED_ORIGINS, metadata={"doc": "CORS origins, comma-separated"}
    )
    alarm_email: str = field(
        default="", metadata={"doc": "e-mail subscribed to the alarm topic (empty: none)"}
    )
    reserved_concurrency: int = field(default=0, metadata={"doc": "API reserved concurrency (0: unreserved)"})
    provisioned_concurrency: int = field(default=0, metadata={"doc": "provisioned concurrency on alias live"})
    s3_worker_max_concurrency: int = field(default=5, metadata={"doc": "most concurrent S3 worker batches"})
    sqs_batch_size: int = field(default=10, metadata={"doc": "images per S3 worker invocation"})
    sqs_max_batching_window_seconds: int = field(default=5, metadata={"doc": "wait to fill a batch"})
    sqs_max_receive_count: int = field(default=5, metadata={"doc": "deliveries before the DLQ"})
    log_retention_days: int = field(default=30, metadata={"doc": "days of function and access logs"})
    enable_waf: bool = field(
        default=True, metadata={"doc": "WAF web ACL on the stage (per-IP rate, body size); false: none"}
    )
    waf_rate_limit_per_5min: int = field(default=1000, metadata={"doc": "WAF requests per IP per 5 minutes"})
    waf_max_content_length: int = field(
        default=7_000_000, metadata={"doc": "WAF blocks Content-Length >= this (d x 10^k bytes)"}
    )
    alarm_5xx_rate_percent: float = field(default=1.0, metadata={"doc": "alarm: API 5xx % over 5 minutes"})
    alarm_p99_latency_ms: int = field(
        default=3000, metadata={"doc": "alarm: API p99 latency (ms); a new version's p99 in a rollout too"}
    )
    rollback_error_rate_percent: float = field(
        default=5.0,
        metadata={"doc": "rollback: a new version answering 5xx or failing on this % of its requests"},
    )
    rollback_uncertain_rate_percent: float = field(
        default=80.0,
        metadata={"doc": "rollback: a new version answering `uncertain` on this % of its predictions"},
    )
    rollback_minutes: int = field(
        default=2,
        metadata={"doc": "rollback: 1-minute periods in a row a rollback alarm must see breach (1 to 3)"},
    )
    rollback_min_requests: int = field(
        default=3,
        metadata={"doc": "rollback: a minute with fewer requests to the new version is not evidence"},
    )
    quality_gate_accuracy_tolerance: float = field(
        default=0.10,
        metadata={"doc": "pre-traffic gate: accuracy on the check set may fall this far below the card's"},
    )
    quality_gate_probability_tolerance: float = field(
        default=0.05,
        metadata={"doc": "pre-traffic gate: largest change of a check photo's top-1 probability since build"},
    )
    model_cost_headroom: float = field(
        default=1.5,
        metadata={
            "doc": "synth and gate: Lambda may be this much slower than the machine that measured the model"
        },
    )
    quality_gate_cost_margin: float = field(
        default=0.5,
        metadata={"doc": "pre-traffic gate: the new version may cost this much more than live (0.5: +50 %)"},
    )
    accept_slower_model: bool = field(
        default=False,
        metadata={
            "doc": "pre-traffic gate: do not hold the new version to the live one's cost (slower on purpose)"
        },
    )
    uploads_prefix: str = field(
        default=Defaults.UPLOADS_PREFIX, metadata={"doc": "S3 prefix that triggers classification"}
    )
    results_prefix: str = field(
        default=Defaults.RESULTS_PREFIX, metadata={"doc": "S3 prefix of result records"}
    )
    expire_after_days: int = field(
        default=30, metadata={"doc": "days before uploads and results expire (0: keep them)"}
    )
    stage_name: str = field(default="prod", metadata={"doc": "API Gateway stage"})
    enable_backfill: bool = field(
        default=True,
        metadata={"doc": "Backfill: state machine, bulk worker, S3 Batch Operations role (false: none)"},
    )
    backfill_prefix: str = field(
        default="",
        metadata={"doc": "what a backfill may list and read in the bucket (empty: all but results)"},
    )
    backfill_batch_size: int = field(
        default=50, metadata={"doc": "Distributed Map ItemBatcher: most objects per worker invocation"}
    )
    backfill_max_batch_bytes: int = field(
        default=262_144, metadata={"doc": "ItemBatcher: most bytes of a batch's JSON input (AWS max 256 KiB)"}
    )
    backfill_max_concurrency: int = field(
        default=20, metadata={"doc": "Distributed Map: most worker invocations at once"}
    )
    backfill_tolerated_failure_percent: int = field(
        default=1, metadata={"doc": "failed batches (after retries) a run tolerates, in % of batches"}
    )
    backfill_timeout_seconds: int = field(default=300, metadata={"doc": "bulk worker timeout for one batch"})
    capture_rate: float = field(
        default=0.0,
        metadata={"doc": "share of predictions stored with their image under capture/ (0: off, 1: all)"},
    )
    capture_uncertain_rate: str = field(
        default="",
        metadata={"doc": "share of `uncertain` predictions stored, 0 to 1 (empty: captureRate)"},
    )
    capture_expiry_days: int = field(
        default=90, metadata={"doc": "days before captured images, answers and feedback expire (1 or more)"}
    )
    capture_bucket: str = field(
        default="",
        metadata={"doc": "an existing bucket (name) to capture into (empty: the uploads bucket)"},
    )
    feedback_throttle_rate_limit: int = field(
        default=5, metadata={"doc": "POST /feedback steady-state requests per second (its own limit)"}
    )
    feedback_throttle_burst_limit: int = field(default=10, metadata={"doc": "POST /feedback burst requests"})
    feedback_auth: str = field(
        default=Defaults.FEEDBACK_AUTH,
        metadata={
            "doc": "who may POST /feedback: iam (a signed request; the caller is recorded) or none "
            "(anyone: anonymous corrections, kept apart and unused unless asked for)"
        },
    )
    drift_uncertain_rate_points: float = field(
        default=15.0,
        metadata={"doc": "drift alarm: `uncertain` rate this many points away from the card's baseline"},
    )
    drift_class_share_points: float = field(
        default=20.0,
        metadata={"doc": "drift alarm: a class's share of top-1 answers this many points from the baseline"},
    )
    drift_min_predictions: int = field(
        default=100, metadata={"doc": "drift alarms: a period with fewer predictions is not evidence"}
    )
    drift_period_minutes: int = field(
        default=60,
        metadata={"doc": f"drift alarms: period in minutes (2 of {DRIFT_EVALUATION_PERIODS} periods breach)"},
    )

    def __post_init__(self) -> None:
        self._check_delivery()
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.packaging not in PACKAGINGS:
            raise ValueError(f"packaging must be one of {PACKAGINGS}, got {self.packaging!r}")
        if self.packaging == "zip" and self.model_backend != "litert":
            raise ValueError("packaging=zip serves the litert backend only (TensorFlow exceeds 250 MB)")
        if self.snap_start and self.packaging != "zip":
            raise ValueError("snapStart needs packaging=zip: Lambda offers SnapStart for zip functions")
        if self.python_version not in PYTHON_RUNTIMES:
            raise ValueError(
                f"pythonVersion must be one of {PYTHON_RUNTIMES} (ai-edge-litert needs glibc 2.27+)"
            )
        if self.model_backend not in BACKENDS:
            raise ValueError(f"model_backend must be one of {BACKENDS}, got {self.model_backend!r}")
        prefixes = (self.uploads_prefix, self.results_prefix)
        if prefixes[0].startswith(prefixes[1]) or prefixes[1].startswith(prefixes[0]):
            raise ValueError("uploads_prefix and results_prefix must not overlap (results would trigger us)")
        if self.model_dir and not (REPO_ROOT / self.model_dir / "manifest.json").is_file():
            raise ValueError(
                f"modelDir {self.model_dir}: no manifest.json there; train one first "
                "(make train DATA=folder NAME=name writes build/models/NAME)"
            )
        if self.model_dir:
            try:  # the cold start's checks that need no model loaded: fails at synth, not in Lambda
                model_manifest.validate(REPO_ROOT / self.model_dir)
            except ModelError as error:
                raise ValueError(f"modelDir {self.model_dir}: {error}") from None
        if self.expire_after_days < 0:
            raise ValueError("expire_after_days must be 0 (keep) or a number of days")
        if self.uploads_throttle_rate_limit > self.throttle_rate_limit:
            raise ValueError("uploads_throttle_rate_limit must not exceed throttle_rate_limit")
        if self.backfill_prefix.startswith(self.results_prefix):
            raise ValueError("backfill_prefix must not be under results_prefix (results are not photos)")
        if not 1 <= self.backfill_max_batch_bytes <= 262_144:
            raise ValueError("backfill_max_batch_bytes must be between 1 and 262144 (Step Functions' limit)")
        if not 0 <= self.backfill_tolerated_failure_percent <= 100:
            raise ValueError("backfill_tolerated_failure_percent must be between 0 and 100")
        if self.decode_request_deadline_ms >= self.api_timeout_seconds * 1000:
            raise ValueError("decode_request_deadline_ms must be shorter than api_timeout_seconds")
        self._check_model_cost()  # the served model's need first: its message names the model and the limit
        if self.memory_size - self.parent_mb < MIN_DECODE_MEMORY_MB * self.decode_workers:
            raise ValueError(
                f"memory_size {self.memory_size} MB leaves too little for the decode workers: "
                f"give it at least {self.parent_mb + MIN_DECODE_MEMORY_MB} MB"
            )
        self._check_capture()
        self._check_drift()
        digits = str(self.waf_max_content_length)
        if digits.strip("0") != digits[0]:
            raise ValueError("waf_max_content_length must be one digit followed by zeros, e.g. 7000000")

    @property
    def decode_workers(self) -> int:
        """Decode workers: one per vCPU Lambda gives this memory size (1 vCPU per 1,769 MB, 6 at
        most), so a batch decodes on every core (DECODE_WORKERS)."""
        return min(MAX_VCPUS, max(1, round(self.memory_size / MB_PER_VCPU)))

    @property
    def served_model_dir(self) -> Path:
        """The model directory the functions serve: ``modelDir``, or the ImageNet export."""
        return REPO_ROOT / (self.model_dir or IMAGENET_EXPORT)

    @cached_property
    def model_need(self) -> model_cost.Need | None:
        """What the served model needs on these functions, from the cost its build recorded (None
        before ``make model`` made the ImageNet export: synth asks for it with the check set)."""
        if not self.model_dir and not (self.served_model_dir / model_manifest.MANIFEST_FILE).is_file():
            return None
        cost = model_cost.recorded(self.served_model_dir)
        return model_cost.need(cost, self.memory_size, self.model_cost_headroom)

    @property
    def parent_mb(self) -> int:
        """The function process's share of the memory: the model's need, at least ``PARENT_MB``."""
        need = self.model_need
        return max(PARENT_MB[self.model_backend], int(need.peak_mb) if need else 0)

    def _check_model_cost(self) -> None:
        """A model whose recorded cost cannot fit these functions fails synth, saying where."""
        try:
            need = self.model_need
        except ValueError as error:
            raise ValueError(f"modelDir {self.model_dir or IMAGENET_EXPORT}: {error}") from None
        if need is None:
            return
        problems = model_cost.overruns(self, need, self.parent_mb, MIN_DECODE_MEMORY_MB * self.decode_workers)
        if problems:
            raise ValueError(
                f"the model in {self.model_dir or IMAGENET_EXPORT} does not fit these functions (its "
                f"recorded cost, x{self.model_cost_headroom:g} modelCostHeadroom, at memorySize "
                f"{self.memory_size}): " + "; ".join(problems)
            )

    def decode_batch_ms(self, objects: int) -> int:
        """``objects`` decoded ``decode_workers`` at a time, each at its wall bound."""
        return -(-objects // self.decode_workers) * self.decode_wall_ms

    @property
    def decode_wall_ms(self) -> int:
        """One image's wall-clock bound as the function derives it on Lambda (its memory size's vCPUs)."""
        return decode_wall_ms_for(self.decode_cpu_ms, self.decode_workers, self.memory_size / MB_PER_VCPU)

    @property
    def decode_memory_mb(self) -> int:
        """Each worker's address-space cap (DECODE_MEMORY_MB): what the function's memory leaves
        after the parent's share (the model, the runtime, a request's bytes: ``PARENT_MB``; TensorFlow
        for the keras backend), split between the workers, at most ``MAX_DECODE_MEMORY_MB``. So the
        parent and every worker at its cap fit in the function's memory together, and Lambda never
        kills the function for one image."""
        parent = self.parent_mb
        return max(
            MIN_DECODE_MEMORY_MB,
            min(MAX_DECODE_MEMORY_MB, (self.memory_size - parent) // self.decode_workers),
        )

    def _check_delivery(self) -> None:
        for name, value, allowed in (
            ("stage", self.stage, STAGES),
            ("apiType", self.api_type, API_TYPES),
            ("deployment", self.deployment, DEPLOYMENTS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if self.api_type == "http" and self.enable_waf:
            raise ValueError(
                "apiType=http: API Gateway HTTP APIs cannot have AWS WAF; add -c enableWaf=false"
            )
        if self.api_type == "http" and self.api_key_required:
            raise ValueError("apiType=http has no API keys or usage plans; use apiType=rest")
        if self.github_repo and self.github_repo.count("/") != 1:
            raise ValueError(f"githubRepo must be owner/name, got {self.github_repo!r}")
        if not 1 <= self.rollback_minutes <= MAX_ROLLBACK_MINUTES:
            raise ValueError(
                f"rollbackMinutes must be 1 to {MAX_ROLLBACK_MINUTES}: the alarm must fire while the "
                f"canary's {CANARY_MINUTES} minutes last (a partial first minute and CloudWatch's delay of "
                "about a minute come on top)"
            )
        if self.rollback_min_requests < 1:
            raise ValueError(f"rollbackMinRequests must be at least 1, got {self.rollback_min_requests}")
        for name, percent in (
            ("rollbackErrorRatePercent", self.rollback_error_rate_percent),
            ("rollbackUncertainRatePercent", self.rollback_uncertain_rate_percent),
        ):
            if not 0 < percent <= 100:
                raise ValueError(f"{name} must be above 0 and at most 100, got {percent}")
        for name, tolerance in (
            ("qualityGateAccuracyTolerance", self.quality_gate_accuracy_tolerance),
            ("qualityGateProbabilityTolerance", self.quality_gate_probability_tolerance),
        ):
            if not 0 <= tolerance < 1:
                raise ValueError(f"{name} must be at least 0 and below 1, got {tolerance}")
        if not 1 <= self.model_cost_headroom <= 10:
            raise ValueError(f"modelCostHeadroom must be from 1 to 10, got {self.model_cost_headroom}")
        if not 0 <= self.quality_gate_cost_margin <= 10:
            raise ValueError(
                f"qualityGateCostMargin must be from 0 to 10, got {self.quality_gate_cost_margin}"
            )

    def _check_capture(self) -> None:
        for name, rate in (("captureRate", self.capture_rate), ("captureUncertainRate", self.uncertain_rate)):
            if not 0 <= rate <= 1:
                raise ValueError(f"{name} must be from 0 to 1 (a share of predictions), got {rate}")
        if self.capture_expiry_days < 1:
            raise ValueError(f"captureExpiryDays must be at least 1, got {self.capture_expiry_days}")
        if self.capture_bucket.strip() != self.capture_bucket or "/" in self.capture_bucket:
            raise ValueError(f"captureBucket must be a bucket name, got {self.capture_bucket!r}")
        if not self.capture_bucket:  # in the uploads bucket: never under a prefix the worker classifies
            for name, prefix in (
                ("uploadsPrefix", self.uploads_prefix),
                ("resultsPrefix", self.results_prefix),
            ):
                if prefix.startswith(CAPTURE_PREFIX) or CAPTURE_PREFIX.startswith(prefix):
                    raise ValueError(
                        f"{name} {prefix!r} overlaps the capture prefix {CAPTURE_PREFIX!r} in the uploads "
                        "bucket (captured images would be classified again): change it or set captureBucket"
                    )
        if self.feedback_throttle_rate_limit > self.throttle_rate_limit:
            raise ValueError("feedback_throttle_rate_limit must not exceed throttle_rate_limit")
        if self.feedback_auth not in FEEDBACK_AUTH_MODES:
            raise ValueError(f"feedbackAuth must be one of {FEEDBACK_AUTH_MODES}, got {self.feedback_auth!r}")

    def _check_drift(self) -> None:
        for name, points in (
            ("driftUncertainRatePoints", self.drift_uncertain_rate_points),
            ("driftClassSharePoints", self.drift_class_share_points),
        ):
            if not 0 < points < 100:
                raise ValueError(f"{name} must be above 0 and below 100 (percentage points), got {points}")
        if self.drift_min_predictions < 1:
            raise ValueError(f"driftMinPredictions must be at least 1, got {self.drift_min_predictions}")
        if not 1 <= self.drift_period_minutes <= MAX_DRIFT_PERIOD_MINUTES:
            raise ValueError(
                f"driftPeriodMinutes must be 1 to {MAX_DRIFT_PERIOD_MINUTES}: CloudWatch evaluates at most "
                f"one day ({DRIFT_EVALUATION_PERIODS} periods), got {self.drift_period_minutes}"
            )

    @property
    def uncertain_rate(self) -> float:
        """``captureUncertainRate`` as a number: ``captureRate`` when left empty."""
        if self.capture_uncertain_rate == "":
            return self.capture_rate
        try:
            return float(self.capture_uncertain_rate)
        except ValueError:
            given = self.capture_uncertain_rate
            raise ValueError(
                f"captureUncertainRate must be a number from 0 to 1 or empty, got {given!r}"
            ) from None

    @property
    def capture_on(self) -> bool:
        """Whether any prediction is captured (either rate above 0)."""
        return self.capture_rate > 0 or self.uncertain_rate > 0

    @property
    def stack_name(self) -> str:
        return f"ImageRecognition-{self.stage}" if self.stage else "ImageRecognition"

    @property
    def origins(self) -> list[str]:
        return [o.strip() for o in self.allowed_origins.split(",") if o.strip()] or ["*"]

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """``{context key: default}``: what ``cdk.json`` ships."""
        return {context_key(f.name): f.default for f in fields(cls)}

    @classmethod
    def from_context(cls, node: Node) -> Settings:
        """Read each field from context, converting command-line strings to the field's type."""
        values = {}
        for spec in fields(cls):
            raw = node.try_get_context(context_key(spec.name))
            if raw is not None:
                values[spec.name] = _convert(raw, type(spec.default), spec.name)
        return dataclasses.replace(cls(), **values)


def context_key(name: str) -> str:
    """``max_image_bytes`` -> ``maxImageBytes``: CDK context keys are camelCase by convention."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _convert(raw: Any, kind: type, name: str) -> Any:
    if kind is bool and isinstance(raw, str):
        if raw.lower() not in ("true", "false"):
            raise ValueError(f"context {name} must be true or false, got {raw!r}")
        return raw.lower() == "true"
    try:
        return kind(raw)
    except (TypeError, ValueError) as error:
        raise ValueError(f"context {name} must be a {kind.__name__}, got {raw!r}") from error
