"""The model directory ``make model`` builds: files, labels, manifest and checksums."""

from __future__ import annotations

import json

import pytest

from handler.recognition import manifest
from tests.support import MODEL_DIR


def test_manifest_describes_the_model() -> None:
    fields = manifest.read(MODEL_DIR)
    assert fields["name"] == "mobilenet_v2"
    assert fields["version"]
    assert fields["input"] == {"height": 224, "width": 224, "channels": 3, "dtype": "uint8"}
    assert fields["preprocessing"] == {"color": "RGB", "resize": "bilinear", "scale": "inside the model"}
    assert fields["built_with"]["keras"].startswith("3.")
    assert fields["built_with"]["tensorflow"].startswith("2.")


def test_manifest_pins_every_file_by_sha256() -> None:
    fields = manifest.read(MODEL_DIR)
    assert set(fields["files"]) == {manifest.KERAS_FILE, manifest.TFLITE_FILE, manifest.LABELS_FILE}
    for name, info in fields["files"].items():
        path = MODEL_DIR / name
        assert manifest.sha256_of(path) == info["sha256"], name
        assert path.stat().st_size == info["bytes"], name
    manifest.verify(MODEL_DIR, fields, list(fields["files"]))


def test_labels_are_the_1000_keras_imagenet_classes_in_order() -> None:
    labels = json.loads((MODEL_DIR / manifest.LABELS_FILE).read_text())
    assert len(labels) == 1000
    assert labels[0] == ["n01440764", "tench"]
    assert labels[652] == ["n03763968", "military_uniform"]
    assert labels[999] == ["n15075141", "toilet_tissue"]


def test_tflite_model_is_fp32_and_a_real_size() -> None:
    size = (MODEL_DIR / manifest.TFLITE_FILE).stat().st_size
    assert 12_000_000 < size < 16_000_000, "fp32 MobileNetV2 is about 14 MB (a quantized one is 3.5 MB)"


@pytest.mark.slow
def test_make_model_quantize_int8_measures_its_agreement(tmp_path) -> None:
    """``make model QUANTIZE=int8``: a full-integer .tflite, calibrated on ImageNet photos, its
    top-1 agreement with fp32 measured on other photos, and served with MODEL_PRECISION=int8."""
    import subprocess
    import sys

    from handler.recognition import model as serving
    from tests.support import PHOTOS, REPO

    out = tmp_path / "model"
    done = subprocess.run(
        [sys.executable, "-m", "layers.model.export", "--out", str(out), "--quantize", "int8"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    fields = manifest.read(out)
    int8 = fields["card"]["int8"]
    assert int8["images"] >= 100 and 0.5 < int8["top1_agreement"] <= 1.0
    classifier = serving.load_classifier(out, "litert", threads=2, precision="int8")
    from handler.recognition import imaging

    photo = imaging.to_pixels((PHOTOS / "grace_hopper.jpg").read_bytes(), imaging.DecodeLimits(10**7, 10**8))
    assert classifier.classify(photo, top_k=1)[0][0].label == "military_uniform"


def test_a_model_directory_is_replaced_whole_folders_included(tmp_path) -> None:
    """``make model`` over an earlier export that has its check set (``check/``) and an evaluation
    folder: the old directory goes whole, once the new one is in place. (The old way unlinked
    files one by one and stopped at the first folder, leaving half a model.)"""
    from layers.model.manifest_writer import replace_folder

    out = tmp_path / "model"
    (out / "check" / "photos").mkdir(parents=True)
    (out / "check" / "check.json").write_text("{}")
    (out / "model.tflite").write_bytes(b"old")
    staging = tmp_path / ".model-new"
    staging.mkdir()
    (staging / "model.tflite").write_bytes(b"new")
    replace_folder(staging, out)
    assert sorted(p.name for p in out.iterdir()) == ["model.tflite"]
    assert (out / "model.tflite").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"], "nothing left aside"


@pytest.mark.slow
def test_held_back_photos_give_the_export_a_temperature(tmp_path) -> None:
    """``make model CALIBRATE=DIR``: folders named after ImageNet labels (or WordNet ids); the
    fitted temperature is one the manifest accepts, with the calibration error before and after."""
    import shutil

    from tests.support import MODEL_DIR, SHARED
    from training.imagenet import calibrate

    photos = tmp_path / "held-back"
    for imagenet, folder in (("ant", "ants"), ("n02206856", "bees")):  # a label, a WordNet id
        (photos / imagenet).mkdir(parents=True)
        for photo in sorted((SHARED / "datasets" / "hymenoptera" / "train" / folder).iterdir())[:10]:
            shutil.copy(photo, photos / imagenet / photo.name)
    fitted = calibrate(MODEL_DIR, photos)
    assert 0.05 <= fitted["temperature"] <= 20 and fitted["temperature"] != 1.0
    assert fitted["method"] == "temperature scaling, fitted on 20 photos of held-back"
    assert 0 <= fitted["ece_before"] <= 1 and 0 <= fitted["ece_after"] <= 1
