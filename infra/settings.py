"""Every deploy-time setting, read from CDK context with a documented default.

Each field's default is what ``cdk.json`` ships; override one with ``cdk deploy -c key=value``
(values from the command line arrive as strings, from ``cdk.json`` as JSON: pydantic converts both
to the field's type). A test keeps ``cdk.json`` and these defaults identical.

Each field declares what it accepts (``Literal``, bounds); the validators below are the rules that
join fields, or that need the file system. A bad value fails the synth with one sentence naming the
context key and what it accepts (``explain``), not pydantic's report.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from constructs import Node
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from handler.config import decode_wall_ms_for
from handler.contract import BACKENDS, FEEDBACK_AUTH_MODES, MB_PER_VCPU, Defaults
from handler.recognition import manifest as model_manifest
from handler.recognition.manifest import ModelError
from infra import model_cost
from layers.base_images import PythonRuntime

REPO_ROOT = Path(__file__).resolve().parent.parent

Architecture = Literal["x86_64", "arm64"]
ApiType = Literal["rest", "http"]
Stage = Literal["", "staging", "prod"]
Deployment = Literal["canary", "linear", "all-at-once"]
Packaging = Literal["image", "zip"]
ModelBackend = Literal[BACKENDS]  # the tuple's values: the handler's contract owns the list
FeedbackAuth = Literal[FEEDBACK_AUTH_MODES]
ARCHITECTURES = get_args(Architecture)
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
# Step Functions' ItemBatcher takes at most 256 KiB of JSON per batch.
MAX_BATCH_BYTES = 262_144


def _true_or_false(raw: object) -> object:
    """``-c enableWaf=false`` arrives as text: true and false (any case) are the spellings a switch
    has always taken (pydantic alone would take yes/no/on/off/1/0 too, and docs/settings.md says
    true or false)."""
    return raw.lower() == "true" if isinstance(raw, str) and raw.lower() in ("true", "false") else raw


# A bool from JSON (true/false) or from the command line's text; nothing else.
Switch = Annotated[bool, Strict(), BeforeValidator(_true_or_false)]


def _as_text(raw: object) -> object:
    """cdk.json's ``"pythonVersion": 3.12`` is a JSON number: read as the text it spells (pydantic's
    ``coerce_numbers_to_str`` does not reach a ``Literal``)."""
    return str(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else raw


PythonVersion = Annotated[PythonRuntime, BeforeValidator(_as_text)]


def setting(default: Any, doc: str, *, allowed: str = "", why: str = "", **bounds: Any) -> Any:
    """A context setting: its default (what ``cdk.json`` ships), its line in docs/settings.md's
    context table (``doc``), its bounds, and for the error message what it accepts in words
    (``allowed``, when bounds cannot say it) and why (``why``)."""
    words = {key: text for key, text in (("allowed", allowed), ("why", why)) if text}
    return Field(default, description=doc, json_schema_extra=words or None, **bounds)


def context_key(name: str) -> str:
    """``max_image_bytes`` -> ``maxImageBytes``: CDK context keys are camelCase by convention."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class Settings(BaseModel):
    """Deploy settings; each field's ``description`` is its line in docs/settings.md's context table.

    Constructed by Python name (``Settings(memory_size=4096)``) or by context key
    (``from_context``); either way a bad value raises ``ValueError`` with one sentence."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",  # a misspelt Python name is an error, not a silently ignored setting
        alias_generator=context_key,
        validate_by_name=True,
        validate_by_alias=True,
        coerce_numbers_to_str=True,  # cdk.json may give a text setting as a number
        allow_inf_nan=False,  # nan would pass every bound
    )

    stage: Stage = setting(
        "", "staging or prod: its own stack ImageRecognition-STAGE (empty: ImageRecognition)"
    )
    api_type: ApiType = setting(
        "rest", "rest (API Gateway REST, WAF, usage plan) or http (HTTP API, cheaper)"
    )
    deployment: Deployment = setting(
        "canary", "CodeDeploy for alias live: canary (10 % for 5 min), linear (10 %/min) or all-at-once"
    )
    github_repo: str = setting(
        "",
        "owner/name: add the GitHub OIDC deploy stack (ImageRecognitionGithubDeploy)",
        allowed="owner/name (or empty)",
        pattern=r"^([^/]*/[^/]*)?$",
    )
    github_branch: str = setting("main", "the branch the OIDC role trusts")
    github_oidc_provider_arn: str = setting("", "reuse the account's GitHub OIDC provider (empty: create it)")
    packaging: Packaging = setting("image", "image (Dockerfile) or zip (make layers: code + 2 layers)")
    python_version: PythonVersion = setting(
        "3.12", "Lambda Python for the image and zip (3.12+)", why="ai-edge-litert needs glibc 2.27+"
    )
    snap_start: Switch = setting(False, "SnapStart on published versions (zip only)")
    layers_dir: str = setting("build/layers", "make layers output used by packaging=zip")
    memory_size: int = setting(
        2048, "function memory (MB); 1769 MB = 1 vCPU", why="Lambda's range", ge=128, le=10240
    )
    architecture: Architecture = setting("x86_64", "x86_64 or arm64 (Graviton)")
    api_timeout_seconds: int = setting(29, "API function timeout (API Gateway waits 29 s)")
    s3_timeout_seconds: int = setting(120, "S3 worker timeout for one SQS batch")
    model_dir: str = setting("", "a model directory to serve instead of the ImageNet export (make train)")
    model_backend: ModelBackend = setting(Defaults.MODEL_BACKEND, "litert or keras (keras adds TensorFlow)")
    throttle_rate_limit: int = setting(50, "stage steady-state requests per second")
    throttle_burst_limit: int = setting(100, "stage burst requests")
    uploads_throttle_rate_limit: int = setting(
        5, "POST /uploads steady-state requests per second (its own, lower limit)"
    )
    uploads_throttle_burst_limit: int = setting(10, "POST /uploads burst requests")
    usage_plan_quota_per_day: int = setting(100_000, "usage-plan requests per day")
    api_key_required: Switch = setting(False, "require an API key (x-api-key)")
    max_image_bytes: int = setting(Defaults.MAX_IMAGE_BYTES, "largest image (MAX_IMAGE_BYTES)")
    max_upload_bytes: int = setting(Defaults.MAX_UPLOAD_BYTES, "largest presigned upload")
    max_images_per_request: int = setting(Defaults.MAX_IMAGES_PER_REQUEST, "images in one batch request")
    max_image_pixels: int = setting(Defaults.MAX_IMAGE_PIXELS, "largest decoded image in pixels")
    decode_cpu_ms: int = setting(
        Defaults.DECODE_CPU_MS, "one image's CPU time in its sandbox worker (DECODE_CPU_MS)"
    )
    decode_request_cpu_ms: int = setting(
        Defaults.DECODE_REQUEST_CPU_MS, "an API request's images together, CPU time (DECODE_REQUEST_CPU_MS)"
    )
    decode_request_deadline_ms: int = setting(
        Defaults.DECODE_REQUEST_DEADLINE_MS,
        "an API request's images together, wall clock: liveness (DECODE_REQUEST_DEADLINE_MS)",
    )
    allowed_origins: str = setting(Defaults.ALLOWED_ORIGINS, "CORS origins, comma-separated")
    alarm_email: str = setting("", "e-mail subscribed to the alarm topic (empty: none)")
    reserved_concurrency: int = setting(0, "API reserved concurrency (0: unreserved)")
    provisioned_concurrency: int = setting(0, "provisioned concurrency on alias live")
    s3_worker_max_concurrency: int = setting(5, "most concurrent S3 worker batches")
    sqs_batch_size: int = setting(10, "images per S3 worker invocation")
    sqs_max_batching_window_seconds: int = setting(5, "wait to fill a batch")
    sqs_max_receive_count: int = setting(5, "deliveries before the DLQ")
    log_retention_days: int = setting(30, "days of function and access logs")
    enable_waf: Switch = setting(True, "WAF web ACL on the stage (per-IP rate, body size); false: none")
    waf_rate_limit_per_5min: int = setting(1000, "WAF requests per IP per 5 minutes")
    waf_max_content_length: int = setting(7_000_000, "WAF blocks Content-Length >= this (d x 10^k bytes)")
    alarm_5xx_rate_percent: float = setting(1.0, "alarm: API 5xx % over 5 minutes")
    alarm_p99_latency_ms: int = setting(
        3000, "alarm: API p99 latency (ms); a new version's p99 in a rollout too"
    )
    rollback_error_rate_percent: float = setting(
        5.0, "rollback: a new version answering 5xx or failing on this % of its requests", gt=0, le=100
    )
    rollback_uncertain_rate_percent: float = setting(
        80.0, "rollback: a new version answering `uncertain` on this % of its predictions", gt=0, le=100
    )
    rollback_minutes: int = setting(
        2,
        "rollback: 1-minute periods in a row a rollback alarm must see breach (1 to 3)",
        why=f"the alarm must fire while the canary's {CANARY_MINUTES} minutes last, with a partial first "
        "minute and about a minute of CloudWatch's delay on top",
        ge=1,
        le=MAX_ROLLBACK_MINUTES,
    )
    rollback_min_requests: int = setting(
        3, "rollback: a minute with fewer requests to the new version is not evidence", ge=1
    )
    quality_gate_accuracy_tolerance: float = setting(
        0.10, "pre-traffic gate: accuracy on the check set may fall this far below the card's", ge=0, lt=1
    )
    quality_gate_probability_tolerance: float = setting(
        0.05,
        "pre-traffic gate: largest change of a check photo's top-1 probability since build",
        ge=0,
        lt=1,
    )
    model_cost_headroom: float = setting(
        1.5,
        "synth and gate: Lambda may be this much slower than the machine that measured the model",
        ge=1,
        le=10,
    )
    quality_gate_cost_margin: float = setting(
        0.5,
        "pre-traffic gate: the new version may cost this much more than live (0.5: +50 %)",
        ge=0,
        le=10,
    )
    accept_slower_model: Switch = setting(
        False, "pre-traffic gate: do not hold the new version to the live one's cost (slower on purpose)"
    )
    uploads_prefix: str = setting(Defaults.UPLOADS_PREFIX, "S3 prefix that triggers classification")
    results_prefix: str = setting(Defaults.RESULTS_PREFIX, "S3 prefix of result records")
    expire_after_days: int = setting(
        30, "days before uploads and results expire (0: keep them)", why="0: keep them", ge=0
    )
    stage_name: str = setting("prod", "API Gateway stage")
    enable_backfill: Switch = setting(
        True, "Backfill: state machine, bulk worker, S3 Batch Operations role (false: none)"
    )
    backfill_prefix: str = setting(
        "", "what a backfill may list and read in the bucket (empty: all but results)"
    )
    backfill_batch_size: int = setting(50, "Distributed Map ItemBatcher: most objects per worker invocation")
    backfill_max_batch_bytes: int = setting(
        MAX_BATCH_BYTES,
        "ItemBatcher: most bytes of a batch's JSON input (AWS max 256 KiB)",
        why="Step Functions' limit",
        ge=1,
        le=MAX_BATCH_BYTES,
    )
    backfill_max_concurrency: int = setting(20, "Distributed Map: most worker invocations at once")
    backfill_tolerated_failure_percent: int = setting(
        1, "failed batches (after retries) a run tolerates, in % of batches", ge=0, le=100
    )
    backfill_timeout_seconds: int = setting(300, "bulk worker timeout for one batch")
    capture_rate: float = setting(
        0.0,
        "share of predictions stored with their image under capture/ (0: off, 1: all)",
        why="a share of predictions",
        ge=0,
        le=1,
    )
    capture_uncertain_rate: str = setting(
        "", "share of `uncertain` predictions stored, 0 to 1 (empty: captureRate)"
    )
    capture_expiry_days: int = setting(
        90, "days before captured images, answers and feedback expire (1 or more)", ge=1
    )
    capture_bucket: str = setting(
        "",
        "an existing bucket (name) to capture into (empty: the uploads bucket)",
        allowed="a bucket name",
        pattern=r"^([^/\s]([^/]*[^/\s])?)?$",  # no slash, no surrounding spaces
    )
    feedback_throttle_rate_limit: int = setting(
        5, "POST /feedback steady-state requests per second (its own limit)"
    )
    feedback_throttle_burst_limit: int = setting(10, "POST /feedback burst requests")
    feedback_auth: FeedbackAuth = setting(
        Defaults.FEEDBACK_AUTH,
        "who may POST /feedback: iam (a signed request; the caller is recorded) or none "
        "(anyone: anonymous corrections, kept apart and unused unless asked for)",
    )
    drift_uncertain_rate_points: float = setting(
        15.0,
        "drift alarm: `uncertain` rate this many points away from the card's baseline",
        why="percentage points",
        gt=0,
        lt=100,
    )
    drift_class_share_points: float = setting(
        20.0,
        "drift alarm: a class's share of top-1 answers this many points from the baseline",
        why="percentage points",
        gt=0,
        lt=100,
    )
    drift_min_predictions: int = setting(
        100, "drift alarms: a period with fewer predictions is not evidence", ge=1
    )
    drift_period_minutes: int = setting(
        60,
        f"drift alarms: period in minutes (2 of {DRIFT_EVALUATION_PERIODS} periods breach)",
        why=f"CloudWatch evaluates at most one day: {DRIFT_EVALUATION_PERIODS} periods",
        ge=1,
        le=MAX_DRIFT_PERIOD_MINUTES,
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:  # one sentence per bad value, not pydantic's report
            raise ValueError(explain(error)) from None

    # --- Rules a single bound cannot state (each raises ValueError with its own sentence).

    @field_validator("waf_max_content_length")
    @classmethod
    def _one_digit_and_zeros(cls, value: int) -> int:
        """WAF's size rule matches Content-Length digits with a regex (infra/components/api.py)."""
        digits = str(value)
        if digits.strip("0") != digits[0]:
            raise ValueError("wafMaxContentLength must be one digit followed by zeros, e.g. 7000000")
        return value

    @field_validator("capture_uncertain_rate")
    @classmethod
    def _rate_or_empty(cls, value: str) -> str:
        """Text, not a float: empty means "follow captureRate" (``uncertain_rate``)."""
        if value == "":
            return value
        try:
            rate = float(value)
        except ValueError:
            raise ValueError(
                f"captureUncertainRate must be a number from 0 to 1 or empty, got {value!r}"
            ) from None
        if not 0 <= rate <= 1:
            raise ValueError(
                "captureUncertainRate must be from 0 to 1 (a share of `uncertain` predictions), "
                f"got {value!r}"
            )
        return value

    @field_validator("model_dir")
    @classmethod
    def _holds_a_model(cls, value: str) -> str:
        """The cold start's checks that need no model loaded: a bad model fails synth, not Lambda."""
        if value and not (REPO_ROOT / value / "manifest.json").is_file():
            raise ValueError(
                f"modelDir {value}: no manifest.json there; train one first "
                "(make train DATA=folder NAME=name writes build/models/NAME)"
            )
        if value:
            try:
                model_manifest.validate(REPO_ROOT / value)
            except ModelError as error:
                raise ValueError(f"modelDir {value}: {error}") from None
        return value

    @model_validator(mode="after")
    def _delivery_fits_the_api_type(self) -> Settings:
        """HTTP APIs have neither WAF nor API keys; a zip has room for litert only; SnapStart is zip-only."""
        if self.api_type == "http" and self.enable_waf:
            raise ValueError(
                "apiType=http: API Gateway HTTP APIs cannot have AWS WAF; add -c enableWaf=false"
            )
        if self.api_type == "http" and self.api_key_required:
            raise ValueError("apiType=http has no API keys or usage plans; use apiType=rest")
        if self.packaging == "zip" and self.model_backend != "litert":
            raise ValueError("packaging=zip serves the litert backend only (TensorFlow exceeds 250 MB)")
        if self.snap_start and self.packaging != "zip":
            raise ValueError("snapStart needs packaging=zip: Lambda offers SnapStart for zip functions")
        return self

    @model_validator(mode="after")
    def _prefixes_apart(self) -> Settings:
        """Results and captures written under a prefix the worker classifies would trigger it again."""
        if _overlap(self.uploads_prefix, self.results_prefix):
            raise ValueError("uploadsPrefix and resultsPrefix must not overlap (results would trigger us)")
        if self.backfill_prefix.startswith(self.results_prefix):
            raise ValueError("backfillPrefix must not be under resultsPrefix (results are not photos)")
        if self.capture_bucket:  # captures go to another bucket: no prefix of this one can clash
            return self
        for key, prefix in (("uploadsPrefix", self.uploads_prefix), ("resultsPrefix", self.results_prefix)):
            if _overlap(prefix, CAPTURE_PREFIX):
                raise ValueError(
                    f"{key} {prefix!r} overlaps the capture prefix {CAPTURE_PREFIX!r} in the uploads "
                    "bucket (captured images would be classified again): change it or set captureBucket"
                )
        return self

    @model_validator(mode="after")
    def _limits_within_the_stage(self) -> Settings:
        """The per-route limits are shares of the stage's; the decode deadline leaves time to answer."""
        for key, rate in (
            ("uploadsThrottleRateLimit", self.uploads_throttle_rate_limit),
            ("feedbackThrottleRateLimit", self.feedback_throttle_rate_limit),
        ):
            if rate > self.throttle_rate_limit:
                raise ValueError(f"{key} must not exceed throttleRateLimit ({self.throttle_rate_limit})")
        if self.decode_request_deadline_ms >= self.api_timeout_seconds * 1000:
            raise ValueError("decodeRequestDeadlineMs must be shorter than apiTimeoutSeconds")
        return self

    @model_validator(mode="after")
    def _model_fits_the_functions(self) -> Settings:
        """The served model's recorded cost first (its message names the model and the limit), then
        the decode workers' minimum beside the function's own share."""
        self._check_model_cost()
        if self.memory_size - self.parent_mb < MIN_DECODE_MEMORY_MB * self.decode_workers:
            raise ValueError(
                f"memorySize {self.memory_size} MB leaves too little for the decode workers: "
                f"give it at least {self.parent_mb + MIN_DECODE_MEMORY_MB} MB"
            )
        return self

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

    @property
    def uncertain_rate(self) -> float:
        """``captureUncertainRate`` as a number: ``captureRate`` when left empty."""
        return float(self.capture_uncertain_rate) if self.capture_uncertain_rate else self.capture_rate

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
        return {spec.alias: spec.default for spec in cls.model_fields.values()}

    @classmethod
    def from_context(cls, node: Node) -> Settings:
        """Each setting the context gives (cdk.json's, then ``-c key=value``), the rest defaults."""
        keys = (spec.alias for spec in cls.model_fields.values())
        return cls(**{key: raw for key in keys if (raw := node.try_get_context(key)) is not None})


