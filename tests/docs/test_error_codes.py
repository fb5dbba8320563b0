"""docs/api.md's error table against the ``Code`` enum: pure text, so it runs in the fast tier
(``make check``) and a code removed from the docs fails the inner loop, not only the full suite."""

from __future__ import annotations

import re

from handler.errors import Code
from tests.support import REPO

DOC = (REPO / "docs" / "api.md").read_text()


def documented_codes(doc: str) -> set[str]:
    """The codes listed in the table's rows (``| 413 | `a`, `b` | ...``)."""
    codes: set[str] = set()
    for cell in re.findall(r"^\| \d{3} \| ((?:`[a-z0-9_]+`(?:, )?)+) \|", doc, flags=re.MULTILINE):
        codes |= set(re.findall(r"`([a-z0-9_]+)`", cell))
    return codes


def test_documented_error_codes_are_exactly_the_code_enum() -> None:
    """Both directions: every code the API can answer is in the table, and the table invents none."""
    table_codes = documented_codes(DOC)
    api_codes = {code.value for code in Code if not code.value.startswith("source_")}  # S3 record codes
    assert api_codes - table_codes == set(), "codes missing from docs/api.md"
    assert table_codes - api_codes == set(), "docs/api.md lists codes the service never answers"


def test_the_check_notices_a_code_removed_from_the_docs() -> None:
    """The parser really reads the table: dropping one code's mention from it is seen."""
    assert "`image_too_costly`" in DOC
    assert "image_too_costly" not in documented_codes(DOC.replace("`image_too_costly`", "`x`"))
