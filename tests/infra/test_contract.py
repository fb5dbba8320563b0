"""Where infra meets handler: entry points and environment variables, checked on both sides."""

from __future__ import annotations

import importlib

from aws_cdk.assertions import Template

from handler import config
from handler.contract import API_HANDLER, S3_HANDLER
from tests.support import functions


def test_commands_name_real_entry_points(template: Template) -> None:
    for command in (*functions(template), API_HANDLER, S3_HANDLER):
        module, name = command.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), name)), command


def _changed(value: str) -> str:
    """Another value of the same kind (a number plus 7, not a default that depends on the machine,
    such as DECODE_WORKERS' CPU count; a string with a suffix)."""
    return str(int(value) + 7) if value.isdigit() else f"{value}x"


def test_every_variable_the_stack_sets_changes_the_handlers_settings(template: Template) -> None:
    """Each variable, set to another value, changes what ``read_settings`` returns or is refused by
    name: the handler really reads it (a name only mentioned in the source would not pass)."""
    defaults = config.read_settings({})
    for function in functions(template).values():
        for name, value in function["Properties"]["Environment"]["Variables"].items():
            if name.startswith("POWERTOOLS_"):
                continue  # read by Powertools itself
            if not isinstance(value, str):  # a reference resolved at deploy time (a bucket name)
                value = "bucket-name"
            try:
                changed = config.read_settings({name: _changed(value)})
            except ValueError as refused:
                assert name in str(refused)
                continue
            assert changed != defaults, f"{name} is set by the stack but the handler ignores it"


def test_stack_limits_match_the_handler_defaults(template: Template) -> None:
    defaults = config.read_settings()
    env = functions(template)["handler.app.api_handler"]["Properties"]["Environment"]["Variables"]
    assert int(env["MAX_IMAGE_BYTES"]) == defaults.max_image_bytes
    assert int(env["MAX_IMAGE_PIXELS"]) == defaults.max_image_pixels
    assert int(env["DECODE_DEADLINE_MS"]) == defaults.decode_deadline_ms
    assert int(env["DECODE_REQUEST_DEADLINE_MS"]) == defaults.decode_request_deadline_ms
    assert env["RESULTS_PREFIX"] == defaults.results_prefix
