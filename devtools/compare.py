"""``imgrec compare MODEL_DIR_A MODEL_DIR_B DATA``: two model directories on the same photos.

DATA is a labelled folder (one sub-folder per class; a folder's name is the truth, matched with
the models' labels by name) or ``s3://BUCKET/PREFIX`` of captured predictions (the layout of
``devtools.capture_export``: a capture's trusted correction is its truth, one an authenticated
caller sent; anonymous corrections, and feedback without a recorded caller, are counted and left
unlabelled unless ``include_anonymous``; the others are unlabelled).
Both serving classifiers (``handler.recognition.model.load_classifier``, LiteRT, each calibrated
by its own manifest as served) answer the same decoded images (decoded once by the serving decoder
in its sandbox, as ``training.evaluate`` does). Reports the top-1 agreement, every changed
prediction, and the accuracy of each model on the labelled photos with 95 % Wilson intervals.

Models with different class lists are compared over the labels they share: each model's
probabilities restricted to those labels (renormalized), and the accuracy over photos whose truth
is one of them; the report says so.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from handler.recognition import model as serving
from training import evaluate, metrics


class CompareError(Exception):
    """The comparison cannot run (no shared label, no image); the message says why."""


@dataclass
class Photos:
    """Decoded photos to compare on: names, pixels (``training.dataset.Pixels``), truth (None:
    unlabelled) and what was skipped."""

    names: list[str]
    images: object
    truth: list[str | None]
    skipped: list[dict[str, str]]
    # Captures: the corrections found per kind (capture_export.choose_correction), and whether the
    # anonymous and untrusted ones were taken as truth. None for a folder.
    corrections: dict[str, int] | None = None
    include_anonymous: bool = False


def folder_photos(data: Path) -> Photos:
    """A labelled folder, decoded as training decodes it (copies and unreadable files skipped)."""
    from training.dataset import load

    dataset = load(data, progress=False, min_per_class=1)
    return Photos(
        [dataset.name(path) for path in dataset.paths],
        dataset.images,
        [dataset.classes[label] for label in dataset.labels],
        [{"file": file, "why": why} for file, why in dataset.skipped],
    )


# Captured photos held in memory at once before decoding (memory: at most this many bodies).
DECODE_CHUNK = 32


def capture_photos(
    url: str, endpoint_url: str | None = None, client=None, include_anonymous: bool = False
) -> Photos:
    """Captured images under ``s3://BUCKET/PREFIX``, decoded by the serving decoder; a capture's
    truth is its trusted correction's label (None without one, or when it cannot be read); with
    ``include_anonymous``, else an anonymous or untrusted one's."""
    from botocore.exceptions import ClientError

    from devtools.backfill import client_for
    from devtools.capture_export import (
        ANONYMOUS,
        MAX_IMAGE_BYTES,
        TRUSTED,
        UNTRUSTED,
        captures,
        choose_correction,
        parse_url,
    )
    from training.dataset import LIMITS, PixelWriter, sandbox

    bucket, prefix = parse_url(url)
    client = client or client_for(endpoint_url)
    listed, _ = captures(client, bucket, prefix)
    skipped: list[dict] = []
    seen: dict[str, str] = {}
    writer = PixelWriter()
    kept_names: list[str] = []
    kept_truth: list[str | None] = []
    pending: list[tuple[str, str | None, bytes]] = []  # at most DECODE_CHUNK bodies in memory
    tally = dict.fromkeys((TRUSTED, ANONYMOUS, UNTRUSTED), 0)

    def decode_pending(decoder) -> None:
        bodies = [body for _, _, body in pending]
        for (name, label, _), decoded in zip(pending, decoder.decode(bodies, LIMITS), strict=True):
            if not isinstance(decoded, np.ndarray):  # a Refusal: why it was not decoded
                skipped.append({"file": name, "why": getattr(decoded, "message", "not decoded")})
                continue
            writer.append(decoded)
            kept_names.append(name)
            kept_truth.append(label)
        pending.clear()

    with sandbox() as decoder:
        for capture in listed:
            if capture.image is None:
                continue  # an answer or feedback alone: nothing to classify
            if capture.image_bytes > MAX_IMAGE_BYTES:
                skipped.append({"file": capture.prediction_id, "why": "image over 50 MB"})
                continue
            try:
                body = client.get_object(Bucket=bucket, Key=capture.image)["Body"].read(MAX_IMAGE_BYTES + 1)
            except ClientError:
                skipped.append({"file": capture.prediction_id, "why": "image missing"})
                continue
            digest = hashlib.sha256(body).hexdigest()
            if digest in seen:
                skipped.append({"file": capture.prediction_id, "why": f"the same photo as {seen[digest]}"})
                continue
            seen[digest] = capture.prediction_id
            feedback, _ = choose_correction(client, bucket, capture, include_anonymous, tally)
            label = feedback.get("label") if feedback is not None else None
            label = label if isinstance(label, str) else None
            pending.append((capture.prediction_id, label, body))
            if len(pending) == DECODE_CHUNK:
                decode_pending(decoder)
        if pending:
            decode_pending(decoder)
    return Photos(kept_names, writer.finish(), kept_truth, skipped, tally, include_anonymous)


