"""Train on a few dozen shared photos (two epochs), then serve the result through every door."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from handler.recognition import model
from localaws.context import LocalContext
from localaws.events import rest_event, s3_event, sqs_event
from tests.support import PHOTOS, SHARED, body_json, local_site

pytestmark = [pytest.mark.slow]

HYMENOPTERA = SHARED / "datasets" / "hymenoptera" / "train"
WEIGHTS = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.train import Options, train

    if not HYMENOPTERA.is_dir():
        pytest.fail(f"The training tests need the shared datasets at {HYMENOPTERA.parents[1]} (see README).")
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    if not (keras_home / "models" / WEIGHTS).is_file():
        pytest.fail(f"No {WEIGHTS} in {keras_home}/models: `make keras-cache` links ../shared/models.")
    data = tmp_path_factory.mktemp("ants-and-bees")
    for name in ("ants", "bees"):
        (data / name).mkdir()
        for photo in sorted((HYMENOPTERA / name).iterdir())[:14]:
            shutil.copy(photo, data / name / photo.name)
    (data / "bees" / "README.txt").write_text("not a photo")  # listed, skipped, counted in the card
    out = tmp_path_factory.mktemp("models") / "ants-and-bees"
    options = Options(name="ants-and-bees", version="1.0.0", epochs=2, fine_tune_epochs=1, quantize="int8")
    train(data, out, options)
    return out


@pytest.fixture(scope="module")
def card(trained: Path) -> dict:
    return json.loads((trained / "manifest.json").read_text())["card"]


@pytest.fixture(scope="module")
def custom(trained: Path, configure):
    return configure(model=model.load_classifier(trained, "litert", threads=2))


def test_the_model_directory_has_every_file_pinned(trained: Path) -> None:
    manifest = json.loads((trained / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.keras", "model.tflite", "model_int8.tflite", "labels.json"}
    assert json.loads((trained / "labels.json").read_text()) == ["ants", "bees"]
    assert manifest["output"]["classes"] == 2 and manifest["artifacts"]["tflite_int8"] == "model_int8.tflite"
    report = trained / "evaluation"
    assert {p.name for p in report.iterdir()} >= {
        "report.md",
        "report.json",
        "roc.png",
        "learning_curves.png",
    }
    assert {p.name for p in (report / "validation").iterdir()} >= {"report.md", "confusion_matrix.png"}
    assert "test split (used to choose nothing)" in (report / "report.md").read_text()


def test_training_keeps_a_check_set_from_its_test_split(trained: Path, card: dict) -> None:
    """The pre-traffic gate's photos: never trained on, every class, the card's test accuracy."""
    from training import checkset

    document = checkset.read(trained, "int8")  # recorded at both precisions the directory serves
    assert len(document["photos"]) == 4 and {p["label"] for p in document["photos"]} == {"ants", "bees"}
    assert document["expected_accuracy"] == round(card["test"]["accuracy"], 4)
    assert set(document["accuracy_when_recorded"]) == {"fp32", "int8"}


def test_the_card_is_complete(card: dict) -> None:
    assert {"base_model", "classes", "data", "hyperparameters", "history", "validation", "test"} <= set(card)
    split = {"train": 10, "validation": 2, "test": 2}
    assert card["classes"] == {"ants": split, "bees": split}
    assert len(card["data"]["fingerprint_sha256"]) == 64 and card["data"]["images"] == 28
    assert [s["file"] for s in card["data"]["skipped"]] == ["bees/README.txt"]
    assert card["hyperparameters"]["epochs"] == 2 and card["training_seconds"] > 0
    assert set(card["history"]) == {"head", "fine_tune"}, "the two phases"
    for split_name in ("validation", "test"):
        assert {"accuracy", "accuracy_95ci", "balanced_accuracy", "roc_auc", "per_class"} <= set(
            card[split_name]
        )
    test = card["test"]
    low, high = test["accuracy_95ci"]
    assert 0 <= low <= test["accuracy"] <= high <= 1 and high - low > 0.3, "4 photos: a wide interval"
    points = test["operating_points"]
    assert set(points) == {"argmax (0.5)", "sensitivity >= 0.9 on validation"}
    assert all(
        {"sensitivity", "specificity", "sensitivity_95ci", "threshold"} <= set(p) for p in points.values()
    )


def test_the_tflite_and_the_keras_model_agree(card: dict) -> None:
    agreement = card["tflite_vs_keras"]
    assert agreement["images"] == 4
    assert agreement["top1_agreement"] >= 3 / 4  # all but a rounding case
    assert agreement["max_abs_probability_difference"] <= 1e-3


def test_int8_agreement_is_measured(card: dict) -> None:
    int8 = card["int8"]
    assert int8["images"] == 4 and 0 <= int8["top1_agreement"] <= 1
    assert 0 <= int8["test_accuracy"] <= 1 and int8["max_abs_probability_difference"] < 0.5


def test_int8_is_served_with_model_precision(trained: Path) -> None:
    classifier = model.load_classifier(trained, "litert", threads=2, precision="int8")
    (ranked,) = classifier.classify(_photo_array(), top_k=2)
    assert {p.label for p in ranked} == {"ants", "bees"}


def _photo_array():
    from handler.recognition import imaging

    return imaging.to_pixels(
        (HYMENOPTERA / "ants" / sorted(p.name for p in (HYMENOPTERA / "ants").iterdir())[0]).read_bytes(),
        imaging.DecodeLimits(50_000_000, 40_000_000),
    )[None]


def test_the_api_answers_with_the_custom_classes(custom) -> None:
    photo = (PHOTOS / "grace_hopper.jpg").read_bytes()
    event = rest_event("POST", "/predict", body=photo, headers={"Content-Type": "image/jpeg"})
    answer = body_json(custom.api_handler(event, LocalContext()))
    assert [p["label"] for p in answer["predictions"]] in (["ants", "bees"], ["bees", "ants"])
    assert all("class_id" not in p for p in answer["predictions"])  # no WordNet ids for own classes
    assert answer["model"] == {"name": "ants-and-bees", "version": "1.0.0", "backend": "litert"}
    assert "top_k_clamped" not in answer
    # A client written for ImageNet's 1,000 classes keeps working: more than 2 answers both, and says so.
    generic = rest_event(
        "POST", "/predict", body=photo, headers={"Content-Type": "image/jpeg"}, query="top_k=5"
    )
    clamped = body_json(custom.api_handler(generic, LocalContext()))
    assert len(clamped["predictions"]) == 2 and clamped["top_k_clamped"] is True
    beyond = rest_event(
        "POST", "/predict", body=photo, headers={"Content-Type": "image/jpeg"}, query="top_k=21"
    )
    refused = custom.api_handler(beyond, LocalContext())
    assert refused["statusCode"] == 400 and "from 1 to 20" in body_json(refused)["error"]


def test_the_model_knows_what_it_does_not_know(trained: Path, card: dict, custom) -> None:
    """Its detector is fitted and thresholded at training, measured on the card, and answered by the
    served model: an ant is in domain, a page of text and white noise are not (on 20 training photos
    the detector is coarse: smooth noise may pass it; the shared datasets' cards measure it)."""
    from training import in_domain

    detector = json.loads((trained / "manifest.json").read_text())["in_domain"]
    assert detector["threshold"] > 0 and detector["output"] == "in_domain_distance"
    assert detector["validation_pass_rate"] == 0.95 and 0 <= detector["shrinkage"] <= 1
    figures = card["in_domain"]
    assert figures["test_photos"] == 4 and figures["outside_photos"] >= in_domain.SYNTHETIC
    assert figures["outside_sources"][-1] == f"synthetic documents and noise: {in_domain.SYNTHETIC}"
    assert 0 <= figures["test_pass_rate"] <= 1 and 0.5 < figures["auroc"] <= 1
    ant = (HYMENOPTERA / "ants" / sorted(p.name for p in (HYMENOPTERA / "ants").iterdir())[0]).read_bytes()
    page, _, _, noise = in_domain.synthetic_outside(4)
    answers = {}
    for name, photo in (("ant", ant), ("page", page), ("noise", noise)):
        event = rest_event("POST", "/predict", body=photo, headers={"Content-Type": "image/jpeg"})
        answers[name] = body_json(custom.api_handler(event, LocalContext()))
    assert {name: a["in_domain"] for name, a in answers.items()} == {
        "ant": True,
        "page": False,
        "noise": False,
    }
    assert all(len(a["predictions"]) == 2 for a in answers.values()), "the ranking is still given"


def test_health_model_and_openapi_reflect_the_model(custom, card: dict) -> None:
    health = body_json(custom.api_handler(rest_event("GET", "/health"), LocalContext()))
    assert health["classes"] == 2 and health["model"]["name"] == "ants-and-bees"
    metadata = body_json(custom.api_handler(rest_event("GET", "/model"), LocalContext()))
    assert metadata["model_spec"] == {"name": "ants-and-bees", "version": "1.0.0"}
    assert metadata["classes"] == ["ants", "bees"] and metadata["card"] == card
    document = body_json(custom.api_handler(rest_event("GET", "/openapi.json"), LocalContext()))
    (top_k,) = [p for p in document["paths"]["/predict"]["post"]["parameters"] if p["name"] == "top_k"]
    # Any top_k up to MAX_TOP_K is taken (above the 2 classes, both are answered); 2 by default.
    assert top_k["schema"]["maximum"] == 20 and top_k["schema"]["default"] == 2


def test_min_confidence_marks_uncertain_answers(trained: Path, configure) -> None:
    classifier = model.load_classifier(trained, "litert", threads=2)
    photo = (PHOTOS / "cat.bmp").read_bytes()
    event = rest_event("POST", "/predict", body=photo, headers={"Content-Type": "image/bmp"})
    strict = body_json(configure(model=classifier, min_confidence=1.0).api_handler(event, LocalContext()))
    lenient = body_json(configure(model=classifier, min_confidence=0.0).api_handler(event, LocalContext()))
    assert strict["uncertain"] is True and lenient["uncertain"] is False


def test_s3_records_carry_the_model_and_a_new_version_recomputes(trained: Path, configure, s3_client) -> None:
    classifier = model.load_classifier(trained, "litert", threads=2)
    bucket = "custom-model-records"
    s3_client.create_bucket(Bucket=bucket)
    photo = (PHOTOS / "grace_hopper.jpg").read_bytes()
    etag = s3_client.put_object(Bucket=bucket, Key="uploads/p.jpg", Body=photo)["ETag"].strip('"')
    event = sqs_event([s3_event(bucket, [("uploads/p.jpg", etag, len(photo))])])

    def record() -> dict:
        return json.loads(
            s3_client.get_object(Bucket=bucket, Key="results/uploads/p.jpg.json")["Body"].read()
        )

    first = configure(model=classifier)
    assert first.s3_handler(event, LocalContext()) == {"batchItemFailures": []}
    assert record()["model"]["version"] == "1.0.0" and record()["predictions"][0]["label"] in {"ants", "bees"}
    assert isinstance(record()["in_domain"], bool), "the record says whether the photo is the model's kind"
    calls = classifier.calls
    first.s3_handler(event, LocalContext())
    assert classifier.calls == calls, "the same object and model version is not classified again"
    newer = copy.copy(classifier)  # the same loaded model, answering as a newer version
    newer.info = dataclasses.replace(classifier.info, name="ants-and-bees", version="1.1.0")
    newer.calls = 0
    configure(model=newer).s3_handler(event, LocalContext())
    assert newer.calls == 1 and record()["model"]["version"] == "1.1.0"


@pytest.mark.browser
def test_the_page_names_the_model_and_shows_its_labels(
    trained: Path, configure, browser, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    classifier = model.load_classifier(trained, "litert", threads=2)
    with local_site(configure, model=classifier) as url:
        context = browser.new_context(locale="en-US")
        page = context.new_page()
        page.goto(url)
        expect(page.locator("#subtitle")).to_have_text(
            "ants-and-bees 1.0.0 tells apart 2 classes: ants, bees."
        )
        page.set_input_files("#file", sorted((HYMENOPTERA / "bees").iterdir())[0])
        page.click("#analyze")
        labels = page.locator("#results .predictions li .label")
        expect(labels.first).to_have_text(re.compile("^(ants|bees)$"), timeout=30_000)
        assert sorted(labels.all_text_contents()) == ["ants", "bees"]
        expect(page.locator("#results .outside")).to_have_count(0)  # a bee: in domain
        from training import in_domain

        page_photo = tmp_path / "page.jpg"
        page_photo.write_bytes(in_domain.synthetic_outside(2)[0])
        page.set_input_files("#file", page_photo)
        page.click("#analyze")
        expect(page.locator("#results .outside")).to_have_text(
            re.compile("doesn’t look like anything this model knows"), timeout=30_000
        )
        expect(page.locator("#results .predictions li")).to_have_count(2)  # still ranked
        context.close()


def test_the_gate_lets_the_trained_model_through_and_stops_it_with_swapped_labels(
    trained: Path, custom, configure, tmp_path: Path
) -> None:
    """A two-class model: the hook asks for the two classes it recorded (not five), passes the
    model it was recorded with, and stops the same weights shipped with its labels swapped."""
    from devtools.bad_builds import shuffled_labels
    from hooks import pre_traffic

    fields = json.loads((trained / "manifest.json").read_text())
    gate = pre_traffic.Gate(model={"name": fields["name"], "version": fields["version"]})
    verdict = pre_traffic.check(
        lambda event: (custom.api_handler(event, LocalContext()), {}), gate, trained / "check"
    )
    assert verdict.passed, verdict.reason
    assert verdict.figures["max_probability_drift"] < 0.001
    swapped = configure(
        model=model.load_classifier(shuffled_labels(trained, tmp_path / "swapped"), "litert", 2)
    )
    verdict = pre_traffic.check(
        lambda event: (swapped.api_handler(event, LocalContext()), {}), gate, trained / "check"
    )
    assert not verdict.passed and verdict.figures["max_probability_drift"] > 0.05, verdict.reason
