"""Writing a model directory's ``manifest.json`` (build time: the export, training, bad builds).

The function only reads and checks manifests (``handler.recognition.manifest``); what writes them
and swaps a finished model directory into place lives here, beside the export, and never ships.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from handler.recognition import manifest as served
from handler.recognition.manifest import MANIFEST_FILE, sha256_of

# What every model this project builds takes and does (``layers.model.export.taking_pixels``):
# uint8 RGB pixels as ``imaging.decode`` makes them, scaled inside the graph. The serving side's
# ``manifest.Input`` and ``manifest.Preprocessing`` accept exactly this (defined there, once).
INPUT = {**served.SIZE, "dtype": served.DTYPE}
PREPROCESSING = served.PREPROCESSING


def write(model_dir: Path, fields: dict, file_names: list[str]) -> dict:
    """Write ``fields`` plus the size and sha256 of each file as the manifest; return it."""
    manifest = dict(fields)
    manifest["files"] = {
        name: {"sha256": sha256_of(model_dir / name), "bytes": (model_dir / name).stat().st_size}
        for name in file_names
    }
    (model_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


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
