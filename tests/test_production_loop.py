"""The production loop end to end, on this machine: a trained model served over HTTP with every
answer captured into moto's S3, people correcting some answers, the corrections exported as a
data folder, a new version trained on the original photos plus the export, and the two versions
compared before promoting. Each step's output is checked, through the commands a team would run."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
import requests

from devtools.cli import main as imgrec
from devtools.server import DEFAULT_REVIEWER_TOKEN
from handler.recognition import model
from handler.records.capture import PredictionId
from tests.support import SHARED, local_site, s3_client_for

pytestmark = [pytest.mark.slow]

HYMENOPTERA = SHARED / "datasets" / "hymenoptera" / "train"


def photos(out: Path, part: slice) -> Path:
    """A labelled folder of the shared ants and bees, the photos of ``part`` of each sorted class."""
    if not HYMENOPTERA.is_dir():
        pytest.fail(f"This test needs the shared datasets at {HYMENOPTERA.parents[1]} (see README).")
    for name in ("ants", "bees"):
        (out / name).mkdir(parents=True)
        for photo in sorted((HYMENOPTERA / name).iterdir())[part]:
            shutil.copy(photo, out / name / photo.name)
    return out


# The local server's stand-in for a reviewer's signed request (POST /feedback is a privileged write).
REVIEWER = {"Authorization": f"Bearer {DEFAULT_REVIEWER_TOKEN}"}


def test_capture_feedback_export_train_compare(tmp_path: Path, configure, moto_s3, s3_client, capsys) -> None:
    from training.train import Options, train

    # A model in production: version 1.0.0, trained on 14 photos of each class.
    original = photos(tmp_path / "original", slice(0, 14))
    current = tmp_path / "models" / "current"
    train(original, current, Options(name="insects", version="1.0.0", epochs=2, fine_tune_layers=0))
    served = model.load_classifier(current, "litert", threads=2)
    assert "temperature" in json.loads((current / "manifest.json").read_text())["calibration"]

    # 1. Served with CAPTURE_RATE=1: every answer named, stored with its photo.
    bucket = f"loop-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=bucket)
    production = photos(tmp_path / "production", slice(20, 26))  # photos it never saw
    overrides = {"model": served, "s3_client": s3_client_for(moto_s3), "uploads_bucket": bucket}
    answers = {}
    with local_site(configure, capture_rate=1.0, **overrides) as url:
        for photo in sorted(production.glob("*/*")):
            answer = requests.post(f"{url}predict", files={"image": photo.read_bytes()}, timeout=60)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["captured"] is True and body["model"]["version"] == "1.0.0"
            assert PredictionId.parse(body["prediction_id"]).model == "insects"
            answers[photo] = body

        # 2. People correct eight answers (the right class is the photo's folder); a label the
        # model does not have is refused.
        corrected = sorted(answers)[:4] + sorted(answers)[-4:]
        for photo in corrected:
            sent = {"prediction_id": answers[photo]["prediction_id"], "label": photo.parent.name}
            stored = requests.post(f"{url}feedback", json=sent, headers=REVIEWER, timeout=30)
            assert stored.status_code == 201, stored.text
            assert stored.json()["answered"] == answers[photo]["predictions"][0]["label"]
        wrong = {"prediction_id": answers[corrected[0]]["prediction_id"], "label": "wasps"}
        refused = requests.post(f"{url}feedback", json=wrong, headers=REVIEWER, timeout=30)
        assert (refused.status_code, refused.json()["code"]) == (400, "unknown_label")
    captured = s3_client.list_objects_v2(Bucket=bucket, Prefix="capture/insects/1.0.0/")["KeyCount"]
    assert captured == 12 * 2 + 8 + 1, "12 photos and their answers, 8 corrections, the version's labels"

    # 3. The corrections become a data folder.
    export = tmp_path / "exports" / "first"
    capsys.readouterr()
    url_of_captures = f"s3://{bucket}/capture/"
    assert (
        imgrec(["dataset", "export", url_of_captures, "--out", str(export), "--endpoint-url", moto_s3]) == 0
    )
    printed = capsys.readouterr().out
    assert f"exported 8 labelled photo(s) to {export}" in printed, printed
    assert sorted(p.parent.name for p in export.glob("*/*")) == ["ants"] * 4 + ["bees"] * 4
    exported = {p.read_bytes() for p in export.glob("*/*")}
    assert exported == {p.read_bytes() for p in corrected}, "the very photos people corrected"

    # 4. Version 1.1.0 trains on the original photos and the export, one epoch.
    candidate = tmp_path / "models" / "candidate"
    options = Options(name="insects", version="1.1.0", epochs=1, fine_tune_layers=0)
    card = train([original, export], candidate, options)["card"]
    assert card["data"]["images"] == 28 + 8
    assert [folder["images"] for folder in card["data"]["folders"]] == [28, 8]
    assert set(card["baseline"]["top_class_share"]) == {"ants", "bees"}

    # 5. Old and new compared on photos neither trained on, before promoting.
    held_out = photos(tmp_path / "held-out", slice(30, 36))
    capsys.readouterr()
    assert imgrec(["compare", str(current), str(candidate), str(held_out), "--json"]) == 0
    compared = json.loads(capsys.readouterr().out)
    assert compared["images"] == 12 and compared["labelled"] == 12 and compared["same_classes"]
    assert (compared["a"]["version"], compared["b"]["version"]) == ("1.0.0", "1.1.0")
    assert len(compared["changed"]) == 12 - compared["top1_agreement"]["agree"]
    for side in ("a", "b"):
        figures = compared["accuracy"][side]
        assert figures["accuracy"] == figures["correct"] / 12
    # The capture prefix compares too: its corrections are the truth.
    assert imgrec(["compare", str(current), str(candidate), url_of_captures, "--endpoint-url", moto_s3]) == 0
    assert "labelled: 8 of 12" in capsys.readouterr().out
