"""``imgrec backfill`` on moto's S3 server: over 2,000 stored objects classified by the bulk worker
in parallel processes, a complete report, and a rerun that writes nothing."""

from __future__ import annotations

import csv
import json
import uuid

import pytest

from devtools import backfill, backfill_demo, cli
from tests.support import CAT_CLASSES

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def stored(moto_s3: str) -> tuple[str, list[str]]:
    """A bucket holding the demo archive: 3 copies of the shared photos and the awkward objects."""
    client = backfill.client_for(moto_s3)
    bucket = f"archive-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    keys = backfill_demo.upload(client, bucket, backfill_demo.archive(copies=3), progress=False)
    assert len(keys) >= 2000
    return bucket, keys


def results_state(client, bucket: str) -> dict[str, tuple[str, str]]:
    """Each result record's ETag and time: a rerun that writes nothing leaves them unchanged."""
    state = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="results/"):
        for o in page.get("Contents", []):
            state[o["Key"]] = (o["ETag"], o["LastModified"].isoformat())
    return state


def test_backfill_classifies_everything_once_and_reports_it(stored, moto_s3, tmp_path) -> None:
    bucket, keys = stored
    client = backfill.client_for(moto_s3)
    options = backfill.Options(
        f"s3://{bucket}/archive/", workers=2, endpoint_url=moto_s3, out_dir=tmp_path / "first", progress=False
    )
    summary = backfill.run(options)
    broken = len(backfill_demo.BROKEN)
    assert (summary.objects, summary.failed, summary.skipped) == (len(keys), 0, 1)  # 1: the folder marker
    assert summary.error_records == broken and summary.classified == len(keys) - broken - 1
    assert summary.errors_by_code == {code: 1 for code in backfill_demo.BROKEN.values()}

    with open(summary.report, newline="") as handle:
        rows = {row["Key"]: row for row in csv.DictReader(handle)}
    assert list(next(iter(rows.values()))) == list(backfill.REPORT_COLUMNS)
    assert set(rows) == set(keys), "one report row per stored object"
    for key, code in backfill_demo.BROKEN.items():
        assert (rows[key]["TaskStatus"], rows[key]["ErrorCode"], rows[key]["ResultMessage"]) == (
            "failed",
            "PermanentFailure",
            code,
        )
    for key in backfill_demo.ODD_NAMES:
        assert rows[key]["TaskStatus"] == "succeeded" and rows[key]["ResultMessage"] == "classified"

    def record(key: str) -> dict:
        return json.loads(client.get_object(Bucket=bucket, Key=f"results/{key}.json")["Body"].read())

    assert record("archive/2019/images/grace_hopper.jpg")["predictions"][0]["label"] == "military_uniform"
    assert record("archive/2021/images/cat.bmp")["predictions"][0]["label"] in CAT_CLASSES
    assert record(backfill_demo.ODD_NAMES[0])["predictions"][0]["label"] == "military_uniform"
    assert record("archive/broken/too-large.jpg")["code"] == "image_too_large"
    before = results_state(client, bucket)
    assert len(before) == len(keys) - 1, "every object but the folder marker has its record"

    # The rerun, through the command line: everything skipped, nothing written.
    out = tmp_path / "second"
    code = cli.main(
        ["backfill", f"s3://{bucket}/archive/", "--endpoint-url", moto_s3, "--out", str(out), "--no-progress"]
    )
    again = json.loads((out / "summary.json").read_text())
    assert code == 0 and again["skipped"] == len(keys) and again["classified"] == 0
    assert results_state(client, bucket) == before


def test_a_batch_that_keeps_failing_is_reported_not_lost(stored, moto_s3, tmp_path) -> None:
    """A batch still failing after its attempts ends as failed rows, one per object, each named."""
    bucket, keys = stored
    items = backfill.list_prefix(backfill.client_for(moto_s3), bucket, "archive/broken/")
    rows = backfill._rows_for(bucket, {"Items": items}, {"transient": "SlowDown"}, attempts=3)
    assert [r["Key"] for r in rows] == sorted(k for k in keys if k.startswith("archive/broken/"))
    assert {(r["TaskStatus"], r["ErrorCode"]) for r in rows} == {("failed", "TemporaryFailure")}
    assert "after 3 attempt(s): SlowDown" in rows[0]["ResultMessage"]


def test_the_url_must_be_an_s3_url() -> None:
    with pytest.raises(ValueError, match="s3://BUCKET/PREFIX"):
        backfill.parse_url("archive/")
