"""Where infra meets handler: entry points and environment variables, checked on both sides."""

from __future__ import annotations

import importlib

from aws_cdk.assertions import Template

from handler import config
from infra.components.functions import API_HANDLER, S3_HANDLER
from tests.support import REPO, functions


def test_commands_name_real_entry_points(template: Template) -> None:
    for command in (*functions(template), API_HANDLER, S3_HANDLER):
        module, name = command.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), name)), command


def test_every_variable_the_stack_sets_is_read_by_the_handler(template: Template) -> None:
    handler_source = (REPO / "handler" / "config.py").read_text()
    for function in functions(template).values():
        for name in function["Properties"]["Environment"]["Variables"]:
            if name.startswith("POWERTOOLS_"):
                continue  # read by Powertools itself
            assert f'"{name}"' in handler_source, f"{name} is set by the stack but not read in config.py"


def test_stack_limits_match_the_handler_defaults(template: Template) -> None:
    defaults = config.read_settings()
    env = functions(template)["handler.app.api_handler"]["Properties"]["Environment"]["Variables"]
    assert int(env["MAX_IMAGE_BYTES"]) == defaults.max_image_bytes
    assert int(env["MAX_IMAGE_PIXELS"]) == defaults.max_image_pixels
    assert int(env["MAX_DECODE_BYTES"]) == defaults.max_decode_bytes
    assert env["RESULTS_PREFIX"] == defaults.results_prefix