def label_keys(classifier: serving.Classifier) -> list[str]:
    """Each output's label, the name classes are matched by; a label the model has twice (ImageNet's
    two ``crane``) with its class id: ``crane (n02012849)``."""
    counts: dict[str, int] = {}
    for label in classifier.labels:
        counts[label] = counts.get(label, 0) + 1
    return [
        label if counts[label] == 1 else f"{label} ({class_id or index})"
        for index, (class_id, label) in enumerate(classifier.entries)
    ]


def _restricted(
    probabilities: np.ndarray, keys: list[str], shared: list[str], renormalize: bool
) -> np.ndarray:
    """The columns of ``shared`` labels, in that order (renormalized when some were dropped)."""
    index = {key: i for i, key in enumerate(keys)}
    restricted = probabilities[:, [index[key] for key in shared]]
    if not renormalize:
        return restricted
    return restricted / np.clip(restricted.sum(axis=1, keepdims=True), 1e-12, None)


def compare(a: serving.Classifier, b: serving.Classifier, photos: Photos, data: str) -> dict:
    """The comparison of ``a`` and ``b`` on ``photos`` (see the module), as a JSON-ready dict."""
    keys_a, keys_b = label_keys(a), label_keys(b)
    same = set(keys_a) == set(keys_b)  # the same classes, perhaps in another order
    shared = keys_a if same else sorted(set(keys_a) & set(keys_b))
    if not shared:
        raise CompareError(
            f"{a.info.name} and {b.info.name} share no label ({', '.join(a.labels[:5])}… vs "
            f"{', '.join(b.labels[:5])}…): there is nothing to compare."
        )
    pa = _restricted(evaluate.probabilities(a, photos.images), keys_a, shared, not same)
    pb = _restricted(evaluate.probabilities(b, photos.images), keys_b, shared, not same)
    labels = shared
    top_a, top_b = pa.argmax(axis=1), pb.argmax(axis=1)
    agree = int((top_a == top_b).sum())
    count = len(photos.names)
    changed = [
        {
            "image": name,
            "a": {"label": labels[top_a[i]], "probability": round(float(pa[i, top_a[i]]), 4)},
            "b": {"label": labels[top_b[i]], "probability": round(float(pb[i, top_b[i]]), 4)},
            "truth": photos.truth[i],
        }
        for i, name in enumerate(photos.names)
        if top_a[i] != top_b[i]
    ]
    known = set(labels)
    labelled = [i for i, truth in enumerate(photos.truth) if truth is not None and truth in known]
    outside = sum(1 for truth in photos.truth if truth is not None and truth not in known)
    accuracy = {}
    for key, top in (("a", top_a), ("b", top_b)):
        correct = sum(1 for i in labelled if labels[top[i]] == photos.truth[i])
        accuracy[key] = {
            "correct": correct,
            "accuracy": correct / len(labelled) if labelled else None,
            "accuracy_95ci": metrics.wilson(correct, len(labelled)) if labelled else None,
        }
    result = {
        "data": data,
        "a": {**a.info.to_dict(), "temperature": a.temperature, "classes": len(a.labels)},
        "b": {**b.info.to_dict(), "temperature": b.temperature, "classes": len(b.labels)},
        "same_classes": same,
        "images": count,
        "skipped": photos.skipped,
        "top1_agreement": {"agree": agree, "rate": agree / count if count else None},
        "changed": changed,
        "labelled": len(labelled),
        "accuracy": accuracy,
    }
    if photos.corrections is not None:
        result["corrections"] = {**photos.corrections, "include_anonymous": photos.include_anonymous}
    if not same:
        result["shared_labels"] = shared
        result["only_a"] = [key for key in keys_a if key not in known]
        result["only_b"] = [key for key in keys_b if key not in known]
        result["truth_outside_shared_labels"] = outside
    else:
        result["truth_outside_labels"] = outside
    return result