def _overlap(prefix: str, other: str) -> bool:
    """Whether a key could be under both prefixes (one starts with the other)."""
    return prefix.startswith(other) or other.startswith(prefix)


# --- Pydantic's errors as the sentences a user of ``cdk synth -c key=value`` needs.

# Field names by Python name and by context key: an error's location is either.
_FIELDS = {
    **{name: name for name in Settings.model_fields},
    **{spec.alias: name for name, spec in Settings.model_fields.items()},
}
# What a value of each type is, in words, when it could not even be read as one.
_KINDS = {int: "a whole number", float: "a number", str: "text"}


def explain(error: ValidationError) -> str:
    """The errors as sentences: ``memorySize must be a whole number, got 'abc'``."""
    return "; ".join(_sentence(detail) for detail in error.errors(include_url=False))


def _sentence(detail: ErrorDetails) -> str:
    """One error: a validator's own message as it is; a field's as its key, what it accepts, the value."""
    error = detail.get("ctx", {}).get("error")
    if isinstance(error, ValueError):
        return str(error)
    name = _FIELDS.get(str(detail["loc"][0])) if detail["loc"] else None
    if name is None:
        return f"{detail['loc'][0]} is not a setting" if detail["loc"] else detail["msg"]
    spec = Settings.model_fields[name]
    unreadable = detail["type"].endswith(("_parsing", "_type", "_from_float"))
    why = (spec.json_schema_extra or {}).get("why")
    because = f" ({why})" if why else ""
    return f"{spec.alias} must be {_accepted(spec, unreadable)}{because}, got {detail['input']!r}"


