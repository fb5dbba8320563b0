"""What S3's errors mean: permanent (the object's error record says why) or transient (retry)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from handler.errors import Code, SourceUnusable
from handler.s3 import TransientError, classify_s3_error


def sdk_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("AccessDenied", 403, Code.SOURCE_ACCESS_DENIED),
        ("InvalidObjectState", 403, Code.SOURCE_ACCESS_DENIED),  # archived in Glacier
        ("NoSuchKey", 404, Code.SOURCE_NOT_FOUND),
        ("NoSuchVersion", 404, Code.SOURCE_NOT_FOUND),
        ("InvalidRange", 416, Code.SOURCE_UNREADABLE),
    ],
)
def test_permanent_failures_are_the_sources_not_the_clients(code: str, status: int, expected: Code) -> None:
    mapped = classify_s3_error(sdk_error(code, status), "reading s3://b/k")
    assert isinstance(mapped, SourceUnusable) and mapped.code == expected
    assert "s3://b/k" in mapped.message


@pytest.mark.parametrize(
    "error",
    [
        sdk_error("SlowDown", 503),
        sdk_error("InternalError", 500),
        sdk_error("Throttling", 429),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
    ],
)
def test_throttling_outages_and_connections_are_transient(error: Exception) -> None:
    assert isinstance(classify_s3_error(error, "reading"), TransientError)