def _model(side: dict) -> str:
    return f"{side['name']} {side['version']} (T = {side['temperature']:g})"


def write_text(result: dict, out: TextIO, changed_shown: int = 50) -> None:
    """The comparison as a person reads it."""
    out.write(f"A: {_model(result['a'])}\nB: {_model(result['b'])}\non {result['data']}\n")
    if not result["same_classes"]:
        out.write(
            f"the models' classes differ: compared over the {len(result['shared_labels'])} shared labels "
            f"({', '.join(result['shared_labels'][:10])}); only A: {len(result['only_a'])}, "
            f"only B: {len(result['only_b'])}\n"
        )
    out.write(
        f"images: {result['images']}" + (f" ({len(result['skipped'])} skipped)" if result["skipped"] else "")
    )
    out.write("\n")
    agreement = result["top1_agreement"]
    rate = f" ({agreement['rate']:.1%})" if agreement["rate"] is not None else ""
    out.write(f"top-1 agreement: {agreement['agree']} of {result['images']}{rate}\n")
    out.write(f"changed predictions: {len(result['changed'])}\n")
    for row in result["changed"][:changed_shown]:
        truth = f"  truth {row['truth']}" if row["truth"] is not None else ""
        out.write(
            f"  {row['image']}: A {row['a']['label']} {row['a']['probability']:.2f} -> "
            f"B {row['b']['label']} {row['b']['probability']:.2f}{truth}\n"
        )
    if len(result["changed"]) > changed_shown:
        out.write(f"  ... and {len(result['changed']) - changed_shown} more (--json lists them all)\n")
    out.write(f"labelled: {result['labelled']} of {result['images']}\n")
    if "corrections" in result:
        from devtools.capture_export import correction_line

        corrections = result["corrections"]
        out.write(correction_line(corrections, corrections["include_anonymous"]) + "\n")
    for key in ("a", "b"):
        figures = result["accuracy"][key]
        if figures["accuracy"] is None:
            continue
        low, high = figures["accuracy_95ci"]
        out.write(
            f"accuracy {key.upper()}: {figures['accuracy']:.3f} "
            f"({figures['correct']} of {result['labelled']}; 95 % CI {low:.3f}-{high:.3f})\n"
        )
    outside = result.get("truth_outside_shared_labels", result.get("truth_outside_labels", 0))
    if outside:
        out.write(f"{outside} labelled photo(s) name a class the models do not share: not in the accuracy\n")


def run(
    model_a: Path,
    model_b: Path,
    data: str,
    endpoint_url: str | None = None,
    include_anonymous: bool = False,
) -> dict:
    """``imgrec compare``: decode DATA first (the decode sandbox starts before the models load),
    then load both serving classifiers and compare them. ``include_anonymous``: captures' corrections
    without an authenticated caller are truth too."""
    captured = data.startswith("s3://")
    photos = (
        capture_photos(data, endpoint_url, include_anonymous=include_anonymous)
        if captured
        else folder_photos(Path(data))
    )
    if not photos.names:
        raise CompareError(f"No image to compare on in {data}.")
    a = serving.load_classifier(model_a, "litert", threads=2)
    b = serving.load_classifier(model_b, "litert", threads=2)
    return compare(a, b, photos, data)


def print_result(result: dict, out: TextIO, as_json: bool) -> None:
    if as_json:
        out.write(json.dumps(result, indent=2) + "\n")
    else:
        write_text(result, out)
