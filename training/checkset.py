"""The check set: a few labelled photos a model directory carries for the pre-traffic quality gate.

Before alias ``live`` sends a single request to a new version, the pre-traffic hook
(``hooks/pre_traffic.py``) sends it every check photo, as the API would, and lets traffic shift only
when (1) its accuracy on them is at least the model's expected accuracy (the card's validation
figure; without a card, the accuracy measured here) minus a tolerance, and (2) for each photo, the
probability it gives the recorded top-1 class is within a tolerance of what the model answered here,
when it was built. (1) stops a model that is worse than its card says; (2) stops a build that is
not the model that was evaluated: shuffled labels, a wrong scaling, other weights.

Layout, in the model directory (not pinned by ``manifest.json``: the function never reads it)::

    check/check.json     what is below, the model it was recorded with, the recordings
    check/000-ants.jpg   the photos, JPEG, at most MAX_SIDE pixels a side (the hook's payloads)

Recordings are made with the serving code (the decoder and LiteRT, in this process), one per
precision the directory serves: ``fp32`` (the fp32 ``.tflite``; the Keras backend agrees with it
within the card's ``tflite_vs_keras``) and ``int8`` when the directory has one.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

# Reading a check set (``read``: ``cdk synth``, with the CDK app's dependencies only) needs the
# standard library and the manifest; writing one imports NumPy, Pillow and the serving code.
from handler.recognition import manifest as model_manifest

if TYPE_CHECKING:
    import numpy as np

CHECK_DIR = "check"
CHECK_FILE = "check.json"
FORMAT = 1
# The hook sends each photo in one invocation (6 MB payloads) and all of them within its timeout;
# its asset carries them all.
MIN_PHOTOS = 2
MAX_PHOTOS = 64
MAX_SIDE = 512
MAX_PHOTO_BYTES = 512 * 1024
MAX_TOTAL_BYTES = 16 * 1024 * 1024
TOP_K = 5
# The check photos are the user's own, decoded in this process (not the function's sandbox).
DECODE_MAX_BYTES = 64 * 1024 * 1024
DECODE_MAX_PIXELS = 100_000_000


class CheckSetError(ValueError):
    """The model directory has no usable check set; the message says why and how to make one."""


def precisions(fields: dict) -> list[str]:
    """The precisions a model directory serves (and the check set records)."""
    return ["fp32", *(["int8"] if fields.get("artifacts", {}).get("tflite_int8") else [])]


def model_identity(model_dir: Path, fields: dict) -> dict:
    """What a recording was made with: the model's name, version and pinned files."""
    files = {name: entry["sha256"] for name, entry in sorted(fields.get("files", {}).items())}
    return {"name": fields["name"], "version": fields["version"], "files": files}


def as_check_photo(data: bytes) -> bytes:
    """The photo as the hook will send it: the file itself when it is a small JPEG, else a JPEG of at
    most ``MAX_SIDE`` pixels a side (quality 90)."""
    from PIL import Image

    if data[:3] == b"\xff\xd8\xff" and len(data) <= MAX_PHOTO_BYTES:
        with Image.open(io.BytesIO(data)) as image:
            if max(image.size) <= MAX_SIDE:
                return data
    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGB")
        image.thumbnail((MAX_SIDE, MAX_SIDE))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=90)
        return out.getvalue()


def write(
    model_dir: Path,
    photos: Sequence[tuple[Path, str]],
    source: str,
    expected_accuracy: float | None = None,
) -> dict:
    """Write ``model_dir/check`` from ``photos`` (path, true label) and return ``check.json``.

    ``expected_accuracy``: the figure the gate holds the model to; None: the card's (test, else
    validation accuracy), or, for a model without one (the ImageNet export), the accuracy measured
    here on these photos."""
    fields = model_manifest.validate(model_dir)
    if expected_accuracy is None:
        expected_accuracy = card_accuracy(fields)
    classes = [label for _, label in model_manifest.read_labels(model_dir, fields)]
    if not MIN_PHOTOS <= len(photos) <= MAX_PHOTOS:
        raise CheckSetError(f"a check set has {MIN_PHOTOS} to {MAX_PHOTOS} photos, not {len(photos)}")
    unknown = sorted({label for _, label in photos} - set(classes))
    if unknown:
        raise CheckSetError(f"not classes of this model: {', '.join(unknown[:5])}")
    folder = model_dir / CHECK_DIR
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    entries = []
    for index, (path, label) in enumerate(photos):
        data = as_check_photo(path.read_bytes())
        name = f"{index:03d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', label)[:40]}.jpg"
        (folder / name).write_bytes(data)
        entries.append({"file": name, "label": label, "sha256": hashlib.sha256(data).hexdigest()})
    recorded = {precision: _record(model_dir, folder, entries, precision) for precision in precisions(fields)}
    accuracy = {
        precision: sum(top[0]["label"] == e["label"] for top, e in zip(tops, entries, strict=True))
        / len(entries)
        for precision, tops in recorded.items()
    }
    for index, entry in enumerate(entries):
        entry["recorded"] = {precision: tops[index] for precision, tops in recorded.items()}
    document = {
        "format": FORMAT,
        "model": model_identity(model_dir, fields),
        "source": source,
        "expected_accuracy": round(accuracy["fp32"] if expected_accuracy is None else expected_accuracy, 4),
        "accuracy_when_recorded": accuracy,
        "photos": entries,
    }
    (folder / CHECK_FILE).write_text(json.dumps(document, indent=1) + "\n")
    return document


