"""A third-party schema fuzzer (schemathesis) against the local server's own ``/openapi.json``.

Every operation the document describes gets generated requests, valid and not; each answer must
conform to the document (status listed, body matching its schema, content type) and none may be
a 5xx. Bounded: a fixed number of examples per operation.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from localaws.server import DEFAULT_REVIEWER_TOKEN
from tests.support import local_site

pytestmark = [pytest.mark.slow]

EXAMPLES_PER_OPERATION = 40
# A schema can say "binary", not "a decodable photo": schema-valid bytes that are no image are
# rightly refused (415/422), so the "valid data must be accepted" check does not apply here.
NOT_APPLICABLE = [positive_data_acceptance]
# The local server's stand-in for a reviewer's signature: POST /feedback's bodies reach the function.
REVIEWER = {"Authorization": f"Bearer {DEFAULT_REVIEWER_TOKEN}"}


@pytest.fixture(scope="module")
def base_url(configure):
    with local_site(configure, uploads=True) as url:  # uploads on: every route does real work
        yield url


def operations(base_url: str):
    schema = schemathesis.openapi.from_url(f"{base_url}openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


OPERATIONS = ("POST /predict", "POST /uploads", "GET /results/{upload_id}", "GET /health", "GET /")
OPERATIONS += ("GET /openapi.json", "GET /model", "POST /feedback")


def test_every_operation_is_fuzzed(base_url: str) -> None:
    assert {f"{op.method.upper()} {op.path}" for op in operations(base_url)} == set(OPERATIONS)


@pytest.mark.parametrize("label", OPERATIONS)
def test_answers_conform_to_the_document(base_url: str, label: str) -> None:
    (operation,) = [op for op in operations(base_url) if f"{op.method.upper()} {op.path}" == label]

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
    )
    def check(case) -> None:
        response = case.call(base_url=base_url.rstrip("/"), headers=REVIEWER, timeout=30)
        assert response.status_code < 500, (response.status_code, response.text[:300])
        case.validate_response(response, excluded_checks=NOT_APPLICABLE)

    check()
