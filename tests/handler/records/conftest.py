"""What the records tests share: the function with an S3 client of its own."""

from __future__ import annotations

import pytest

from tests.support import s3_client_for


@pytest.fixture(scope="module")
def app(configure, moto_s3):
    """The function with an S3 client of its own on moto, so botocore hooks attached to it see its
    requests and never the tests' own (a module may override it: test_s3_faults goes through a proxy)."""
    return configure(s3_client=s3_client_for(moto_s3))
