"""The model directory's ``manifest.json``, read and checked where the function starts (and at synth).

The manifest pins every file of the model directory by sha256, so a corrupted layer, a half-copied
image or a hand-edited model fails at cold start instead of answering wrong labels. Its fields are
checked by one pydantic model (``Manifest``); build tools write it (``layers.model.manifest_writer``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

MANIFEST_FILE = "manifest.json"
LABELS_FILE = "labels.json"
KERAS_FILE = "mobilenet_v2.keras"
TFLITE_FILE = "mobilenet_v2.tflite"


# Which file serves each backend and precision; a manifest may name others (``artifacts``).
DEFAULT_ARTIFACTS = {"keras": KERAS_FILE, "tflite": TFLITE_FILE}


def artifact(manifest: dict, kind: str) -> str:
    """The file of ``kind`` (``keras``, ``tflite``, ``tflite_int8``) in this model directory."""
    name = manifest.get("artifacts", {}).get(kind) or DEFAULT_ARTIFACTS.get(kind)
    if not name:
        raise ModelError(f"This model has no {kind} file: rebuild it with the option that adds it")
    return name


def labels(entries: list) -> list[tuple[str | None, str]]:
    """``labels.json`` entries as ``(class_id, label)``: ImageNet's ``[wnid, label]`` pairs, or plain
    label strings for your own classes (which have no id)."""
    return [(None, entry) if isinstance(entry, str) else (entry[0] or None, entry[1]) for entry in entries]


class ModelError(RuntimeError):
    """The model directory is missing or unusable: the function must not start."""


class IntegrityError(ModelError):
    """A model file does not match the checksum recorded in the manifest."""


class ManifestError(ModelError):
    """The manifest or ``labels.json`` is malformed or asks for what this service cannot serve; the
    message names the file and the field."""


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so a big model is not held twice in memory."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read(model_dir: Path) -> dict:
    """The manifest written by ``make model``, parsed; a clear error when the model was never built
    or the file is not a JSON object (``validate`` checks its fields)."""
    path = model_dir / MANIFEST_FILE
    if not path.is_file():
        raise ModelError(
            f"No model at {model_dir} ({MANIFEST_FILE} missing). Build it with `make model` "
            "(the weights come from $KERAS_HOME/models or ../shared/models) or set MODEL_DIR."
        )
    try:
        fields = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"{path}: not valid JSON ({error}); rebuild the model") from None
    if not isinstance(fields, dict):
        raise ManifestError(f"{path}: must be a JSON object, got {type(fields).__name__}")
    return fields


# What the serving code implements, so all a manifest may ask for: ``imaging.decode`` makes RGB
# 224x224 uint8 pixels, resized bilinear, and hands them to the model as they are: the model scales
# them itself (``layers.model.export.taking_pixels``). ``layers.model.manifest_writer`` writes these.
# A model exported before scaling moved into the graph (``LEGACY``) is refused, saying to re-export.
SIZE = {"height": 224, "width": 224, "channels": 3}
DTYPE = "uint8"
PREPROCESSING = {"color": "RGB", "resize": "bilinear", "scale": "inside the model"}
RE_EXPORT = (
    "a model exported before scaling moved inside it (it takes float32 pixels scaled by the caller); "
    "this service feeds uint8 pixels to a model that scales them itself: re-export it (`make model`, "
    "or `imgrec train` again)"
)
LEGACY = {("input", "dtype"): "float32", ("preprocessing", "scale"): "x / 127.5 - 1"}


def _size(value: int, info: ValidationInfo) -> int:
    if value != SIZE[info.field_name]:
        raise ValueError(
            f"is {value}, but this service feeds the model {SIZE['height']}x{SIZE['width']}x"
            f"{SIZE['channels']} images only (imaging.decode): export the model at that input size"
        )
    return value


def _served(section: str, supported: dict[str, str]) -> Callable[[str, ValidationInfo], str]:
    def check(value: str, info: ValidationInfo) -> str:
        name = info.field_name or ""
        if LEGACY.get((section, name)) == value:
            raise ValueError(f"is {value!r}: {RE_EXPORT}")
        if value != supported[name]:
            raise ValueError(
                f"is {value!r}, which this service does not implement: it serves {supported[name]!r} "
                f"only (imaging.decode, then the model's own scaling); export with that preprocessing"
            )
        return value

    return check


Text = Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1)]
Size = Annotated[StrictInt, AfterValidator(_size)]
Number = Annotated[float, Field(strict=True)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class Input(BaseModel):
    """What the model takes: one image's shape and the pixels' type."""

    model_config = ConfigDict(extra="forbid", strict=True)
    height: Size
    width: Size
    channels: Size
    dtype: Annotated[StrictStr, AfterValidator(_served("input", {"dtype": DTYPE}))]


class Preprocessing(BaseModel):
    """What is done to the pixels between the photo and the model's input tensor, and by whom."""

    model_config = ConfigDict(extra="forbid", strict=True)
    color: Annotated[StrictStr, AfterValidator(_served("preprocessing", PREPROCESSING))]
    resize: Annotated[StrictStr, AfterValidator(_served("preprocessing", PREPROCESSING))]
    scale: Annotated[StrictStr, AfterValidator(_served("preprocessing", PREPROCESSING))]


