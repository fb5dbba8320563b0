"""The model's health samples: one EMF blob per invocation, dimensioned by the model and its version
(what a drift alarm compares with the card's validation baseline)."""

from __future__ import annotations

import base64
import json

from handler.answers import drift
from handler.contract import top_class_metric
from localaws.context import LocalContext
from localaws.events import rest_event


def drift_blobs(printed: str) -> list[dict]:
    blobs = [json.loads(line) for line in printed.splitlines() if line.startswith('{"_aws"')]
    # The rollout signals' blob carries the model too (ModelUncertain's second view), and the version.
    return [blob for blob in blobs if "model_version" in blob and "version" not in blob]


def test_each_answered_image_is_a_sample_of_its_model_version(configure, grace_hopper, cat, capsys) -> None:
    function = configure(min_confidence=0.9)  # grace_hopper ~0.93, the cat ~0.78
    images = [base64.b64encode(photo).decode() for photo in (grace_hopper, b"not an image", cat)]
    event = rest_event(
        "POST",
        "/predict",
        body=json.dumps({"images": images}).encode(),
        headers={"Content-Type": "application/json"},
    )
    capsys.readouterr()
    assert function.api_handler(event, LocalContext())["statusCode"] == 200
    (blob,) = drift_blobs(capsys.readouterr().out)
    dimensions = [sorted(d) for m in blob["_aws"]["CloudWatchMetrics"] for d in m["Dimensions"]]
    assert dimensions == [["model", "model_version", "service"]]
    assert (blob["model"], blob["model_version"]) == ("mobilenet_v2", "1.0.0")
    high, low = blob["Top1Confidence"]
    assert high > 0.9 > low > 0.5, "one sample per answered image; the refused one is none"
    assert "ModelUncertain" not in blob, "one uncertain metric: the rollout signals' (test_signals.py)"
    assert not [k for k in blob if k.startswith("TopClass_")], "1,000 classes are not watched one by one"


def test_a_model_of_few_classes_reports_each_class_share(capsys) -> None:
    answers = [
        {"predictions": [{"label": "bees", "probability": 0.8}]},
        {"predictions": [{"label": "red wine/2", "probability": 0.6}], "uncertain": True},
        {"error": "corrupt", "code": "corrupt_image"},
    ]
    capsys.readouterr()
    drift.observe(answers, {"name": "insects", "version": "2.0.0"}, ["ants", "bees", "red wine/2"])
    drift.flush()
    (blob,) = drift_blobs(capsys.readouterr().out)
    assert blob["TopClass_ants"] == [0.0, 0.0]
    assert blob["TopClass_bees"] == [1.0, 0.0]
    assert blob[top_class_metric("red wine/2")] == [0.0, 1.0]  # TopClass_red_wine_2_<8 hex>
    assert blob["model_version"] == "2.0.0" and "ModelUncertain" not in blob


def test_nothing_answered_publishes_nothing(capsys) -> None:
    capsys.readouterr()
    drift.observe([{"error": "x", "code": "corrupt_image"}], {"name": "m", "version": "1"}, ["a", "b"])
    drift.flush()
    assert drift_blobs(capsys.readouterr().out) == []


def test_labels_the_metric_name_cannot_spell_still_get_a_metric_each() -> None:
    """Non-Latin labels, or labels that differ only in a character the reduction replaces, must not
    share a metric: their shares would average together and the class-mix alarm would be blind."""
    names = [top_class_metric(label) for label in ("蜂", "蚁", "a b", "a_b", "a/b", "x" * 300, "x" * 301)]
    assert len(set(names)) == len(names)
    assert top_class_metric("bees") == "TopClass_bees", "a plain label reads as itself"
    assert all(len(name) <= 255 and name.isascii() for name in names)
