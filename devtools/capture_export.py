"""``imgrec dataset export s3://BUCKET/PREFIX --out DIR``: captured predictions -> a trainable folder.

The function stores a sample of what it answered (``CAPTURE_RATE``) under the capture prefix:
``{prefix}{model}/{version}/{yyyy}/{mm}/{dd}/{prediction_id}.{ext}`` (the image), ``….json`` (the
answer) and, once someone said what the photo really shows (``POST /feedback``),
``….feedback.json``. This lists everything under the given prefix (any model, version and date
below it) and writes:

- ``DIR/<feedback label>/<prediction id, filename-safe>.<ext>``: every captured image with a
  trusted correction, in the folder of its label: a data folder for ``imgrec train DATA EXPORT``;
- ``DIR/review.csv``: the uncertain answers nobody (trusted) labelled yet (a person should look);
- ``DIR/.imgrec-export.json``: the marker that makes DIR an export (a later export may replace it;
  no other non-empty folder is written into) and the summary.

``review.csv`` and the marker are top-level files: the dataset loader reads only class sub-folders
(and skips names starting with a dot), so neither becomes a class or a photo. A capture that cannot
be exported (its image missing, a label that is not a safe folder name, unreadable JSON) is
counted with its reason, never a crash. Nothing is written outside DIR: the export is built in a
staging folder beside it and moved into place once complete.

Corrections are trusted by who sent them (``choose_correction``): a ``.feedback.json`` that names
its caller (API Gateway authenticated it: ``handler.answers.capture.trusted``) is used. An
anonymous one (``.anonymous-feedback.json``, where ``feedbackAuth=none`` allowed it) and a
``.feedback.json`` without a caller (written before callers were recorded, or by hand) are only
counted, unless ``include_anonymous`` (``--include-anonymous``); a trusted correction always wins
over them. The summary counts each kind, used or left out.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import tempfile
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from handler.answers import capture as capture_layout
from layers.model import manifest_writer

MARKER = ".imgrec-export.json"
REVIEW = "review.csv"
REVIEW_COLUMNS = ("prediction_id", "image", "model", "version", "label", "probability", "time")
# The capture layout is the function's (handler.answers.capture): the same suffixes, the same types.
FEEDBACK_SUFFIX = "." + capture_layout.FEEDBACK_SUFFIX
ANONYMOUS_FEEDBACK_SUFFIX = "." + capture_layout.ANONYMOUS_FEEDBACK_SUFFIX
ANSWER_SUFFIX = "." + capture_layout.ANSWER_SUFFIX
IMAGE_EXTENSIONS = capture_layout.IMAGE_EXTENSIONS
MAX_IMAGE_BYTES = 50 * 1024 * 1024  # what training reads (training.dataset.LIMITS)
MAX_JSON_BYTES = 1024 * 1024  # an answer or feedback record is a few hundred bytes
MAX_LABEL = 100
RESERVED = {REVIEW.lower(), MARKER.lower()}
# Folder names Windows cannot create (an export copied to a laptop must still be a data folder).
WINDOWS_FORBIDDEN = set('<>:"|?*')
WINDOWS_RESERVED = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"COM{n}" for n in range(1, 10)),
    *(f"LPT{n}" for n in range(1, 10)),
}


class ExportError(Exception):
    """The export cannot start (a bad URL, an ``--out`` that is not an export); nothing was written."""


@dataclass
class Capture:
    """One prediction's stored objects (keys), grouped by their prediction id."""

    prediction_id: str
    image: str | None = None
    image_bytes: int = 0
    answer: str | None = None
    feedback: str | None = None
    anonymous_feedback: str | None = None
    stem: str = ""  # its keys without their suffixes


# The kinds of correction, by who sent it (see the module).
TRUSTED, ANONYMOUS, UNTRUSTED = "trusted", "anonymous", "untrusted"


@dataclass
class Summary:
    source: str
    out: str
    captures: int = 0
    exported: dict[str, int] = field(default_factory=dict)  # per label
    to_review: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # per reason
    skipped_captures: list[dict[str, str]] = field(default_factory=list)  # prediction id, reason
    # Corrections found, per kind (trusted, anonymous, untrusted: a .feedback.json without a caller),
    # whether the anonymous and untrusted ones were used, and how many photos they exported.
    corrections: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys((TRUSTED, ANONYMOUS, UNTRUSTED), 0)
    )
    include_anonymous: bool = False
    exported_without_caller: int = 0


# --- Listing: the capture layout.