class Output(_Section):
    classes: StrictInt


class Calibration(_Section):
    temperature: Number

    @field_validator("temperature")
    @classmethod
    def fitted(cls, value: float) -> float:
        if not math.isfinite(value) or not 0.05 <= value <= 20:
            raise ValueError(f"is {value!r}; a fitted temperature is a finite number from 0.05 to 20")
        return value


class InDomain(_Section):
    threshold: Number

    @field_validator("threshold")
    @classmethod
    def fitted(cls, value: float) -> float:
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"is {value!r}; a fitted threshold is a positive distance")
        return value


class FileEntry(_Section):
    sha256: Annotated[StrictStr, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class Manifest(_Section):
    """A model directory's ``manifest.json``: what it must state for this service to serve it.
    Other fields (``source``, ``card``, ``cost``, ``built_with`` ...) are kept as they are."""

    name: Text
    version: Text
    input: Input
    preprocessing: Preprocessing
    output: Output | None = None
    calibration: Calibration | None = None
    in_domain: InDomain | None = None
    artifacts: dict[StrictStr, StrictStr] = {}
    files: dict[StrictStr, FileEntry]

    @field_validator("output", "calibration", "in_domain", mode="before")
    @classmethod
    def absent_not_null(cls, value: object) -> object:
        """Optional sections are left out, never ``null`` (a null one reads as absent everywhere
        else: it would pass here and fail at cold start)."""
        if value is None:
            raise ValueError("is null; leave the field out when the model has none")
        return value

    @model_validator(mode="after")
    def pins_what_it_serves(self) -> Manifest:
        for name in sorted({LABELS_FILE, *self.artifacts.values()}):
            if name not in self.files:
                raise ValueError(f"field 'files' does not list {name} (no sha256 for it)")
        return self


# pydantic's type errors, in the type names a manifest's reader knows (JSON's, as Python calls them)
EXPECTED = {
    "int_type": "int",
    "string_type": "str",
    "model_type": "dict",
    "dict_type": "dict",
    "float_type": "int or float",
}


def _sentence(error: dict) -> str:
    """One pydantic error as the rest of a sentence that starts with the file's name."""
    where = ".".join(str(part) for part in error["loc"])
    value, kind = error.get("input"), error["type"]
    if kind == "missing":
        told = "is missing"
    elif kind in EXPECTED:
        told = f"must be {EXPECTED[kind]}, got {type(value).__name__} {value!r}"
    elif kind == "string_too_short":
        told = "is empty"
    elif kind == "string_pattern_mismatch":
        told = f"is not a hex sha256: {value!r}"
    elif kind == "extra_forbidden":
        told = f"is {value!r}: not a field this service knows (nothing implements it)"
    elif kind == "value_error":
        told = str(error["ctx"]["error"])
    else:
        told = error["msg"]
    if where == "artifacts" or where.startswith("artifacts."):
        return "field 'artifacts' must map a kind to a file name"
    return f"field {where!r} {told}" if where else told


def _check_schema(path: Path, fields: dict) -> None:
    """``fields`` against ``Manifest``: the first problem as ``ManifestError`` naming the file and field."""
    try:
        Manifest.model_validate(fields)
    except ValidationError as invalid:
        raise ManifestError(f"{path}: {_sentence(invalid.errors()[0])}") from None
    for name in fields["files"]:
        inside(path.parent, name)


def inside(model_dir: Path, name: str) -> Path:
    """The file ``name`` of the model directory, refused (``ManifestError``) unless it resolves inside
    it: a manifest names files, it never points at the rest of the file system (an absolute path, a
    ``..``, or a symlink that leaves the folder would serve a file nobody reviewed as the model)."""
    relative = Path(name)
    if not name or relative.is_absolute() or ".." in relative.parts or "\\" in name:
        raise ManifestError(
            f"{model_dir / MANIFEST_FILE}: {name!r} is not a file name inside the model directory"
        )
    path = model_dir / relative
    if not path.resolve().is_relative_to(model_dir.resolve()):
        raise ManifestError(f"{path} leaves the model directory (a symlink to {path.resolve()})")
    return path


def read_labels(model_dir: Path, fields: dict) -> list[tuple[str | None, str]]:
    """``labels.json`` parsed and checked (a non-empty list of labels or ``[id, label]`` pairs), and,
    when the manifest states ``output.classes``, as many as that."""
    path = inside(model_dir, LABELS_FILE)
    try:
        entries = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"{path}: not a readable JSON list of labels ({error})") from None
    if not isinstance(entries, list) or not entries:
        raise ManifestError(f"{path}: must be a non-empty JSON list of labels")
    for index, entry in enumerate(entries):
        pair = isinstance(entry, list) and len(entry) == 2 and all(isinstance(e, str) for e in entry)
        if not (isinstance(entry, str) and entry) and not (pair and entry[1]):
            raise ManifestError(
                f"{path}: entry {index} must be a label or an [id, label] pair, got {entry!r}"
            )
    classes = fields.get("output", {}).get("classes")
    if classes is not None and classes != len(entries):
        raise ManifestError(
            f"{path} has {len(entries)} labels but {model_dir / MANIFEST_FILE} field "
            f"'output.classes' says {classes}: the labels must match the model's outputs one to one"
        )
    return labels(entries)


