"""The model directory's ``manifest.json``: one place that writes it (build) and checks it (runtime).

The manifest pins every file of the model directory by sha256, so a corrupted layer, a half-copied
image or a hand-edited model fails at cold start instead of answering wrong labels.
"""

from __future__ import annotations

import hashlib
import json
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
    """The manifest written by ``make model``; a clear error when the model was never built."""
    path = model_dir / MANIFEST_FILE
    if not path.is_file():
        raise ModelError(
            f"No model at {model_dir} ({MANIFEST_FILE} missing). Build it with `make model` "
            "(the weights come from $KERAS_HOME/models; see README) or set MODEL_DIR."
        )
    return json.loads(path.read_text())


def verify(model_dir: Path, manifest: dict, file_names: list[str]) -> None:
    """Check the sha256 of each named file against the manifest; raise on any mismatch."""
    files = manifest.get("files", {})
    for name in file_names:
        expected = files.get(name, {}).get("sha256")
        if not expected:
            raise IntegrityError(f"{name} is not listed in {model_dir / MANIFEST_FILE}")
        path = model_dir / name
        if not path.is_file():
            raise IntegrityError(f"{path} is listed in the manifest but missing")
        actual = sha256_of(path)
        if actual != expected:
            raise IntegrityError(
                f"{path} has sha256 {actual} but the manifest says {expected}: rebuild the model"
            )
