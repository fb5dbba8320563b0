"""Property-based fuzzing of ``api_handler``: whatever arrives, a well-formed answer below 500."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from localaws.context import LocalContext
from localaws.events import http_event, multipart_body, rest_event
from tests.support import PHOTOS

pytestmark = [pytest.mark.slow]

JPEG = (PHOTOS / "grace_hopper.jpg").read_bytes()
CONTENT_TYPES = [
    "image/jpeg",
    "image/png",
    "application/octet-stream",
    "application/json",
    "multipart/form-data; boundary=fz",
    "multipart/form-data",
    "text/plain",
    "application/x-www-form-urlencoded",
    "image/svg+xml",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


@st.composite
def damaged_jpeg(draw) -> bytes:
    """The real photo truncated, or with a few bytes flipped: the decoder's hardest inputs."""
    data = bytearray(JPEG[: draw(st.integers(0, len(JPEG)))])
    for _ in range(draw(st.integers(0, 6))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


bodies = st.one_of(
    st.binary(max_size=2048),
    damaged_jpeg(),
    json_values.map(lambda value: json.dumps({"image": value}).encode()),
    json_values.map(lambda value: json.dumps(value).encode()),
    damaged_jpeg().map(lambda data: json.dumps({"image": base64.b64encode(data).decode()}).encode()),
    damaged_jpeg().map(
        lambda data: json.dumps(
            {"image": "data:image/jpeg;base64," + base64.b64encode(data).decode()}
        ).encode()
    ),
    st.tuples(st.sampled_from(["image", "photo", ""]), st.text(max_size=20), damaged_jpeg()).map(
        lambda part: multipart_body([(part[0], part[1] or "x", part[2], "image/jpeg")], boundary="fz")[0]
    ),
)
header_names = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"),
    min_size=1,
    max_size=20,
)


@given(
    door=st.sampled_from([rest_event, http_event]),
    method=st.sampled_from(["POST", "GET", "PUT", "DELETE", "OPTIONS", "PATCH"]),
    path=st.sampled_from(["/predict", "/health", "/openapi.json", "/nope"])
    | st.text(max_size=30).map("/{}".format),
    body=bodies,
    content_type=st.sampled_from(CONTENT_TYPES) | st.text(max_size=40) | st.none(),
    headers=st.dictionaries(header_names, st.text(max_size=200), max_size=5),
    query=st.dictionaries(st.sampled_from(["top_k", "x", ""]), st.text(max_size=10), max_size=3),
    flip_base64=st.booleans(),
)
def test_any_request_gets_a_well_formed_answer_below_500(
    app, door, method, path, body, content_type, headers, query, flip_base64
) -> None:
    headers = dict(headers)
    if content_type is not None:
        headers["Content-Type"] = content_type
    event = door(
        method, path, body=body, headers=headers, query="&".join(f"{k}={v}" for k, v in query.items())
    )
    if flip_base64 and event["body"]:
        event["isBase64Encoded"] = not event["isBase64Encoded"]
    result = app.api_handler(event, LocalContext())
    assert 200 <= result["statusCode"] < 500, result
    content = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
    content.update({k.lower(): ", ".join(v) for k, v in (result.get("multiValueHeaders") or {}).items()})
    if result["statusCode"] == 204:  # CORS preflight
        return
    if content.get("content-type", "").startswith("text/html"):
        assert result["body"].startswith("<!doctype html>")
        return
    answer = json.loads(result["body"])
    assert (
        ("predictions" in answer)
        or ("status" in answer)
        or ("openapi" in answer)
        or (set(answer) == {"error", "code"})
    ), answer