def validate(model_dir: Path, check_files: list[str] | None = None) -> dict:
    """The manifest, checked without loading the model (so ``cdk synth`` can run it): its fields and
    types, the input and preprocessing this service implements, ``check_files`` (default: every
    listed file; the function ships without the ``.keras`` file) present with their sha256, and
    ``labels.json``. Raises
    ``ManifestError`` (or ``IntegrityError``) naming the file and the field.

    What needs the model itself (its input shape and output size) ``model.load_classifier`` checks.
    """
    fields = read_checked(model_dir)
    verify(model_dir, fields, list(fields["files"]) if check_files is None else check_files)
    read_labels(model_dir, fields)
    return fields


def read_checked(model_dir: Path) -> dict:
    """The manifest, its fields and types checked (no file hashed, nothing else read)."""
    fields = read(model_dir)
    _check_schema(model_dir / MANIFEST_FILE, fields)
    return fields


def verify(model_dir: Path, manifest: dict, file_names: list[str]) -> None:
    """Check the sha256 of each named file against the manifest; raise on any mismatch."""
    files = manifest.get("files", {})
    for name in file_names:
        expected = files.get(name, {}).get("sha256")
        if not expected:
            raise IntegrityError(f"{name} is not listed in {model_dir / MANIFEST_FILE}")
        path = inside(model_dir, name)
        if not path.is_file():
            raise IntegrityError(
                f"{path} is listed in {model_dir / MANIFEST_FILE} (field 'files') but missing"
            )
        actual = sha256_of(path)
        if actual != expected:
            raise IntegrityError(
                f"{path} has sha256 {actual} but the manifest says {expected}: rebuild the model"
            )