def _accepted(spec: FieldInfo, unreadable: bool) -> str:
    """What a field accepts, in words: its choices, its bounds (and kind if the value was not one)."""
    words = (spec.json_schema_extra or {}).get("allowed")
    if words:
        return str(words)
    if get_origin(spec.annotation) is Literal:
        return f"one of {get_args(spec.annotation)}"
    if spec.annotation is bool:
        return "true or false"
    kind, bounds = _KINDS.get(spec.annotation, "a value"), _bounds(spec)
    if not bounds:
        return kind
    return f"{kind} {bounds}" if unreadable else bounds


def _bounds(spec: FieldInfo) -> str:
    """``from 1 to 3``, ``at least 1``, ``above 0 and below 100``: a field's declared bounds."""
    limits = {k: getattr(m, k) for m in spec.metadata for k in ("ge", "gt", "le", "lt") if hasattr(m, k)}
    if "ge" in limits and "le" in limits:
        return f"from {limits['ge']} to {limits['le']}"
    low = f"at least {limits['ge']}" if "ge" in limits else f"above {limits['gt']}" if "gt" in limits else ""
    high = f"at most {limits['le']}" if "le" in limits else f"below {limits['lt']}" if "lt" in limits else ""
    return " and ".join(part for part in (low, high) if part)
