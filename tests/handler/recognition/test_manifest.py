"""A broken model directory never serves: the manifest's schema, its files, the labels count and the
input it asks for, checked at cold start (``load_classifier``) and at synth (``Settings``); every
error names the file and the field."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from handler.recognition import manifest, model
from handler.recognition.manifest import LABELS_FILE, MANIFEST_FILE, ManifestError
from layers.model import manifest_writer
from tests.support import MODEL_DIR, REPO


def variant(target: Path, edit: Callable[[dict, list], None] | None = None) -> Path:
    """A copy of the model directory (model files hard-linked: never written here) whose manifest
    and labels ``edit`` changes, with the sha256 re-written so only what ``edit`` did is wrong."""
    target.mkdir(parents=True)
    for source in MODEL_DIR.iterdir():
        if source.is_dir():  # check/: the gate's, not the function's
            continue
        if source.name in (MANIFEST_FILE, LABELS_FILE):
            shutil.copy2(source, target / source.name)
        else:
            os.link(source, target / source.name)
    fields = json.loads((target / MANIFEST_FILE).read_text())
    labels = json.loads((target / LABELS_FILE).read_text())
    if edit:
        edit(fields, labels)
    (target / LABELS_FILE).write_text(json.dumps(labels, indent=0) + "\n")
    files = list(fields.pop("files"))
    manifest_writer.write(target, fields, files)
    return target


def load(model_dir: Path) -> model.Classifier:
    return model.load_classifier(model_dir, "litert", threads=1)


def test_the_built_model_passes() -> None:
    assert manifest.validate(MODEL_DIR)["name"] == "mobilenet_v2"


def test_a_garbled_manifest_names_the_file(tmp_path: Path) -> None:
    copy = variant(tmp_path / "model")
    (copy / MANIFEST_FILE).write_text('{"name": "mobilenet_v2", "version": ')
    with pytest.raises(ManifestError, match=r"manifest\.json: not valid JSON \(.*line 1 column"):
        load(copy)


def test_a_manifest_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    copy = variant(tmp_path / "model")
    (copy / MANIFEST_FILE).write_text("[]\n")
    with pytest.raises(ManifestError, match=r"manifest\.json: must be a JSON object"):
        load(copy)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda f, _: f.pop("name"), r"'name' is missing"),
        (lambda f, _: f.pop("version"), r"'version' is missing"),
        (lambda f, _: f.pop("input"), r"'input' is missing"),
        (lambda f, _: f["input"].pop("channels"), r"'input\.channels' is missing"),
        (lambda f, _: f.pop("preprocessing"), r"'preprocessing' is missing"),
        (lambda f, _: f.update(version=1), r"'version' must be str, got int 1"),
        (lambda f, _: f.update(name=""), r"'name' is empty"),
        (lambda f, _: f["input"].update(height="224"), r"'input\.height' must be int, got str '224'"),
        (lambda f, _: f["input"].update(width=True), r"'input\.width' must be int, got bool"),
        (lambda f, _: f.update(input=[224, 224, 3]), r"'input' must be dict, got list"),
        (lambda f, _: f["output"].update(classes="1000"), r"'output\.classes' must be int"),
    ],
    ids=["name", "version", "input", "channels", "preprocessing", "version-int", "name-empty",
         "height-str", "width-bool", "input-list", "classes-str"],
)  # fmt: skip
def test_a_missing_or_mistyped_field_is_named(tmp_path: Path, edit: Callable, field: str) -> None:
    copy = variant(tmp_path / "model", edit)
    with pytest.raises(ManifestError, match=rf"manifest\.json: field {field}"):
        load(copy)


def test_a_bad_sha256_entry_is_named(tmp_path: Path) -> None:
    copy = variant(tmp_path / "model")
    fields = json.loads((copy / MANIFEST_FILE).read_text())
    fields["files"][LABELS_FILE]["sha256"] = "not-a-digest"
    (copy / MANIFEST_FILE).write_text(json.dumps(fields))
    with pytest.raises(ManifestError, match=r"manifest\.json: field 'files\.labels\.json\.sha256'"):
        load(copy)


def test_a_listed_file_that_is_missing_is_named(tmp_path: Path) -> None:
    copy = variant(tmp_path / "model")
    (copy / "mobilenet_v2.tflite").unlink()
    with pytest.raises(model.IntegrityError, match=r"tflite is listed in .*manifest\.json \(field 'files'\)"):
        load(copy)


def test_the_function_needs_no_keras_file_but_synth_checks_every_file(tmp_path: Path) -> None:
    """The zip layers ship the model without its ``.keras`` file: the litert cold start does not
    read it, so does not miss it; the synth-time check (every file listed) does."""
    copy = variant(tmp_path / "model")
    (copy / "mobilenet_v2.keras").unlink()
    assert load(copy).info.name == "mobilenet_v2"
    with pytest.raises(model.IntegrityError, match=r"keras is listed in .*manifest\.json \(field 'files'\)"):
        manifest.validate(copy)


@pytest.mark.parametrize("size", [(160, 160, 3), (224, 224, 1), (299, 299, 3)])
def test_an_input_size_the_decoder_does_not_make_is_refused(tmp_path: Path, size: tuple) -> None:
    def edit(fields: dict, _: list) -> None:
        fields["input"].update(height=size[0], width=size[1], channels=size[2])

    copy = variant(tmp_path / "model", edit)
    with pytest.raises(ManifestError, match=r"manifest\.json: field 'input\.\w+' is \d+.* 224x224x3"):
        load(copy)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("preprocessing", "scale", "x / 255"),
        ("preprocessing", "color", "BGR"),
        ("preprocessing", "resize", "nearest"),
        ("input", "dtype", "int8"),
    ],
)
def test_an_unsupported_input_or_scaling_is_refused(
    tmp_path: Path, section: str, key: str, value: str
) -> None:
    copy = variant(tmp_path / "model", lambda f, _: f[section].update({key: value}))
    with pytest.raises(
        ManifestError, match=rf"manifest\.json: field '{section}\.{key}' is '{value}'.*not implement"
    ):
        load(copy)


@pytest.mark.parametrize(("key", "value"), [("keras_mode", "tf"), ("mean", "0.5")])
def test_a_preprocessing_step_nothing_implements_is_refused(tmp_path: Path, key: str, value: str) -> None:
    copy = variant(tmp_path / "model", lambda f, _: f["preprocessing"].update({key: value}))
    with pytest.raises(
        ManifestError, match=rf"manifest\.json: field 'preprocessing\.{key}' is '{value}': not a field"
    ):
        load(copy)


def test_a_manifest_that_states_no_scaling_is_refused(tmp_path: Path) -> None:
    def edit(fields: dict, _: list) -> None:
        fields["preprocessing"] = {"color": "RGB", "resize": "bilinear"}

    copy = variant(tmp_path / "model", edit)
    with pytest.raises(ManifestError, match=r"manifest\.json: field 'preprocessing\.scale' is missing"):
        load(copy)


def test_a_model_exported_with_scaling_outside_is_refused_with_how_to_fix_it(tmp_path: Path) -> None:
    """A model directory exported before scaling moved into the graph: float32 input, scaled by the
    caller. Served, it would get unscaled pixels: refused at cold start, saying to re-export."""

    def edit(fields: dict, _: list) -> None:
        fields["input"]["dtype"] = "float32"
        fields["preprocessing"] = {"color": "RGB", "resize": "bilinear", "scale": "x / 127.5 - 1"}
        fields["preprocessing"]["keras_mode"] = "tf"

    copy = variant(tmp_path / "model", edit)
    refused = r"'input\.dtype' is 'float32': a model exported before .*re-export"
    with pytest.raises(ManifestError, match=refused):
        load(copy)


def test_a_manifest_that_misstates_the_models_input_type_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A float32 model under a hand-edited uint8 manifest: the loaded model is the judge."""
    original = model.ENGINES["litert"]

    class TakingFloats(original):  # type: ignore[misc, valid-type]
        def __init__(self, path: Path, threads: int) -> None:
            super().__init__(path, threads)
            self.input_dtype = "float32"

    monkeypatch.setitem(model.ENGINES, "litert", TakingFloats)
    with pytest.raises(
        ManifestError, match=r"\.tflite takes float32 pixels but .*field 'input\.dtype' says uint8"
    ):
        load(variant(tmp_path / "model"))


