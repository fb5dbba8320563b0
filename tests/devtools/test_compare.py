"""``imgrec compare``: the ImageNet model against a copy that calls ants bees and bees ants (and
answers at temperature 2), on a labelled folder and on a capture prefix in moto's S3; the same
copy with a renamed class is compared over the labels both have."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest

from devtools import compare
from devtools.bad_builds import _copy, _pin
from devtools.cli import main
from handler.recognition import manifest
from tests.devtools.test_capture_export import photo, put_capture
from tests.support import MODEL_DIR, SHARED

pytestmark = [pytest.mark.slow]  # two models loaded, photos decoded in the sandbox

HYMENOPTERA = SHARED / "datasets" / "hymenoptera" / "train"


def relabelled(out: Path, rename: dict[str, str], temperature: float | None = None) -> Path:
    """The ImageNet model directory with some labels renamed (a swap when ``rename`` maps both
    ways) and optionally a calibration temperature, pinned by its own manifest."""
    fields = _copy(MODEL_DIR, out)
    entries = json.loads((out / manifest.LABELS_FILE).read_text())
    renamed = [[class_id, rename.get(label, label)] for class_id, label in entries]
    (out / manifest.LABELS_FILE).write_text(json.dumps(renamed, indent=0) + "\n")
    if temperature is not None:
        fields["calibration"] = {"temperature": temperature, "method": "set by hand for a test"}
    fields["version"] = "swapped"
    return _pin(out, fields)


@pytest.fixture(scope="module")
def swapped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return relabelled(tmp_path_factory.mktemp("swapped"), {"ant": "bee", "bee": "ant"}, temperature=2.0)


@pytest.fixture(scope="module")
def renamed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return relabelled(tmp_path_factory.mktemp("renamed"), {"bee": "honeybee"})


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("labelled")
    for folder, name in (("ant", "ants"), ("bee", "bees")):
        (data / folder).mkdir()
        for source in sorted((HYMENOPTERA / name).iterdir())[:5]:
            shutil.copy(source, data / folder / source.name)
    (data / "notes.txt").write_text("a top-level file: not a class")
    return data


@pytest.fixture(scope="module")
def on_folder(swapped: Path, labelled: Path) -> dict:
    return compare.run(MODEL_DIR, swapped, str(labelled))


def test_on_a_labelled_folder_the_swap_changes_exactly_the_ant_and_bee_answers(on_folder: dict) -> None:
    result = on_folder
    assert result["images"] == 10 and result["labelled"] == 10 and result["same_classes"]
    assert result["a"]["temperature"] == 1.0 and result["b"]["temperature"] == 2.0
    changed = result["changed"]
    assert changed, "MobileNetV2 calls some of these ants or bees"
    for row in changed:
        assert {row["a"]["label"], row["b"]["label"]} == {"ant", "bee"}
        assert row["b"]["probability"] < row["a"]["probability"], "T = 2 softens the same top answer"
        assert row["truth"] in ("ant", "bee") and row["image"].split("/")[0] == row["truth"]
    assert result["top1_agreement"] == {"agree": 10 - len(changed), "rate": (10 - len(changed)) / 10}
    a, b = result["accuracy"]["a"], result["accuracy"]["b"]
    gained = sum(row["truth"] == row["b"]["label"] for row in changed)
    lost = sum(row["truth"] == row["a"]["label"] for row in changed)
    assert b["correct"] == a["correct"] + gained - lost
    assert (
        a["accuracy"] == a["correct"] / 10 and a["accuracy_95ci"][0] <= a["accuracy"] <= a["accuracy_95ci"][1]
    )


def test_different_class_lists_are_compared_over_the_shared_labels(renamed: Path, labelled: Path) -> None:
    result = compare.run(MODEL_DIR, renamed, str(labelled))
    assert not result["same_classes"] and len(result["shared_labels"]) == 999
    assert result["only_a"] == ["bee"] and result["only_b"] == ["honeybee"]
    assert result["labelled"] == 5 and result["truth_outside_shared_labels"] == 5, "the bees: no shared label"
    assert result["top1_agreement"]["agree"] == 10, "over the shared labels the two are one model"


@pytest.fixture(scope="module")
def captured(s3_client) -> tuple[str, dict[str, str]]:
    bucket = f"compare-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    ids = {
        "ant": put_capture(s3_client, bucket, photo("ants", 0), feedback="ant"),
        "bee": put_capture(s3_client, bucket, photo("bees", 0), feedback="bee", version="2"),
        "unlabelled": put_capture(s3_client, bucket, photo("bees", 1)),
        "bad feedback": put_capture(s3_client, bucket, photo("ants", 1), feedback=b"{oops"),
        "no image": put_capture(s3_client, bucket, photo("ants", 2), feedback="ant", image=False),
        # Not the truth by default: an anonymous correction, and one without a recorded caller.
        "anonymous": put_capture(s3_client, bucket, photo("bees", 2), anonymous="bee"),
        "no caller": put_capture(s3_client, bucket, photo("ants", 3), feedback="ant", caller=None),
    }
    ids["broken"] = put_capture(s3_client, bucket, b"\xff\xd8 not a photo")
    # Not a capture: a name that is no prediction id, put below the prefix by someone else.
    s3_client.put_object(Bucket=bucket, Key="capture/x/1/2026/11/27/broken.jpg", Body=b"\xff\xd8 not a photo")
    return bucket, ids


def test_on_a_capture_prefix_feedback_is_the_truth(
    captured, swapped: Path, moto_s3: str, capsys: pytest.CaptureFixture
) -> None:
    bucket, ids = captured
    assert (
        main(
            [
                "compare",
                str(MODEL_DIR),
                str(swapped),
                f"s3://{bucket}/capture/",
                "--json",
                "--endpoint-url",
                moto_s3,
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 6 and result["labelled"] == 2, "trusted corrections only"
    assert result["corrections"] == {"trusted": 2, "anonymous": 1, "untrusted": 2, "include_anonymous": False}
    assert [s["file"] for s in result["skipped"]] == [ids["broken"]]
    truth = {row["image"]: row["truth"] for row in result["changed"]}
    assert truth.get(ids["unlabelled"]) is None and truth.get(ids["bad feedback"]) is None
    assert truth.get(ids["anonymous"]) is None and truth.get(ids["no caller"]) is None
    for key in ("ant", "bee"):
        if ids[key] in truth:
            assert truth[ids[key]] == key
    assert ids["no image"] not in truth


def test_anonymous_corrections_are_truth_only_when_included(captured, s3_client) -> None:
    bucket, ids = captured
    url = f"s3://{bucket}/capture/"
    for include, expected in ((False, {}), (True, {ids["anonymous"]: "bee", ids["no caller"]: "ant"})):
        photos = compare.capture_photos(url, client=s3_client, include_anonymous=include)
        truth = dict(zip(photos.names, photos.truth, strict=True))
        assert {key: truth[key] for key in (ids["anonymous"], ids["no caller"]) if truth[key]} == expected
        assert (truth[ids["ant"]], truth[ids["bee"]]) == ("ant", "bee")
        assert photos.corrections == {"trusted": 2, "anonymous": 1, "untrusted": 2}


def test_include_anonymous_reaches_the_comparison_and_its_report(monkeypatch, capsys) -> None:
    import io

    seen = {}

    def run(model_a, model_b, data, endpoint_url=None, include_anonymous=False):
        seen["include_anonymous"] = include_anonymous
        return {"corrections": {"trusted": 1, "anonymous": 2, "untrusted": 0, "include_anonymous": True}}

    monkeypatch.setattr(compare, "run", run)
    monkeypatch.setattr(compare, "print_result", lambda result, out, as_json: out.write("ok\n"))
    assert main(["compare", "a", "b", "s3://bucket/capture/", "--include-anonymous"]) == 0
    assert seen == {"include_anonymous": True}
    assert main(["compare", "a", "b", "s3://bucket/capture/"]) == 0
    assert seen == {"include_anonymous": False}
    monkeypatch.undo()
    text = io.StringIO()
    base = {
        "a": {"name": "a", "version": "1", "temperature": 1.0},
        "b": {"name": "b", "version": "2", "temperature": 1.0},
        "data": "s3://bucket/capture/",
        "same_classes": True,
        "images": 0,
        "skipped": [],
        "top1_agreement": {"agree": 0, "rate": None},
        "changed": [],
        "labelled": 0,
        "accuracy": {key: {"accuracy": None} for key in ("a", "b")},
    }
    compare.write_text(
        {**base, "corrections": {"trusted": 1, "anonymous": 2, "untrusted": 0, "include_anonymous": False}},
        text,
    )
    assert (
        "corrections: 1 from authenticated callers; 2 anonymous and 0 without a recorded caller left out"
        in (text.getvalue())
    )


def test_the_text_report(on_folder: dict) -> None:
    import io

    text = io.StringIO()
    compare.write_text(on_folder, text)
    printed = text.getvalue()
    assert printed.startswith("A: imagenet") or printed.startswith("A: ")
    assert "B: " in printed and "(T = 2)" in printed and "images: 10\n" in printed
    agree = on_folder["top1_agreement"]["agree"]
    assert f"top-1 agreement: {agree} of 10" in printed
    assert f"changed predictions: {len(on_folder['changed'])}\n" in printed
    assert "labelled: 10 of 10\n" in printed and "accuracy A: " in printed and "95 % CI" in printed
    row = on_folder["changed"][0]
    assert f"  {row['image']}: A {row['a']['label']} " in printed and f"truth {row['truth']}" in printed


def test_a_comparison_with_nothing_shared_is_a_message(
    tmp_path: Path, labelled: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["compare", str(MODEL_DIR), str(tmp_path / "missing"), str(labelled)]) == 2
    assert "imgrec compare:" in capsys.readouterr().err


def test_captures_decode_a_chunk_at_a_time_with_the_same_result(captured, s3_client, monkeypatch) -> None:
    """Thousands of captures must not all sit in memory before decoding: chunks of one photo give
    what chunks of 32 give."""
    bucket, _ = captured
    whole = compare.capture_photos(f"s3://{bucket}/capture/", client=s3_client)
    monkeypatch.setattr(compare, "DECODE_CHUNK", 1)
    chunked = compare.capture_photos(f"s3://{bucket}/capture/", client=s3_client)
    assert chunked.names == whole.names and chunked.truth == whole.truth and chunked.skipped == whole.skipped
    assert len(chunked.names) == 6 and (chunked.images[np.arange(6)] == whole.images[np.arange(6)]).all()
