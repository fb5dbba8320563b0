"""What ``imgrec`` works out before it runs: where the weights are, what a model is called."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.cli import model_name, parser
from layers.model import weights


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A shared folder beside a pretend checkout, and that checkout's build/keras-home."""
    shared, local = tmp_path / "shared" / "models", tmp_path / "main" / "build" / "keras-home"
    monkeypatch.setattr(weights, "SHARED_MODELS", shared)
    monkeypatch.setattr(weights, "LOCAL_KERAS_HOME", local)
    return {"shared": shared, "local": local, "given": tmp_path / "given"}


def seed(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in weights.FILES:
        (folder / name).write_bytes(b"weights")


def test_a_complete_keras_home_is_used_as_it_is(places: dict[str, Path]) -> None:
    seed(places["given"] / "models")
    seed(places["shared"])
    environ = {"KERAS_HOME": str(places["given"])}
    assert "$KERAS_HOME/models" in weights.locate(environ)
    assert environ == {"KERAS_HOME": str(places["given"])} and not places["local"].exists()


def test_the_shared_models_beside_the_checkout_are_linked_into_build(places: dict[str, Path]) -> None:
    seed(places["shared"])
    for environ in ({}, {"KERAS_HOME": str(places["given"])}):  # unset, or set without the files
        said = weights.locate(environ)
        assert environ["KERAS_HOME"] == str(places["local"]), said
        for name in weights.FILES:
            link = places["local"] / "models" / name
            assert link.is_symlink() and link.resolve() == (places["shared"] / name).resolve()
    assert "lacks them" in said


def test_without_the_files_anywhere_the_error_says_what_to_set(
    places: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import keras

    monkeypatch.setenv("KERAS_HOME", str(places["given"]))

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3]")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(weights.WeightsMissing) as refused:
        weights.ensure()
    message = str(refused.value)
    assert weights.WEIGHTS_FILE in message and weights.CLASS_INDEX_FILE in message
    assert f"{places['given']}/models" in message and "KERAS_HOME" in message and "Traceback" not in message


@pytest.mark.parametrize(
    ("folders", "name"),
    [
        (["datasets/hymenoptera/train"], "hymenoptera"),
        (["photos/skin-lesions"], "skin-lesions"),
        (["delivery-notes"], "delivery-notes"),
        (["exports/local", "insects"], "insects"),
    ],
)
def test_a_model_is_named_after_its_dataset(tmp_path: Path, folders: list[str], name: str) -> None:
    assert model_name([tmp_path / folder for folder in folders]) == name


def test_a_dataset_that_names_no_subject_needs_a_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="name the model with --name"):
        model_name([tmp_path / "build" / "exports" / "local"])


def test_every_sub_command_is_bound_to_its_function() -> None:
    """Each leaf of the command tree carries its function (``set_defaults(func=...)``)."""
    import argparse

    def leaves(command: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
        nested = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        if not nested:
            return [command]
        return [leaf for child in nested[0].choices.values() for leaf in leaves(child)]

    found = leaves(parser())
    assert len(found) == 13 and all(callable(leaf.get_default("func")) for leaf in found)
