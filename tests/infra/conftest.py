"""The stack's templates, synthesized once per session (each synth costs seconds)."""

from __future__ import annotations

import pytest

from tests.support import VARIANT, template_for


@pytest.fixture(scope="session")
def template():
    return template_for()


@pytest.fixture(scope="session")
def variant_template():
    return template_for(VARIANT)