def split_key(key: str) -> tuple[str, str] | None:
    """``(capture stem, kind)`` of a capture object's key (kind: ``image``, ``answer``,
    ``feedback`` or ``anonymous_feedback``); None for any other object. The stem is the key without
    its suffix; its last segment is the prediction id (which may hold dots: a version ``1.0.0``)."""
    if key.endswith(ANONYMOUS_FEEDBACK_SUFFIX):
        return key[: -len(ANONYMOUS_FEEDBACK_SUFFIX)], "anonymous_feedback"
    if key.endswith(FEEDBACK_SUFFIX):
        return key[: -len(FEEDBACK_SUFFIX)], "feedback"
    if key.endswith(ANSWER_SUFFIX):
        return key[: -len(ANSWER_SUFFIX)], "answer"
    stem, dot, extension = key.rpartition(".")
    if dot and extension.lower() in IMAGE_EXTENSIONS and "/" not in extension:
        return stem, "image"
    return None


def is_capture_stem(stem: str) -> bool:
    """Whether ``stem`` (a key without its suffix) is where the function stores a capture: its
    last segment a prediction id, and the key exactly the one that id gives (so ``X.jpg`` and
    ``X.feedback.json`` someone else put below the prefix are not taken for a capture)."""
    name = stem.rpartition("/")[2]
    try:
        pid = capture_layout.PredictionId.parse(name)
    except capture_layout.PredictionIdError:
        return False
    expected = pid.key("", "x")[: -len(".x")]
    return stem.endswith("/" + expected) or stem == expected


def captures(client, bucket: str, prefix: str) -> tuple[list[Capture], int]:
    """Every capture under ``prefix`` (all pages of the listing), in key order, and how many listed
    objects are not part of one."""
    found: dict[str, Capture] = {}
    others = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            parsed = split_key(item["Key"])
            if parsed is None or not parsed[0].rpartition("/")[2]:
                others += 1
                continue
            stem, kind = parsed
            if not is_capture_stem(stem):
                others += 1
                continue
            capture = found.setdefault(stem, Capture(prediction_id=stem.rpartition("/")[2], stem=stem))
            if kind == "image":
                capture.image, capture.image_bytes = item["Key"], int(item.get("Size", 0))
            else:
                setattr(capture, kind, item["Key"])
    return [found[stem] for stem in sorted(found)], others


def read_json(client, bucket: str, key: str, kind: type = dict) -> Any:
    """A small JSON document of type ``kind`` (an object by default) stored at ``key``; None when it
    cannot be read as one."""
    from botocore.exceptions import ClientError

    try:
        data = client.get_object(Bucket=bucket, Key=key)["Body"].read(MAX_JSON_BYTES + 1)
        if len(data) > MAX_JSON_BYTES:
            return None
        document = json.loads(data)
    except (ValueError, RecursionError, ClientError):  # not JSON (UnicodeDecodeError too), gone
        return None
    return document if isinstance(document, kind) else None


# --- Names: a label becomes a folder, a prediction id a file name.


def safe_label(label: object) -> str | None:
    """``label`` if it can be a class folder's name inside the export: a non-empty string of at
    most 100 characters, no path separator, no control character, not hidden (a leading dot is
    skipped by the dataset loader: ``.``, ``..``, ``.git``), no surrounding spaces, and not the name
    of the export's own files. None otherwise."""
    if not isinstance(label, str) or not label or len(label) > MAX_LABEL or label != label.strip():
        return None
    if label.startswith((".", "-")) or "/" in label or "\\" in label:
        return None
    if any(unicodedata.category(char).startswith("C") for char in label):
        return None
    if label.lower() in RESERVED or label.endswith((".", " ")) or set(label) & WINDOWS_FORBIDDEN:
        return None
    if label.split(".")[0].upper() in WINDOWS_RESERVED:
        return None
    return label


