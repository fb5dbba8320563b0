"""The model directory's ``manifest.json``: one place that writes it (build) and checks it (runtime).

The manifest pins every file of the model directory by sha256, so a corrupted layer, a half-copied
image or a hand-edited model fails at cold start instead of answering wrong labels.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

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


def replace_folder(staging: Path, out: Path) -> None:
    """``out`` becomes ``staging`` (a folder fully written beside it: a model directory, an export);
    an earlier one there, with whatever folders it holds (``check/``, ``evaluation/``), is moved
    aside first and removed only once the new one is in place: an interruption leaves one of the
    two, never neither."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=".replaced-", dir=out.parent))
        os.replace(out, old / out.name)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so a big model is not held twice in memory."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write(model_dir: Path, fields: dict, file_names: list[str]) -> dict:
    """Write ``fields`` plus the size and sha256 of each file as the manifest; return it."""
    manifest = dict(fields)
    manifest["files"] = {
        name: {"sha256": sha256_of(model_dir / name), "bytes": (model_dir / name).stat().st_size}
        for name in file_names
    }
    (model_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


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
# 224x224 pixels and ``imaging.scale`` maps them to [-1, 1] (Keras ``mode="tf"``, MobileNetV2's).
SUPPORTED_INPUT = {"height": 224, "width": 224, "channels": 3}
SUPPORTED_PREPROCESSING = {"color": "RGB", "scale": "x / 127.5 - 1", "keras_mode": "tf"}


def _field(path: Path, fields: dict, name: str, kind: type | tuple[type, ...], prefix: str = ""):
    """``fields[name]``, which must exist and be of ``kind``; the error names the file and field."""
    where = f"{prefix}{name}"
    if name not in fields:
        raise ManifestError(f"{path}: field {where!r} is missing")
    value = fields[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int in Python, never a size or a count in a manifest
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise ManifestError(
            f"{path}: field {where!r} must be {expected}, got {type(value).__name__} {value!r}"
        )
    if isinstance(value, str) and not value.strip():
        raise ManifestError(f"{path}: field {where!r} is empty")
    return value


def _check_schema(path: Path, fields: dict) -> None:
    _field(path, fields, "name", str)
    _field(path, fields, "version", str)
    shape = _field(path, fields, "input", dict)
    for key, supported in SUPPORTED_INPUT.items():
        value = _field(path, shape, key, int, "input.")
        if value != supported:
            raise ManifestError(
                f"{path}: field 'input.{key}' is {value}, but this service feeds the model "
                f"{SUPPORTED_INPUT['height']}x{SUPPORTED_INPUT['width']}x{SUPPORTED_INPUT['channels']} "
                "images only (imaging.decode): export the model at that input size"
            )
    if shape.get("dtype", "float32") != "float32":
        raise ManifestError(f"{path}: field 'input.dtype' is {shape['dtype']!r}; only float32 is served")
    steps = _field(path, fields, "preprocessing", dict)
    if not {"scale", "keras_mode"} & steps.keys():
        raise ManifestError(
            f"{path}: field 'preprocessing.keras_mode' is missing (nor is there 'preprocessing.scale'): "
            "the pixel scaling the model expects must be stated"
        )
    for key, supported in SUPPORTED_PREPROCESSING.items():
        if key in steps and steps[key] != supported:
            raise ManifestError(
                f"{path}: field 'preprocessing.{key}' is {steps[key]!r}, which this service does "
                f"not implement: it serves {key} {supported!r} only (imaging.scale, MobileNetV2's "
                "[-1, 1] scaling); retrain or export with that preprocessing"
            )
    if "output" in fields:
        _field(path, _field(path, fields, "output", dict), "classes", int, "output.")
    if "calibration" in fields:
        calibration = _field(path, fields, "calibration", dict)
        temperature = _field(path, calibration, "temperature", (int, float), "calibration.")
        if not math.isfinite(temperature) or not 0.05 <= temperature <= 20:
            raise ManifestError(
                f"{path}: field 'calibration.temperature' is {temperature!r}; a fitted temperature is "
                "a finite number from 0.05 to 20"
            )
    if "in_domain" in fields:
        detector = _field(path, fields, "in_domain", dict)
        threshold = _field(path, detector, "threshold", (int, float), "in_domain.")
        if not math.isfinite(threshold) or threshold <= 0:
            raise ManifestError(
                f"{path}: field 'in_domain.threshold' is {threshold!r}; a fitted threshold is a positive "
                "distance"
            )
    artifacts = fields.get("artifacts", {})
    if not isinstance(artifacts, dict) or not all(isinstance(v, str) for v in artifacts.values()):
        raise ManifestError(f"{path}: field 'artifacts' must map a kind to a file name")
    files = _field(path, fields, "files", dict)
    for name, entry in files.items():
        digest = _field(path, {name: entry}, name, dict, "files.")
        sha = _field(path, digest, "sha256", str, f"files.{name}.")
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ManifestError(f"{path}: field 'files.{name}.sha256' is not a hex sha256: {sha!r}")
    for name in {LABELS_FILE, *artifacts.values()}:
        if name not in files:
            raise ManifestError(f"{path}: field 'files' does not list {name} (no sha256 for it)")
    for name in files:
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