@pytest.mark.parametrize("count", [500, 980, 999, 1001])
def test_labels_that_disagree_with_output_classes_are_refused(tmp_path: Path, count: int) -> None:
    """Caught without loading the model (so also at synth): the manifest's ``output.classes``."""
    copy = variant(tmp_path / "model", lambda _, labels: resize(labels, count))
    with pytest.raises(
        ManifestError,
        match=rf"labels\.json has {count} labels but .*manifest\.json field 'output\.classes' says 1000",
    ):
        manifest.validate(copy)
    with pytest.raises(ManifestError, match=rf"labels\.json has {count} labels"):
        load(copy)


@pytest.mark.parametrize("count", [500, 980, 999, 1001])
def test_labels_that_disagree_with_the_model_outputs_are_refused(tmp_path: Path, count: int) -> None:
    """A manifest without ``output``: the loaded model's output size is the judge, at cold start."""

    def edit(fields: dict, labels: list) -> None:
        fields.pop("output")
        resize(labels, count)

    copy = variant(tmp_path / "model", edit)
    manifest.validate(copy)  # nothing to compare with before the model is loaded
    with pytest.raises(
        ManifestError, match=rf"labels\.json has {count} labels but .*mobilenet_v2\.tflite has 1000 outputs"
    ):
        load(copy)


