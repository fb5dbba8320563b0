"""Small helpers to read Lambda proxy results in tests."""

from __future__ import annotations

import json


def body_json(result: dict) -> dict:
    """The JSON body of a Lambda proxy result."""
    assert not result.get("isBase64Encoded"), "JSON answers must not be base64-encoded"
    return json.loads(result["body"])


def header(result: dict, name: str) -> str | None:
    """A response header from either ``headers`` (HTTP v2) or ``multiValueHeaders`` (REST v1)."""
    for key, value in (result.get("headers") or {}).items():
        if key.lower() == name.lower():
            return value
    for key, values in (result.get("multiValueHeaders") or {}).items():
        if key.lower() == name.lower():
            return ", ".join(values)
    return None
