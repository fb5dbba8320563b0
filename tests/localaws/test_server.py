"""The local API Gateway stand-in: real HTTP on 127.0.0.1, binary bodies, limits."""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from localaws import server as local_server
from localaws.events import is_binary
from tests.support import serving


@pytest.fixture(scope="module")
def api_url(app) -> Iterator[str]:
    with serving(
        local_server.LocalApiServer(lambda: app.api_handler, environments=1, port=0, quiet=True, stage="prod")
    ) as url:
        yield url


def test_binds_to_loopback_by_default_on_a_port_the_os_picked() -> None:
    def ok(event, context):
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": "{}"}

    server = local_server.LocalApiServer(lambda: ok, port=0, quiet=True, stage="prod")
    try:
        host, port = server.socket.getsockname()[:2]
        assert host == "127.0.0.1" and port > 0
        assert server.url == f"http://127.0.0.1:{port}/prod/"
    finally:
        server.server_close()


def test_paths_outside_the_stage_are_refused_like_api_gateway(api_url: str) -> None:
    root = api_url.removesuffix("prod/")
    response = requests.get(f"{root}health", timeout=30)
    assert response.status_code == 403
    assert response.json() == {"error": "Missing Authentication Token", "code": "forbidden"}
    assert requests.get(f"{root}production/health", timeout=30).status_code == 403


@pytest.mark.parametrize("suffix", ["", "/"])
def test_the_page_is_served_at_the_stage_root(api_url: str, suffix: str) -> None:
    response = requests.get(api_url.removesuffix("/") + suffix, timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


@pytest.fixture
def echo_url() -> Iterator[str]:
    """A server in front of a handler that returns the event it got, to see what API Gateway sends."""

    def echo(event, context):
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(event)}

    with serving(local_server.LocalApiServer(lambda: echo, port=0, quiet=True, stage="v1")) as url:
        yield url


