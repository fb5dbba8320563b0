"""The stack's templates, synthesized once per session (each synth costs seconds), in-process and
without cdk-nag: the default settings and the "everything switched" variant, with their settings
so tests derive what they expect (prefixes, names) instead of repeating literals."""

from __future__ import annotations

import pytest

from infra.settings import Settings
from tests.support import VARIANT, app_with, template_for


@pytest.fixture(scope="session")
def template():
    return template_for()


@pytest.fixture(scope="session")
def variant_template():
    return template_for(VARIANT)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_context(app_with().node)


@pytest.fixture(scope="session")
def variant_settings() -> Settings:
    return Settings.from_context(app_with(VARIANT).node)


@pytest.fixture(params=["defaults", "variant"])
def shaped(request: pytest.FixtureRequest):
    """``(template, settings)`` of the defaults, then of the variant: one test checks both."""
    prefix = "" if request.param == "defaults" else "variant_"
    return request.getfixturevalue(f"{prefix}template"), request.getfixturevalue(f"{prefix}settings")
