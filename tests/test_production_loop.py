"""The production loop end to end, on this machine: a trained model served over HTTP with every
answer captured into moto's S3, people correcting some answers, the corrections exported as a
data folder, a new version trained on the original photos plus the export, and the two versions
compared before promoting. Each step's output is checked, through the commands a team would run:
the installed ``imgrec``, run from a directory outside the checkout with no ``PYTHONPATH`` and no
``KERAS_HOME`` (it finds the weights beside the checkout, as the README says), as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from handler.answers.capture import PredictionId
from handler.recognition import model
from localaws.server import DEFAULT_REVIEWER_TOKEN
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


INSTALLED = Path(sys.executable).with_name("imgrec")  # what `make setup` installs (pip install -e .)
CHECKOUT = Path(__file__).resolve().parents[1]


def imgrec(args: list[str], cwd: Path) -> str:
    """The installed command, as a user runs it: from ``cwd`` (outside the checkout), with neither
    ``PYTHONPATH`` nor ``KERAS_HOME`` set; its standard output, after checking it succeeded."""
    assert not cwd.resolve().is_relative_to(CHECKOUT), cwd
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KERAS_HOME")}
    done = subprocess.run(
        [str(INSTALLED), *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, f"imgrec {' '.join(args)}: {done.returncode}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr and "INFO: Created TensorFlow Lite" not in done.stderr, done.stderr
    return done.stdout


# The local server's stand-in for a reviewer's signed request (POST /feedback is a privileged write).
REVIEWER = {"Authorization": f"Bearer {DEFAULT_REVIEWER_TOKEN}"}


def test_capture_feedback_export_train_compare(tmp_path: Path, configure, moto_s3, s3_client) -> None:
    # A model in production: version 1.0.0, trained on 14 photos of each class, its head started
    # from ImageNet's own ant and bee (the option that once crashed outside the checkout).
    original = photos(tmp_path / "original", slice(0, 14))
    current = tmp_path / "models" / "current"
    printed = imgrec(
        ["train", "original", "--out", "models/current", "--version", "1.0.0", "--epochs", "2",
         "--fine-tune-layers", "0", "--imagenet-classes", "ants=ant,bees=bee"],
        tmp_path,
    )  # fmt: skip
    assert "model written to models/current" in printed, printed
    assert json.loads((current / "manifest.json").read_text())["name"] == "original", "named after its data"
    table = imgrec(["predict", str(original / "ants" / sorted(os.listdir(original / "ants"))[0]),
                    "--top-k", "5", "--model-dir", "models/current"], tmp_path)  # fmt: skip
    assert table.count("%") == 2, f"both classes (top_k clamped to 2), no log line inside: {table}"
    report = imgrec(
        ["evaluate", "original", "--model-dir", "models/current", "--out", "evaluation"], tmp_path
    )
    assert "report written to evaluation" in report and (tmp_path / "evaluation" / "report.json").is_file()
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
            assert PredictionId.parse(body["prediction_id"]).model == "original"
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
    captured = s3_client.list_objects_v2(Bucket=bucket, Prefix="capture/original/1.0.0/")["KeyCount"]
    assert captured == 12 * 2 + 8 + 1, "12 photos and their answers, 8 corrections, the version's labels"

    # 3. The corrections become a data folder.
    export = tmp_path / "exports" / "first"
    url_of_captures = f"s3://{bucket}/capture/"
    endpoint = ["--endpoint-url", moto_s3]
    printed = imgrec(["dataset", "export", url_of_captures, "--out", "exports/first", *endpoint], tmp_path)
    assert "exported 8 labelled photo(s) to exports/first" in printed, printed
    assert sorted(p.parent.name for p in export.glob("*/*")) == ["ants"] * 4 + ["bees"] * 4
    exported = {p.read_bytes() for p in export.glob("*/*")}
    assert exported == {p.read_bytes() for p in corrected}, "the very photos people corrected"

    # 4. Version 1.1.0 trains on the original photos and the export, one epoch.
    candidate = tmp_path / "models" / "candidate"
    imgrec(["train", "original", "exports/first", "--out", "models/candidate", "--name", "original",
            "--version", "1.1.0", "--epochs", "1", "--fine-tune-layers", "0"], tmp_path)  # fmt: skip
    card = json.loads((candidate / "manifest.json").read_text())["card"]
    assert card["data"]["images"] == 28 + 8
    assert [folder["images"] for folder in card["data"]["folders"]] == [28, 8]
    assert set(card["baseline"]["top_class_share"]) == {"ants", "bees"}

    # 5. Old and new compared on photos neither trained on, before promoting.
    photos(tmp_path / "held-out", slice(30, 36))
    compared = json.loads(
        imgrec(["compare", "models/current", "models/candidate", "held-out", "--json"], tmp_path)
    )
    assert compared["images"] == 12 and compared["labelled"] == 12 and compared["same_classes"]
    assert (compared["a"]["version"], compared["b"]["version"]) == ("1.0.0", "1.1.0")
    assert len(compared["changed"]) == 12 - compared["top1_agreement"]["agree"]
    for side in ("a", "b"):
        figures = compared["accuracy"][side]
        assert figures["accuracy"] == figures["correct"] / 12
    # The capture prefix compares too: its corrections are the truth.
    printed = imgrec(["compare", "models/current", "models/candidate", url_of_captures, *endpoint], tmp_path)
    assert "labelled: 8 of 12" in printed
