"""The local API Gateway stand-in: real HTTP on 127.0.0.1, binary bodies, limits."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator

import pytest
import requests

from handler.local import server as local_server
from handler.local.events import is_binary


@pytest.fixture(scope="module")
def api_url(app) -> Iterator[str]:
    server = local_server.LocalApiServer(app.api_handler, port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()


def test_binds_to_loopback_only(api_url: str) -> None:
    assert api_url.startswith("http://127.0.0.1:")


def test_multipart_upload_like_curl_f(api_url: str, grace_hopper: bytes) -> None:
    response = requests.post(
        f"{api_url}/predict", files={"image": ("grace_hopper.jpg", grace_hopper, "image/jpeg")}, timeout=30
    )
    assert response.status_code == 200
    assert response.json()["predictions"][0]["label"] == "military_uniform"
    assert response.headers["Content-Type"] == "application/json"


def test_raw_body_and_query_string(api_url: str, cat: bytes) -> None:
    response = requests.post(
        f"{api_url}/predict?top_k=2", data=cat, headers={"Content-Type": "image/bmp"}, timeout=30
    )
    assert response.status_code == 200
    labels = [p["label"] for p in response.json()["predictions"]]
    assert len(labels) == 2 and labels[0] in {"Egyptian_cat", "tabby", "tiger_cat"}


def test_json_base64(api_url: str, grace_hopper: bytes) -> None:
    response = requests.post(
        f"{api_url}/predict", json={"image": base64.b64encode(grace_hopper).decode()}, timeout=30
    )
    assert response.json()["predictions"][0]["label"] == "military_uniform"


def test_errors_pass_through_as_json(api_url: str) -> None:
    response = requests.post(
        f"{api_url}/predict", data=b"hello", headers={"Content-Type": "text/plain"}, timeout=30
    )
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert requests.get(f"{api_url}/missing", timeout=30).json()["code"] == "not_found"


def test_body_over_api_gateway_cap_is_413(api_url: str) -> None:
    too_big = b"\0" * (local_server.API_GATEWAY_MAX_BODY + 1)
    response = requests.post(
        f"{api_url}/predict", data=too_big, headers={"Content-Type": "image/jpeg"}, timeout=30
    )
    assert response.status_code == 413


def test_health(api_url: str) -> None:
    assert requests.get(f"{api_url}/health", timeout=30).json()["status"] == "ok"


@pytest.mark.parametrize(
    ("content_type", "binary"),
    [
        ("image/jpeg", True),
        ("multipart/form-data; boundary=x", True),
        ("application/octet-stream", True),
        ("application/json", False),
        ("text/plain", False),
        (None, False),
    ],
)
def test_binary_media_types_like_the_rest_api(content_type: str | None, binary: bool) -> None:
    assert is_binary(content_type) is binary