def safe_file_name(prediction_id: str) -> str:
    """The prediction id with every character other than ``A-Za-z0-9._-`` as ``_`` (``:`` and the
    quoting ``%`` included); a long one keeps its start and a hash of the whole id."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", prediction_id).lstrip(".") or "capture"
    if len(name) > 160:
        name = f"{name[:120]}_{hashlib.sha256(prediction_id.encode()).hexdigest()[:32]}"
    return name


# --- The export folder.


def check_out(out: Path) -> None:
    """``out`` may be new, an empty folder or an earlier export (its marker file); never a link, a
    file or a folder of other things."""
    if out.is_symlink():
        raise ExportError(f"--out {out} is a link: name the folder itself.")
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file: name a new folder (or an earlier export).")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ExportError(
            f"--out {out} holds files and is not an earlier export (no {MARKER}): name a new or empty "
            "folder; nothing was written."
        )


def parse_url(url: str) -> tuple[str, str]:
    from devtools.backfill import parse_url as parse

    try:
        return parse(url)
    except ValueError as error:
        raise ExportError(str(error)) from None


def _skip(summary: Summary, capture: Capture, reason: str) -> None:
    summary.skipped[reason] = summary.skipped.get(reason, 0) + 1
    summary.skipped_captures.append({"prediction_id": capture.prediction_id, "why": reason})


def choose_correction(
    client, bucket: str, capture: Capture, include_anonymous: bool, tally: dict[str, int]
) -> tuple[dict | None, str | None]:
    """(the correction to use for ``capture``, its kind), or (None, why not: None when it has no
    correction to use, else a skip reason). Its trusted correction; with ``include_anonymous``,
    else its anonymous one, else a ``.feedback.json`` without a caller. Each correction found is
    counted in ``tally`` by kind, used or not; an anonymous one left out is not even read."""
    candidates: list[tuple[str, str]] = []  # (kind, key), in the order they are used
    if capture.feedback:
        record = read_json(client, bucket, capture.feedback)
        if record is None:
            tally[UNTRUSTED] += 1  # nobody can tell who wrote it
            if capture.anonymous_feedback:
                tally[ANONYMOUS] += 1
            return None, "unreadable feedback JSON"
        if capture_layout.trusted(record):
            tally[TRUSTED] += 1
            if capture.anonymous_feedback:
                tally[ANONYMOUS] += 1  # never in a trusted one's place
            return record, TRUSTED
        tally[UNTRUSTED] += 1
        candidates.append((UNTRUSTED, capture.feedback))
    if capture.anonymous_feedback:
        tally[ANONYMOUS] += 1
        candidates.insert(0, (ANONYMOUS, capture.anonymous_feedback))
    if not include_anonymous or not candidates:
        return None, None
    for kind, key in candidates:
        record = read_json(client, bucket, key)
        if record is not None:
            return record, kind
    return None, "unreadable feedback JSON"


def export(
    url: str, out: Path, endpoint_url: str | None = None, client=None, include_anonymous: bool = False
) -> Summary:
    """Export the captures under ``url`` into ``out`` (see the module); return the summary.
    ``include_anonymous``: also use corrections without an authenticated caller."""
    from devtools.backfill import client_for, spreadsheet_safe

    bucket, prefix = parse_url(url)
    check_out(out)
    client = client or client_for(endpoint_url)
    listed, _ = captures(client, bucket, prefix)
    summary = Summary(source=url, out=str(out), captures=len(listed), include_anonymous=include_anonymous)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    try:
        exported: Counter[str] = Counter()
        review: list[dict[str, object]] = []
        known: dict[str, list | None] = {}  # labels.json per model version
        for capture in listed:
            feedback, kind = choose_correction(
                client, bucket, capture, include_anonymous, summary.corrections
            )
            if feedback is None and kind is not None:
                _skip(summary, capture, kind)
                continue
            if feedback is not None:
                label = _export_one(client, bucket, capture, feedback, staging, summary, known)
                if label:
                    exported[label] += 1
                    summary.exported_without_caller += kind != TRUSTED
                continue
            if capture.answer is None:
                continue  # an image alone (its answer not stored yet): nothing to say about it
            answer = read_json(client, bucket, capture.answer)
            if answer is None:
                _skip(summary, capture, "unreadable answer JSON")
                continue
            if answer.get("uncertain") is True:
                review.append(_review_row(bucket, capture, answer))
        summary.exported = dict(sorted(exported.items()))
        summary.to_review = len(review)
        with (staging / REVIEW).open("w", newline="") as handle:
            writer = csv.DictWriter(handle, REVIEW_COLUMNS)
            writer.writeheader()
            writer.writerows({key: spreadsheet_safe(value) for key, value in row.items()} for row in review)
        marker = {"exported_at": datetime.now(UTC).isoformat(timespec="seconds"), **asdict(summary)}
        (staging / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        staging.chmod(0o755)
        manifest_writer.replace_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary


def classes_of(
    client, bucket: str, capture: Capture, pid: capture_layout.PredictionId, known: dict
) -> list | None:
    """The classes of the model version that answered ``pid``, as its captures recorded them
    (``{capture prefix}{model}/{version}/labels.json``, the capture prefix read off the capture's own
    key: an export may name a narrower prefix), read once per version; None when unreadable."""
    stem = capture.stem
    root = stem[: len(stem) - len(pid.key("", "x")[: -len(".x")])]
    key = f"{root}{pid.folder}{capture_layout.LABELS_FILE}"
    if key not in known:
        labels = read_json(client, bucket, key, kind=list)
        known[key] = (
            labels if labels is not None and all(isinstance(label, str) for label in labels) else None
        )
    return known[key]


def _export_one(
    client, bucket: str, capture: Capture, feedback: dict, staging: Path, summary: Summary, known: dict
) -> str | None:
    """Write a corrected capture's image into ``staging/<label>/`` (``feedback``: its chosen
    correction); its label, or None (skipped). Nothing is taken on trust, not even a trusted
    caller's record: the label must be one of the classes of the model version that answered, and
    the image's bytes must be those its prediction id names (their sha256)."""
    label = safe_label(feedback.get("label"))
    if label is None:
        _skip(summary, capture, "label is not a safe folder name")
        return None
    pid = capture_layout.PredictionId.parse(capture.prediction_id)
    classes = classes_of(client, bucket, capture, pid, known)
    if classes is None:
        _skip(summary, capture, "the answering model version's classes are unknown (no labels.json)")
        return None
    if label not in classes:
        _skip(summary, capture, "label is not a class of the model version that answered")
        return None
    if capture.image is None:
        _skip(summary, capture, "image missing")
        return None
    if capture.image_bytes > MAX_IMAGE_BYTES:
        _skip(summary, capture, "image over 50 MB")
        return None
    from botocore.exceptions import ClientError

    try:
        data = client.get_object(Bucket=bucket, Key=capture.image)["Body"].read(MAX_IMAGE_BYTES + 1)
    except ClientError:  # listed, then deleted
        _skip(summary, capture, "image missing")
        return None
    if len(data) > MAX_IMAGE_BYTES:
        _skip(summary, capture, "image over 50 MB")
        return None
    if hashlib.sha256(data).hexdigest() != pid.sha256:
        _skip(summary, capture, "image is not the one its prediction id names (sha256)")
        return None
    extension = capture.image.rpartition(".")[2].lower()
    folder = staging / label
    target = folder / f"{safe_file_name(capture.prediction_id)}.{extension}"
    if target.exists():  # two ids that read the same once made file-safe: keep both
        digest = hashlib.sha256(capture.prediction_id.encode()).hexdigest()[:12]
        target = folder / f"{safe_file_name(capture.prediction_id)}_{digest}.{extension}"
    if folder.resolve().parent != staging.resolve():
        _skip(summary, capture, "label is not a safe folder name")  # defence in depth: never outside
        return None
    folder.mkdir(exist_ok=True)
    target.write_bytes(data)
    return label