def test_event_has_multi_value_headers_query_and_stage(echo_url: str) -> None:
    url = urlsplit(echo_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    connection.putrequest("GET", f"{url.path}things?tag=a&tag=b&top_k=3")
    connection.putheader("X-Tag", "one")
    connection.putheader("X-Tag", "two")
    connection.endheaders()
    event = json.loads(connection.getresponse().read())
    connection.close()
    assert event["path"] == "/things"
    assert event["requestContext"]["stage"] == "v1"
    assert event["requestContext"]["path"] == "/v1/things"
    assert event["queryStringParameters"] == {"tag": "b", "top_k": "3"}
    assert event["multiValueQueryStringParameters"]["tag"] == ["a", "b"]
    assert event["multiValueHeaders"]["X-Tag"] == ["one", "two"]
    assert event["headers"]["X-Tag"] == "two"


def test_binary_bodies_arrive_base64_encoded_and_text_bodies_as_text(echo_url: str) -> None:
    binary = requests.post(
        echo_url, data=b"\xff\x00", headers={"Content-Type": "image/png"}, timeout=30
    ).json()
    assert binary["isBase64Encoded"] is True and base64.b64decode(binary["body"]) == b"\xff\x00"
    text = requests.post(echo_url, json={"a": 1}, timeout=30).json()
    assert text["isBase64Encoded"] is False and json.loads(text["body"]) == {"a": 1}


def test_base64_answers_are_decoded_for_the_client() -> None:
    def png(event, context):
        return {
            "statusCode": 200,
            "headers": {"Content-Type": "image/png"},
            "body": "iVBORw==",
            "isBase64Encoded": True,
        }

    with serving(local_server.LocalApiServer(lambda: png, port=0, quiet=True)) as url:
        assert requests.get(url, timeout=30).content == base64.b64decode("iVBORw==")


def test_multipart_upload_like_curl_f(api_url: str, grace_hopper: bytes) -> None:
    response = requests.post(
        f"{api_url}predict", files={"image": ("grace_hopper.jpg", grace_hopper, "image/jpeg")}, timeout=30
    )
    assert response.status_code == 200
    assert response.json()["predictions"][0]["label"] == "military_uniform"
    assert response.headers["Content-Type"] == "application/json"


def test_raw_body_and_query_string(api_url: str, cat: bytes) -> None:
    response = requests.post(
        f"{api_url}predict?top_k=2", data=cat, headers={"Content-Type": "image/bmp"}, timeout=30
    )
    assert response.status_code == 200
    labels = [p["label"] for p in response.json()["predictions"]]
    assert len(labels) == 2 and labels[0] in {"Egyptian_cat", "tabby", "tiger_cat"}


def test_json_base64(api_url: str, grace_hopper: bytes) -> None:
    response = requests.post(
        f"{api_url}predict", json={"image": base64.b64encode(grace_hopper).decode()}, timeout=30
    )
    assert response.json()["predictions"][0]["label"] == "military_uniform"


def test_errors_pass_through_as_json(api_url: str) -> None:
    response = requests.post(
        f"{api_url}predict", data=b"hello", headers={"Content-Type": "text/plain"}, timeout=30
    )
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert requests.get(f"{api_url}missing", timeout=30).json()["code"] == "not_found"


def test_body_over_api_gateway_cap_is_413(api_url: str) -> None:
    too_big = b"\0" * (local_server.API_GATEWAY_MAX_BODY + 1)
    response = requests.post(
        f"{api_url}predict", data=too_big, headers={"Content-Type": "image/jpeg"}, timeout=30
    )
    assert response.status_code == 413


def test_health(api_url: str) -> None:
    assert requests.get(f"{api_url}health", timeout=30).json()["status"] == "ok"


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


def test_many_concurrent_clients_are_queued_not_reset(api_url: str) -> None:
    """API Gateway accepts bursts; the stand-in's listen backlog must too (the default of 5 resets)."""
    from concurrent.futures import ThreadPoolExecutor

    def get(_: int) -> int:
        return requests.get(f"{api_url}health", timeout=60).status_code

    with ThreadPoolExecutor(48) as pool:
        assert set(pool.map(get, range(192))) == {200}


def raw_request(url: str, data: bytes, read_timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (a malformed request), read the answer."""
    import socket

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=read_timeout) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, dict(response.getheaders()), response.read()


def test_its_own_refusals_are_json_in_the_projects_shape(api_url: str) -> None:
    base = urlsplit(api_url)
    cases = {
        414: f"GET {base.path}{'a' * 70_000} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        431: f"GET {base.path}health HTTP/1.1\r\nHost: x\r\n".encode()
        + b"".join(f"X-H{i}: v\r\n".encode() for i in range(120))
        + b"\r\n",
        501: f"BREW {base.path}health HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        400: f"POST {base.path}predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".encode(),
    }
    for status, request in cases.items():
        got, headers, body = raw_request(api_url, request)
        assert got == status, (status, body)
        assert headers["Content-Type"] == "application/json"
        answer = json.loads(body)
        assert set(answer) == {"error", "code"} and answer["code"], answer
        assert "Python" not in headers.get("Server", "")


def test_no_version_banner(api_url: str) -> None:
    assert requests.get(f"{api_url}health", timeout=30).headers["Server"] == "image-recognition-local"


def test_wrong_method_on_a_known_path_is_405_with_allow(api_url: str) -> None:
    response = requests.get(f"{api_url}predict", timeout=30)
    assert response.status_code == 405
    assert response.headers["Allow"] == "OPTIONS, POST"
    assert response.json()["code"] == "method_not_allowed"


def test_head_where_get_exists(api_url: str) -> None:
    response = requests.head(f"{api_url}health", timeout=30)
    assert response.status_code == 200 and response.content == b""
    assert int(response.headers["Content-Length"]) == 0


def test_a_body_shorter_than_its_content_length_is_400_after_the_read_timeout(app) -> None:
    server = local_server.LocalApiServer(
        lambda: app.api_handler, environments=1, port=0, quiet=True, read_timeout=0.5
    )
    with serving(server) as url:
        head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 1000\r\n"
        request = head + b"\r\nabc"
        status, _, body = raw_request(url, request, read_timeout=10)
    assert status == 400
    assert json.loads(body)["code"] == "bad_request"


def test_one_slow_invocation_does_not_block_others() -> None:
    import threading

    release = threading.Event()

    def handler(event, context):
        if event["path"] == "/slow":
            release.wait(30)
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": "{}"}

    with serving(local_server.LocalApiServer(lambda: handler, port=0, quiet=True)) as url:
        slow = threading.Thread(target=requests.get, args=(f"{url}slow",), kwargs={"timeout": 60})
        slow.start()
        try:
            assert requests.get(f"{url}health", timeout=10).status_code == 200  # while /slow waits
            assert slow.is_alive()
        finally:
            release.set()
            slow.join()


def test_a_crashing_function_is_a_json_502(app) -> None:
    def crash(event, context):
        raise RuntimeError("boom")

    with serving(local_server.LocalApiServer(lambda: crash, port=0, quiet=True)) as url:
        response = requests.get(f"{url}health", timeout=30)
    assert response.status_code == 502 and response.json()["code"] == "bad_gateway"


def test_an_environment_never_runs_two_events_at_once() -> None:
    """Concurrent requests are spread over execution environments, as Lambda does: each instance
    serves one event at a time, a busy server starts another, up to the limit, then they wait."""
    import threading
    import time

    started: list[dict] = []
    lock = threading.Lock()

    def start():
        state = {"running": 0, "most": 0, "served": 0}
        with lock:
            started.append(state)

        def handler(event, context):
            state["running"] += 1
            state["most"] = max(state["most"], state["running"])
            time.sleep(0.05)
            state["running"] -= 1
            state["served"] += 1
            return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": "{}"}

        return handler

    with serving(local_server.LocalApiServer(start, port=0, quiet=True, environments=3)) as url:
        threads = [threading.Thread(target=requests.get, args=(f"{url}health",)) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert 2 <= len(started) <= 3, started
    assert all(state["most"] == 1 for state in started), started
    assert sum(state["served"] for state in started) == 12


def test_an_environment_whose_process_ended_is_replaced_not_reused() -> None:
    """A crashed environment costs its own request a 502 (as API Gateway answers an unhandled
    function error); the next request gets a newly started environment."""
    from localaws.environment import EnvironmentLost

    started: list[str] = []

    def start():
        name = f"environment-{len(started)}"
        started.append(name)

        def handler(event, context):
            if name == "environment-0":
                raise EnvironmentLost("the function's process ended while running an event")
            return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": '{"ok": 1}'}

        return handler

    with serving(local_server.LocalApiServer(start, port=0, quiet=True, environments=1)) as url:
        first = requests.get(f"{url}health", timeout=30)
        second = requests.get(f"{url}health", timeout=30)
    assert first.status_code == 502 and first.json()["code"] == "bad_gateway"
    assert second.status_code == 200 and second.json() == {"ok": 1}
    assert started == ["environment-0", "environment-1"]


def test_an_environment_whose_function_raised_serves_the_next_request() -> None:
    """The function failed (a 502): its environment is alive and free again, never leaked (with one
    environment, a leak would leave every later request waiting forever)."""
    from localaws.environment import FunctionFailed

    calls: list[int] = []

    def start():
        def handler(event, context):
            calls.append(1)
            if len(calls) <= 2:
                raise FunctionFailed("RuntimeError: a bug")
            return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": '{"ok": 1}'}

        return handler

    with serving(local_server.LocalApiServer(start, port=0, quiet=True, environments=1)) as url:
        statuses = [requests.get(f"{url}health", timeout=10).status_code for _ in range(3)]
    assert statuses == [502, 502, 200]


# --- POST /feedback: API Gateway's IAM authorization, with a local credential for the signature.

CREDENTIAL = {"Authorization": f"Bearer {local_server.DEFAULT_REVIEWER_TOKEN}"}


def test_feedback_needs_the_local_reviewers_credential_and_names_its_caller(echo_url: str) -> None:
    body = {"prediction_id": "x", "label": "y"}
    for headers in ({}, {"Authorization": "Bearer someone-else"}, {"Authorization": "AWS4-HMAC-SHA256 x"}):
        refused = requests.post(f"{echo_url}feedback", json=body, headers=headers, timeout=30)
        assert refused.status_code == 403, headers
        assert set(refused.json()) == {"error", "code"} and refused.json()["code"] == "forbidden"
    assert requests.post(f"{echo_url}feedback/", json=body, timeout=30).status_code == 403
    event = requests.post(f"{echo_url}feedback", json=body, headers=CREDENTIAL, timeout=30).json()
    identity = event["requestContext"]["identity"]
    assert identity["userArn"] == "arn:aws:iam::000000000000:user/local-reviewer"
    assert identity["accountId"] == "000000000000"
    # Every other route is public: no credential needed, and none makes a caller.
    other = requests.post(f"{echo_url}predict", json=body, headers=CREDENTIAL, timeout=30).json()
    assert other["requestContext"]["identity"]["userArn"] is None


def test_with_feedback_auth_none_anyone_may_correct_and_nobody_is_a_caller() -> None:
    def echo(event, context):
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(event)}

    server = local_server.LocalApiServer(lambda: echo, port=0, quiet=True, feedback_auth="none")
    with serving(server) as url:
        for headers in ({}, CREDENTIAL):
            answer = requests.post(f"{url}feedback", json={}, headers=headers, timeout=30)
            assert (
                answer.status_code == 200 and answer.json()["requestContext"]["identity"]["userArn"] is None
            )


def test_a_bad_local_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="feedback_auth must be one of iam, none"):
        local_server.FeedbackGate("apikey")
    with pytest.raises(ValueError, match="IMGREC_REVIEWER_TOKEN must be"):
        local_server.FeedbackGate("iam", 'a"b')


def test_the_page_carries_the_local_credential_and_the_function_never_does(app, api_url: str) -> None:
    served = requests.get(api_url, timeout=30).text
    assert '<meta name="feedback-credential" content="Bearer local-reviewer">' in served
    assert '<meta name="feedback-auth" content="iam">' in served
    from localaws.context import LocalContext
    from localaws.events import rest_event

    own = app.api_handler(rest_event("GET", "/"), LocalContext())["body"]
    assert (
        '<meta name="feedback-credential"' not in own and '<meta name="feedback-auth" content="iam">' in own
    )


def test_a_correction_reaches_the_function_only_with_the_credential(api_url: str) -> None:
    """Without it API Gateway's 403; with it the function runs and knows the caller (here: no
    capture of that id, 404)."""
    body = {"prediction_id": f"mobilenet_v2:1.0.0:20261127T214420123456Z:{'0' * 64}", "label": "tabby"}
    assert requests.post(f"{api_url}feedback", json=body, timeout=30).status_code == 403
    answer = requests.post(f"{api_url}feedback", json=body, headers=CREDENTIAL, timeout=30)
    assert (answer.status_code, answer.json()["code"]) == (404, "unknown_prediction")
