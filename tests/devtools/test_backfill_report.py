"""``imgrec backfill``'s report.csv opens safely in a spreadsheet: keys are data, never formulas."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from devtools import backfill

HOSTILE_KEYS = ['=HYPERLINK("http://x.example","click")', "+1+1", "-2+3", "@SUM(A1)", "\tx.jpg", "\rx.jpg"]


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_a_formula_key_is_written_as_text(key: str, tmp_path: Path) -> None:
    rows = [
        backfill._row("bucket", key, "classified", None),
        backfill._row("bucket", "a/b.jpg", "skipped", None),
    ]
    backfill._finish(backfill.Options("s3://bucket/"), tmp_path, rows, 1, 1.0, io.StringIO())
    with (tmp_path / "report.csv").open(newline="") as handle:
        written = {row["Key"] for row in csv.DictReader(handle)}
    assert written == {"'" + key, "a/b.jpg"}, "neutralised with a leading quote (OWASP), others unchanged"