def _review_row(bucket: str, capture: Capture, answer: dict) -> dict[str, object]:
    model = answer.get("model") if isinstance(answer.get("model"), dict) else {}
    predictions = answer.get("predictions") if isinstance(answer.get("predictions"), list) else []
    top = predictions[0] if predictions and isinstance(predictions[0], dict) else {}
    image = capture.image
    if image is None and isinstance(answer.get("image"), dict):
        image = answer["image"].get("key")
    return {
        "prediction_id": answer.get("prediction_id") or capture.prediction_id,
        "image": f"s3://{bucket}/{image}" if image else "",
        "model": model.get("name", ""),
        "version": model.get("version", ""),
        "label": top.get("label", ""),
        "probability": top.get("probability", ""),
        "time": answer.get("time", ""),
    }


def write_summary(summary: Summary, out: TextIO) -> None:
    """The summary a person reads: exported per label, to review, skipped and why."""
    exported = sum(summary.exported.values())
    out.write(f"{summary.captures} captures under {summary.source}\n")
    out.write(f"exported {exported} labelled photo(s) to {summary.out}\n")
    for label, count in summary.exported.items():
        out.write(f"  {label}: {count}\n")
    out.write(correction_line(summary.corrections, summary.include_anonymous) + "\n")
    if summary.exported_without_caller:
        out.write(f"  exported from corrections without a caller: {summary.exported_without_caller}\n")
    out.write(f"to review: {summary.to_review} uncertain answer(s) without feedback ({REVIEW})\n")
    out.write(f"skipped: {sum(summary.skipped.values())}\n")
    for reason, count in sorted(summary.skipped.items()):
        out.write(f"  {reason}: {count}\n")


def correction_line(corrections: dict[str, int], include_anonymous: bool) -> str:
    """One line on whose corrections were used: trusted ones, and the others used or left out."""
    others = corrections[ANONYMOUS] + corrections[UNTRUSTED]
    line = (
        f"corrections: {corrections[TRUSTED]} from authenticated callers; {corrections[ANONYMOUS]} "
        f"anonymous and {corrections[UNTRUSTED]} without a recorded caller"
    )
    if not others:
        return line
    if include_anonymous:
        return line + " used too (--include-anonymous)"
    return line + " left out (--include-anonymous uses them)"
