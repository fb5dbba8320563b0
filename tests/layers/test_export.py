"""The model directory ``make model`` builds: files, labels, manifest and checksums."""

from __future__ import annotations

import json

from handler import manifest
from tests.support import MODEL_DIR


def test_manifest_describes_the_model() -> None:
    fields = manifest.read(MODEL_DIR)
    assert fields["name"] == "mobilenet_v2"
    assert fields["version"]
    assert fields["input"] == {"height": 224, "width": 224, "channels": 3, "dtype": "float32"}
    assert fields["preprocessing"]["scale"] == "x / 127.5 - 1"
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