def test_malformed_labels_are_named(tmp_path: Path) -> None:
    copy = variant(tmp_path / "model", lambda _, labels: labels.__setitem__(3, ["n01", 7]))
    with pytest.raises(ManifestError, match=r"labels\.json: entry 3 must be a label or an \[id, label\]"):
        load(copy)


def test_a_model_whose_input_differs_from_the_manifest_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = model.ENGINES["litert"]

    class Smaller(original):  # type: ignore[misc, valid-type]
        def __init__(self, path: Path, threads: int) -> None:
            super().__init__(path, threads)
            self.input_shape = (160, 160, 3)

    monkeypatch.setitem(model.ENGINES, "litert", Smaller)
    with pytest.raises(
        ManifestError,
        match=r"mobilenet_v2\.tflite takes input \(160, 160, 3\) but .*manifest\.json field 'input'",
    ):
        load(variant(tmp_path / "model"))


def resize(labels: list, count: int) -> None:
    """``labels`` cut or padded to ``count`` entries."""
    del labels[count:]
    labels.extend(["extra_class"] * (count - len(labels)))


@pytest.fixture
def broken_in_build() -> Iterator[Path]:
    """A broken model directory under build/ (``modelDir`` is relative to the repository)."""
    target = REPO / "build" / f"test-broken-model-{uuid.uuid4().hex[:8]}"
    yield target
    shutil.rmtree(target, ignore_errors=True)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f, _: f["input"].update(height="224"), r"field 'input\.height' must be int"),
        (lambda f, _: f["preprocessing"].update(scale="x / 255"), r"field 'preprocessing\.scale'"),
        (lambda _, labels: resize(labels, 980), r"labels\.json has 980 labels .* 'output\.classes'"),
    ],
    ids=["mistyped", "scaling", "labels"],
)
def test_synth_refuses_a_broken_model_dir(broken_in_build: Path, edit: Callable, message: str) -> None:
    from infra.settings import Settings

    variant(broken_in_build, edit)
    relative = broken_in_build.relative_to(REPO)
    with pytest.raises(ValueError, match=rf"modelDir {relative}: .*{message}"):
        Settings(model_dir=str(relative))


def test_synth_refuses_a_tampered_model_file(broken_in_build: Path) -> None:
    from infra.settings import Settings

    variant(broken_in_build)
    labels = broken_in_build / LABELS_FILE
    labels.write_text(labels.read_text().replace("military_uniform", "pajama"))
    relative = broken_in_build.relative_to(REPO)
    with pytest.raises(ValueError, match=rf"modelDir {relative}: .*labels\.json has sha256"):
        Settings(model_dir=str(relative))


def pointing_outside(tmp_path: Path, how: str) -> Path:
    """A model directory whose manifest serves a .tflite from outside it, its sha256 correctly
    pinned: by an absolute path, a ``..``, or a symlink inside the folder that leaves it."""
    outside = tmp_path / "elsewhere.tflite"
    shutil.copy2(MODEL_DIR / "mobilenet_v2.tflite", outside)
    names = {"absolute": str(outside), "dotdot": "../elsewhere.tflite", "symlink": "linked.tflite"}
    copy = variant(tmp_path / "model")
    if how == "symlink":
        (copy / "linked.tflite").symlink_to(outside)
    fields = json.loads((copy / MANIFEST_FILE).read_text())
    fields["artifacts"] = {**fields.get("artifacts", {}), "tflite": names[how]}
    files = [*fields.pop("files"), names[how]]
    manifest_writer.write(copy, fields, files)  # the hash of the file it names: "right checksum"
    return copy


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_a_manifest_never_serves_a_file_outside_its_directory(tmp_path: Path, how: str) -> None:
    copy = pointing_outside(tmp_path, how)
    message = r"leaves the model directory" if how == "symlink" else r"is not a file name inside the model"
    with pytest.raises(ManifestError, match=message):
        load(copy)
    with pytest.raises(ManifestError, match=message):
        manifest.validate(copy)


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_synth_refuses_a_manifest_that_points_outside(broken_in_build: Path, how: str) -> None:
    from infra.settings import Settings

    broken_in_build.mkdir()
    relative = pointing_outside(broken_in_build, how).relative_to(REPO)
    with pytest.raises(ValueError, match=rf"modelDir {relative}: .*(inside the model|leaves the model)"):
        Settings(model_dir=str(relative))


@pytest.mark.parametrize("section", ["output", "calibration", "in_domain"])
def test_an_optional_section_given_as_null_is_refused_not_served(tmp_path: Path, section: str) -> None:
    """``null`` where an optional object belongs: refused by name at synth and cold start alike,
    never let through to fail later as an ``AttributeError``."""
    copy = variant(tmp_path / "model", lambda fields, labels: fields.update({section: None}))
    with pytest.raises(ManifestError, match=rf"field '{section}' is null; leave the field out"):
        manifest.validate(copy)
    with pytest.raises(ManifestError, match=rf"field '{section}' is null"):
        load(copy)
