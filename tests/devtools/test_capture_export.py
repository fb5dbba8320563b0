"""``imgrec dataset export``: captures in the contract's S3 layout (on moto) -> a folder per
feedback label, ``review.csv`` for uncertain answers nobody labelled, and a summary; hostile
captures (a label ``../evil``, JSON that is not JSON, an image gone) are counted, never a crash.
Only corrections from authenticated callers are used unless ``--include-anonymous``."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devtools import capture_export
from devtools.cli import main
from handler.answers.capture import PredictionId
from tests.support import SHARED

HYMENOPTERA = SHARED / "datasets" / "hymenoptera" / "train"


# The caller a trusted correction records (API Gateway authenticated it: handler/http/feedback.py).
REVIEWER_ARN = "arn:aws:iam::111122223333:user/reviewer"


def photo(name: str, index: int) -> bytes:
    return sorted((HYMENOPTERA / name).iterdir())[index].read_bytes()


def put_capture(
    client,
    bucket: str,
    data: bytes,
    *,
    prefix: str = "capture/",
    model: str = "ants and bees",
    version: str = "1.0.0",
    minutes: int = 0,
    feedback: str | bytes | None = None,
    answer: bytes | None = None,
    uncertain: bool | None = None,
    image: bool = True,
    top: tuple[str, float] = ("ants", 0.55),
    classes: tuple[str, ...] | None = ("ants", "bees"),
    caller: str | None = REVIEWER_ARN,
    anonymous: str | None = None,
) -> str:
    """One capture as the function stores it (contract layout); its prediction id. ``feedback``:
    a correction from ``caller`` (None: a record without one, as before callers were recorded);
    ``anonymous``: an anonymous correction's label (FEEDBACK_AUTH=none)."""
    when = datetime(2026, 11, 27, 21, 44, 20, tzinfo=UTC) + timedelta(minutes=minutes)
    identity = PredictionId(model, version, when, hashlib.sha256(data).hexdigest())
    pid, base = str(identity), identity.key(prefix, "x")[: -len(".x")]
    if image:
        client.put_object(Bucket=bucket, Key=f"{base}.jpg", Body=data)
    if classes is not None:  # as the function records each model version's classes beside its captures
        labels_key = f"{prefix}{identity.folder}labels.json"
        client.put_object(Bucket=bucket, Key=labels_key, Body=json.dumps(list(classes)).encode())
    record = {
        "prediction_id": pid,
        "time": when.isoformat().replace("+00:00", "Z"),
        "source": "api",
        "image": {"key": f"{base}.jpg", "sha256": pid.rsplit(":", 1)[1], "bytes": len(data)},
        "model": {"name": model, "version": version, "backend": "litert"},
        "predictions": [{"label": top[0], "probability": top[1]}, {"label": "bees", "probability": 0.45}],
        "sampled_by": "rate",
    }
    if uncertain is not None:
        record["uncertain"] = uncertain
    client.put_object(Bucket=bucket, Key=f"{base}.json", Body=answer or json.dumps(record).encode())
    if feedback is not None:
        record = {"prediction_id": pid, "label": feedback, "time": "2026-11-28T08:00:00Z"}
        if caller is not None:
            record["caller"] = {"arn": caller, "account": caller.split(":")[4]}
        body = feedback if isinstance(feedback, bytes) else json.dumps(record).encode()
        client.put_object(Bucket=bucket, Key=f"{base}.feedback.json", Body=body)
    if anonymous is not None:
        record = {"prediction_id": pid, "label": anonymous, "time": "2026-11-28T09:00:00Z", "caller": None}
        client.put_object(
            Bucket=bucket, Key=f"{base}.anonymous-feedback.json", Body=json.dumps(record).encode()
        )
    return pid


