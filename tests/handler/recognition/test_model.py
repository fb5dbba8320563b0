"""Both backends on real photos, the manifest check, and loading errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from handler.recognition import imaging, model
from handler.recognition.manifest import KERAS_FILE, TFLITE_FILE
from tests.support import CAT_CLASSES, MODEL_DIR

LIMITS = imaging.DecodeLimits(max_bytes=6 * 1024 * 1024, max_pixels=40_000_000)


@pytest.fixture(scope="module", params=["litert", pytest.param("keras", marks=pytest.mark.slow)])
def classifier(request: pytest.FixtureRequest) -> model.Classifier:
    return model.load_classifier(MODEL_DIR, request.param, threads=2)


@pytest.fixture(scope="module")
def photos(grace_hopper: bytes, cat: bytes) -> np.ndarray:
    return np.stack([imaging.to_pixels(grace_hopper, LIMITS), imaging.to_pixels(cat, LIMITS)])


def test_grace_hopper_is_a_military_uniform(classifier: model.Classifier, photos: np.ndarray) -> None:
    (top,) = classifier.classify(photos[:1], top_k=5)
    assert top[0].label == "military_uniform"
    assert top[0].class_id == "n03763968"
    assert top[0].probability > 0.8
    assert [p.probability for p in top] == sorted((p.probability for p in top), reverse=True)


def test_cat_is_a_cat(classifier: model.Classifier, photos: np.ndarray) -> None:
    (top,) = classifier.classify(photos[1:], top_k=5)
    assert top[0].label in CAT_CLASSES
    assert {p.label for p in top[:3]} >= {"Egyptian_cat", "tabby"}


def test_batch_gives_the_same_answer_as_single_images(
    classifier: model.Classifier, photos: np.ndarray
) -> None:
    batch = classifier.classify(photos, top_k=5)
    singles = [classifier.classify(photos[i : i + 1], top_k=5)[0] for i in range(2)]
    for together, alone in zip(batch, singles, strict=True):
        assert [p.label for p in together] == [p.label for p in alone]
        np.testing.assert_allclose(
            [p.probability for p in together], [p.probability for p in alone], atol=1e-4
        )


def test_model_info_names_the_backend(classifier: model.Classifier) -> None:
    assert classifier.info.name == "mobilenet_v2"
    assert classifier.info.backend in {"litert", "keras"}
    assert classifier.info.version


@pytest.mark.slow
def test_both_backends_rank_the_top5_identically(photos: np.ndarray) -> None:
    litert = model.load_classifier(MODEL_DIR, "litert", threads=2).classify(photos, top_k=5)
    keras = model.load_classifier(MODEL_DIR, "keras", threads=2).classify(photos, top_k=5)
    for lite_top, keras_top in zip(litert, keras, strict=True):
        assert [p.label for p in lite_top] == [p.label for p in keras_top]
        np.testing.assert_allclose(
            [p.probability for p in lite_top], [p.probability for p in keras_top], atol=1e-3
        )


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(MODEL_DIR, copy)
    return copy


@pytest.mark.parametrize("backend", ["litert", pytest.param("keras", marks=pytest.mark.slow)])
def test_a_tampered_model_file_fails_loudly(model_copy: Path, backend: str) -> None:
    target = model_copy / (TFLITE_FILE if backend == "litert" else KERAS_FILE)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(model.IntegrityError, match=r"sha256 .* manifest says"):
        model.load_classifier(model_copy, backend, threads=1)


def test_tampered_labels_fail_loudly(model_copy: Path) -> None:
    labels = model_copy / "labels.json"
    labels.write_text(labels.read_text().replace("military_uniform", "pajama"))
    with pytest.raises(model.IntegrityError, match=r"labels\.json"):
        model.load_classifier(model_copy, "litert", threads=1)


def test_a_missing_model_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(model.ModelError, match="make model"):
        model.load_classifier(tmp_path, "litert", threads=1)


def test_an_unknown_backend_is_refused() -> None:
    with pytest.raises(model.ModelError, match="litert, keras"):
        model.load_classifier(MODEL_DIR, "onnx", threads=1)