def _record(model_dir: Path, folder: Path, entries: list[dict], precision: str) -> list[list[dict]]:
    """Each photo's top classes as the serving code answers them, at ``precision``."""
    import numpy as np

    from handler.recognition import imaging
    from handler.recognition import model as serving

    limits = imaging.DecodeLimits(max_bytes=DECODE_MAX_BYTES, max_pixels=DECODE_MAX_PIXELS)
    classifier = serving.load_classifier(model_dir, "litert", threads=2, precision=precision)
    pixels = np.stack([imaging.to_pixels((folder / e["file"]).read_bytes(), limits) for e in entries])
    ranked = classifier.classify(pixels, top_k=min(TOP_K, len(classifier.labels)))
    return [[{"label": p.label, "probability": round(p.probability, 6)} for p in top] for top in ranked]


def read(model_dir: Path, precision: str = "fp32") -> dict:
    """The check set of ``model_dir``, checked: present, whole, recorded with this very model (same
    files) at ``precision``, within the hook's limits. Raises ``CheckSetError`` saying what to do."""
    how = (
        f"make one with `imgrec check-set {model_dir} PHOTOS` (a folder per class, {MIN_PHOTOS}-{MAX_PHOTOS} "
        "labelled photos the model was not trained on); `imgrec train` keeps one from its test split"
    )
    path = model_dir / CHECK_DIR / CHECK_FILE
    if not path.is_file():
        raise CheckSetError(
            f"{model_dir} has no check set ({CHECK_DIR}/{CHECK_FILE}) for the quality gate: {how}"
        )
    try:
        document = json.loads(path.read_text())
        photos = document["photos"]
        expected = document["expected_accuracy"]
        if document.get("format") != FORMAT or not isinstance(photos, list) or not 0 <= expected <= 1:
            raise ValueError("unknown format")
    except (ValueError, KeyError, TypeError) as error:
        raise CheckSetError(f"{path} is not a check set ({error}): {how}") from None
    fields = model_manifest.read(model_dir)
    if document.get("model") != model_identity(model_dir, fields):
        raise CheckSetError(f"{path} was recorded with another model (or another build of it): {how}")
    if not MIN_PHOTOS <= len(photos) <= MAX_PHOTOS:
        raise CheckSetError(f"{path}: {len(photos)} photos; the gate takes {MIN_PHOTOS} to {MAX_PHOTOS}")
    classes = {label for _, label in model_manifest.read_labels(model_dir, fields)}
    total = 0
    for entry in photos:
        photo = model_dir / CHECK_DIR / Path(str(entry.get("file", ""))).name
        data = photo.read_bytes() if photo.is_file() else b""
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            raise CheckSetError(f"{photo} is missing or changed since it was recorded: {how}")
        if len(data) > MAX_PHOTO_BYTES:
            raise CheckSetError(
                f"{photo}: {len(data):,} bytes; a check photo is sent whole, at most {MAX_PHOTO_BYTES:,}"
            )
        if precision not in entry.get("recorded", {}):
            raise CheckSetError(
                f"{path} has no {precision} recordings (the deployment serves {precision}): {how}"
            )
        if not _recording_ok(entry["recorded"][precision], classes) or entry.get("label") not in classes:
            raise CheckSetError(
                f"{path}: the entry of {photo.name} is not a recording of this model's classes: {how}"
            )
        total += len(data)
    if total > MAX_TOTAL_BYTES:
        raise CheckSetError(f"{path}: {total:,} bytes of photos; the gate takes at most {MAX_TOTAL_BYTES:,}")
    return document


def _recording_ok(top: object, classes: set[str]) -> bool:
    """A recording is a non-empty ranked list of {label, probability} of the model's classes."""
    return (
        isinstance(top, list)
        and bool(top)
        and all(
            isinstance(p, dict)
            and p.get("label") in classes
            and isinstance(p.get("probability"), (int, float))
            and 0 <= p["probability"] <= 1
            for p in top
        )
    )


def card_accuracy(fields: dict) -> float | None:
    """The accuracy a model's card reports: its test split's, else its validation split's."""
    card = fields.get("card", {})
    for split in ("test", "validation"):
        accuracy = card.get(split, {}).get("accuracy")
        if isinstance(accuracy, (int, float)):
            return float(accuracy)
    return None


def photos_in(folder: Path) -> list[tuple[Path, str]]:
    """``folder``'s photos as (path, label): one sub-folder per class, in name order."""
    return [
        (photo, class_dir.name)
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir())
        for photo in sorted(class_dir.iterdir())
        if photo.is_file() and not photo.name.startswith(".")
    ]


def pick(labels: np.ndarray, most: int, seed: int) -> list[int]:
    """Up to ``most`` indexes of ``labels``, every class in turn (seeded): a check set drawn from a
    held-back split keeps its class balance, or better for rare classes."""
    import numpy as np

    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)]
    picked: list[int] = []
    while len(picked) < most and any(queues):
        for queue in queues:
            if queue and len(picked) < most:
                picked.append(int(queue.pop()))
    return sorted(picked)