@pytest.fixture
def stored(s3_client, bucket: str) -> dict[str, str]:
    """Two labelled ants, a labelled bee (another model version, another day), an uncertain answer
    and a confident one without feedback, and the hostile cases."""
    put = lambda data, **kw: put_capture(s3_client, bucket, data, **kw)  # noqa: E731
    ids = {
        "ant1": put(photo("ants", 0), feedback="ants", uncertain=False),
        "ant2": put(photo("ants", 1), feedback="ants"),
        "bee": put(photo("bees", 0), feedback="bees", version="1.1.0", minutes=60 * 30),
        "uncertain": put(photo("bees", 1), uncertain=True, top=("bees", 0.52)),
        "confident": put(photo("bees", 2), uncertain=False),
        "evil": put(photo("ants", 2), feedback="../evil"),
        "not json": put(photo("ants", 3), answer=b"{not json", uncertain=True),
        "feedback not json": put(photo("ants", 4), feedback=b"\xff\xfe garbage"),
        "gone": put(photo("ants", 5), feedback="ants", image=False),
    }
    s3_client.put_object(Bucket=bucket, Key="capture/README.txt", Body=b"not a capture")
    return ids


def test_export_writes_a_folder_per_label_and_the_review_list(
    s3_client, moto_s3: str, bucket: str, stored: dict, tmp_path: Path
) -> None:
    out = tmp_path / "exports" / "first"
    summary = capture_export.export(f"s3://{bucket}/capture/", out, client=s3_client)
    assert summary.exported == {"ants": 2, "bees": 1} and summary.to_review == 1 and summary.captures == 9
    assert summary.skipped == {
        "label is not a safe folder name": 1,
        "unreadable answer JSON": 1,
        "unreadable feedback JSON": 1,
        "image missing": 1,
    }
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    safe = {key: capture_export.safe_file_name(stored[key]) for key in ("ant1", "ant2", "bee")}
    assert names == sorted(
        [
            ".imgrec-export.json",
            "ants",
            "bees",
            "review.csv",
            f"ants/{safe['ant1']}.jpg",
            f"ants/{safe['ant2']}.jpg",
            f"bees/{safe['bee']}.jpg",
        ]
    )
    assert all(":" not in name and "%" not in name for name in names)
    assert (out / "ants" / f"{safe['ant1']}.jpg").read_bytes() == photo("ants", 0)
    assert sorted(p.name for p in tmp_path.rglob("*") if "evil" in p.name) == [], (
        "nothing written for ../evil"
    )
    assert [p.name for p in (tmp_path / "exports").iterdir()] == ["first"], "no staging folder left"
    with (out / "review.csv").open(newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    image_key = json.loads(
        s3_client.get_object(Bucket=bucket, Key=f"{_key(stored['uncertain'])}.json")["Body"].read()
    )
    assert row == {
        "prediction_id": stored["uncertain"],
        "image": f"s3://{bucket}/{image_key['image']['key']}",
        "model": "ants and bees",
        "version": "1.0.0",
        "label": "bees",
        "probability": "0.52",
        "time": "2026-11-27T21:44:20Z",
    }
    marker = json.loads((out / ".imgrec-export.json").read_text())
    assert marker["source"] == f"s3://{bucket}/capture/" and marker["exported"] == {"ants": 2, "bees": 1}


def _key(pid: str) -> str:
    model, version, stamp, _ = pid.split(":")
    return f"capture/{model}/{version}/{stamp[:4]}/{stamp[4:6]}/{stamp[6:8]}/{pid}"


def test_a_narrower_prefix_exports_only_what_is_below_it(
    s3_client, bucket: str, stored, tmp_path: Path
) -> None:
    out = tmp_path / "bees-only"
    summary = capture_export.export(f"s3://{bucket}/capture/ants%20and%20bees/1.1.0/", out, client=s3_client)
    assert summary.exported == {"bees": 1} and summary.captures == 1 and not summary.skipped


def test_out_must_be_new_empty_or_an_earlier_export(s3_client, bucket: str, stored, tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(capture_export.ExportError, match="is not an earlier export"):
        capture_export.export(f"s3://{bucket}/capture/", busy, client=s3_client)
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    out = tmp_path / "again"
    capture_export.export(f"s3://{bucket}/capture/", out, client=s3_client)
    (out / "ants" / "stale.jpg").write_bytes(b"from an earlier export")
    capture_export.export(f"s3://{bucket}/capture/", out, client=s3_client)  # replaced as a whole
    assert not (out / "ants" / "stale.jpg").exists() and len(list((out / "ants").iterdir())) == 2
    with pytest.raises(capture_export.ExportError, match="expected s3://BUCKET/PREFIX"):
        capture_export.export("https://example.com/x", tmp_path / "x", client=s3_client)


@pytest.mark.parametrize(
    ("label", "safe"),
    [
        ("ants", True),
        ("honey bee", True),
        ("Ameise", True),
        ("../evil", False),
        ("..", False),
        (".hidden", False),
        ("a/b", False),
        ("a\\b", False),
        ("", False),
        (" ants", False),
        ("tab\there", False),
        ("review.csv", False),
        ("x" * 101, False),
        (7, False),
        ("CON", False),  # Windows cannot make these folders: an export copied to a laptop must work
        ("aux.txt", False),
        ("a:b", False),
        ("bees.", False),
        ("what?", False),
    ],
)
def test_only_safe_folder_names_become_classes(label, safe: bool) -> None:
    assert (capture_export.safe_label(label) == label) is safe


def test_the_export_is_a_data_folder_the_loader_reads(s3_client, bucket: str, stored, tmp_path: Path) -> None:
    """review.csv and the marker are top-level files: not classes, not photos."""
    from training.dataset import load

    out = tmp_path / "export"
    capture_export.export(f"s3://{bucket}/capture/", out, client=s3_client)
    dataset = load(out, progress=False, min_per_class=1)
    assert dataset.classes == ["ants", "bees"] and dataset.counts() == {"ants": 2, "bees": 1}
    assert dataset.skipped == []


def test_the_cli_prints_the_summary(moto_s3: str, bucket: str, stored, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    args = ["dataset", "export", f"s3://{bucket}/capture/", "--out", str(out), "--endpoint-url", moto_s3]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"exported 3 labelled photo(s) to {out}" in printed
    assert "  ants: 2\n  bees: 1\n" in printed and "to review: 1 uncertain" in printed
    assert "skipped: 4\n" in printed and "  label is not a safe folder name: 1\n" in printed
    assert main(args) == 0, "again, into its own earlier export"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("x")
    assert main([*args[:3], "--out", str(tmp_path / "other"), "--endpoint-url", moto_s3]) == 2
    assert "is not an earlier export" in capsys.readouterr().err


def test_the_review_list_cannot_run_formulas_and_look_alike_ids_never_overwrite(
    s3_client, bucket: str, tmp_path: Path
) -> None:
    """A model named ``=cmd|...`` (or a forged answer) opens in a spreadsheet as text; two ids
    that read the same once file-safe (``a%`` and ``a_25``) are two files; an ``X.jpg`` and
    ``X.feedback.json`` someone else put below the prefix are not a capture."""
    put_capture(s3_client, bucket, b"\xff\xd8 one", model="=HYPERLINK(1)", uncertain=True, top=("-2+3", 0.4))
    put_capture(s3_client, bucket, b"\xff\xd8 two", model="a%", feedback="ants")
    put_capture(s3_client, bucket, b"\xff\xd8 two", model="a_25", feedback="ants")
    s3_client.put_object(Bucket=bucket, Key="capture/x/1/2026/11/27/planted.jpg", Body=b"\xff\xd8")
    s3_client.put_object(
        Bucket=bucket, Key="capture/x/1/2026/11/27/planted.feedback.json", Body=b'{"label": "ants"}'
    )
    out = tmp_path / "export"
    capture_export.export(f"s3://{bucket}/capture/", out, client=s3_client)
    assert len(list((out / "ants").iterdir())) == 2
    (row,) = list(csv.DictReader((out / "review.csv").open()))
    assert row["model"] == "'=HYPERLINK(1)" and row["label"] == "'-2+3"


def test_a_capture_is_exported_only_when_its_label_and_bytes_check_out(
    s3_client, bucket: str, tmp_path: Path
) -> None:
    """Feedback is not trusted as it is stored: a safe folder name that is not one of the answering
    version's classes, an image whose bytes are not the ones its prediction id names, and a version
    whose classes were never recorded are each skipped and counted, never written."""
    put = lambda data, **kw: put_capture(s3_client, bucket, data, **kw)  # noqa: E731
    good = put(photo("ants", 0), feedback="ants")
    put(photo("ants", 1), feedback="military_uniform")  # a real word, not this model's class
    swapped = put(photo("bees", 0), feedback="bees", minutes=1)
    s3_client.put_object(Bucket=bucket, Key=f"{_key(swapped)}.jpg", Body=photo("bees", 1))  # other bytes
    put(photo("bees", 2), feedback="bees", model="unrecorded", classes=None)
    summary = capture_export.export(f"s3://{bucket}/capture/", tmp_path / "out", client=s3_client)
    assert summary.exported == {"ants": 1}
    assert summary.skipped == {
        "label is not a class of the model version that answered": 1,
        "image is not the one its prediction id names (sha256)": 1,
        "the answering model version's classes are unknown (no labels.json)": 1,
    }
    (exported,) = (tmp_path / "out" / "ants").iterdir()
    assert exported.read_bytes() == photo("ants", 0) and capture_export.safe_file_name(good) in exported.name


# --- Who sent a correction.


@pytest.fixture
def mixed(s3_client, bucket: str) -> dict[str, str]:
    """Corrections of every kind: trusted, anonymous, without a recorded caller, and a trusted one
    an anonymous one contradicts."""
    put = lambda data, **kw: put_capture(s3_client, bucket, data, **kw)  # noqa: E731
    return {
        "trusted": put(photo("ants", 0), feedback="ants"),
        "anonymous": put(photo("bees", 0), anonymous="bees", uncertain=True, top=("bees", 0.5)),
        "no caller": put(photo("ants", 1), feedback="ants", caller=None),
        "contradicted": put(photo("ants", 2), feedback="ants", anonymous="bees"),
    }


def test_only_corrections_from_authenticated_callers_are_exported_by_default(
    s3_client, bucket: str, mixed: dict, tmp_path: Path
) -> None:
    out = tmp_path / "trusted"
    summary = capture_export.export(f"s3://{bucket}/capture/", out, client=s3_client)
    assert summary.exported == {"ants": 2} and summary.exported_without_caller == 0
    assert summary.corrections == {"trusted": 2, "anonymous": 2, "untrusted": 1}
    assert summary.include_anonymous is False and summary.skipped == {}
    exported = {p.read_bytes() for p in out.glob("*/*")}
    assert exported == {photo("ants", 0), photo("ants", 2)}, "the trusted ones, nothing anonymous"
    with (out / "review.csv").open(newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["prediction_id"] == mixed["anonymous"], "an anonymous correction leaves it to review"
    marker = json.loads((out / ".imgrec-export.json").read_text())
    assert marker["corrections"] == summary.corrections and marker["include_anonymous"] is False


def test_include_anonymous_uses_them_and_a_trusted_correction_still_wins(
    s3_client, bucket: str, mixed: dict, tmp_path: Path
) -> None:
    out = tmp_path / "all"
    summary = capture_export.export(f"s3://{bucket}/capture/", out, client=s3_client, include_anonymous=True)
    assert summary.exported == {"ants": 3, "bees": 1} and summary.exported_without_caller == 2
    assert summary.corrections == {"trusted": 2, "anonymous": 2, "untrusted": 1}
    assert {p.read_bytes() for p in (out / "bees").iterdir()} == {photo("bees", 0)}
    assert photo("ants", 2) in {p.read_bytes() for p in (out / "ants").iterdir()}, "trusted over anonymous"
    assert summary.to_review == 0


def test_the_cli_counts_what_it_left_out_and_includes_it_on_request(
    moto_s3: str, bucket: str, mixed: dict, tmp_path: Path, capsys
) -> None:
    args = ["dataset", "export", f"s3://{bucket}/capture/", "--endpoint-url", moto_s3]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    assert "exported 2 labelled photo(s)" in printed
    assert (
        "corrections: 2 from authenticated callers; 2 anonymous and 1 without a recorded caller left out "
        "(--include-anonymous uses them)\n"
    ) in printed
    assert main([*args, "--out", str(tmp_path / "b"), "--include-anonymous"]) == 0
    printed = capsys.readouterr().out
    assert "exported 4 labelled photo(s)" in printed and "used too (--include-anonymous)" in printed
    assert "  exported from corrections without a caller: 2\n" in printed
