"""``POST /feedback`` as a privileged write (handler/http/feedback.py): who sent a correction is
read only from what API Gateway puts in ``requestContext``; with ``FEEDBACK_AUTH=iam`` (the
default) one without a caller is 403 before anything is read; with ``none`` it is stored as
anonymous. No client input, and no shape of ``requestContext``, gives a 5xx."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable

import pytest

from handler.answers.capture import PredictionId
from handler.http.feedback import caller_of
from localaws.context import LocalContext
from localaws.events import Caller, http_event, rest_event
from tests.support import PHOTOS, body_json

CAT = (PHOTOS / "cat.bmp").read_bytes()
REVIEWER = Caller(arn="arn:aws:iam::111122223333:user/reviewer", account="111122223333", user_id="AIDAEX")
HEADERS = {"Content-Type": "application/json"}


class Recording:
    """An S3 client that records every call it passes on."""

    def __init__(self, client) -> None:
        self.client, self.calls = client, []

    def __getattr__(self, name: str):
        self.calls.append(name)
        return getattr(self.client, name)


@pytest.fixture(scope="module")
def store(s3_client) -> tuple[Recording, str, str]:
    """A bucket with one captured answer (of the cat photo): (recording client, bucket, its id)."""
    from handler.answers.capture import Capture, Sampled

    bucket = f"feedback-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=bucket)
    pid = PredictionId.new(CAT, "mobilenet_v2", "1.0.0")
    answer = {"predictions": [{"label": "Egyptian_cat", "probability": 0.6}]}
    capture = Capture(_settings(bucket), client=s3_client)
    assert capture.store_all([Sampled(pid, CAT, answer, "rate")], {"name": "mobilenet_v2"}, [], "api")
    return Recording(s3_client), bucket, str(pid)


def _settings(bucket: str):
    from handler import config

    return config.read_settings({"UPLOADS_BUCKET": bucket, "CAPTURE_RATE": "1"})


@pytest.fixture(scope="module")
def apps(configure, store) -> dict[str, object]:
    """The function with IAM required (the default) and with anonymous corrections allowed."""
    client, bucket, _ = store
    common = {"s3_client": client, "uploads_bucket": bucket, "capture_rate": 1.0}
    return {"iam": configure(**common), "none": configure(feedback_auth="none", **common)}


def event_for(door, pid: str, caller: Caller | None = REVIEWER, body: dict | bytes | None = None, **kw):
    document = {"prediction_id": pid, "label": "tiger_cat"} if body is None else body
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    return door("POST", "/feedback", body=raw, headers={**HEADERS, **kw.pop("headers", {})}, caller=caller)


def call(app, event: dict) -> tuple[int, dict]:
    result = app.api_handler(event, LocalContext())
    return result["statusCode"], body_json(result)


@pytest.mark.parametrize("door", [rest_event, http_event])
@pytest.mark.parametrize("body", [None, b"{not json", b"x" * 100_000])
def test_without_a_caller_iam_mode_refuses_before_reading_anything(apps, store, door, body) -> None:
    client, _, pid = store
    client.calls.clear()
    status, answer = call(apps["iam"], event_for(door, pid, caller=None, body=body))
    assert (status, answer["code"]) == (403, "authentication_required"), answer
    assert set(answer) == {"error", "code"} and "signed" in answer["error"]
    assert client.calls == [], "nothing read or written for an unauthenticated correction"


@pytest.mark.parametrize("door", [rest_event, http_event])
def test_a_caller_named_by_the_client_is_not_a_caller(apps, store, door) -> None:
    """A body field, signature-looking headers: only API Gateway's requestContext names a caller."""
    _, _, pid = store
    body = {
        "prediction_id": pid,
        "label": "tiger_cat",
        "caller": {"arn": REVIEWER.arn},
        "userArn": REVIEWER.arn,
    }
    headers = {
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20261201/us-east-1/execute-api/aws4_req",
        "X-Amz-Security-Token": "forged",
        "X-Amzn-Iam-User-Arn": REVIEWER.arn,
    }
    status, answer = call(apps["iam"], event_for(door, pid, caller=None, body=body, headers=headers))
    assert (status, answer["code"]) == (403, "authentication_required")


def test_each_api_type_names_its_caller_only_where_it_puts_it() -> None:
    """v2 reads ``authorizer.iam`` only, v1 ``identity`` only: a v1-shaped identity in a v2 event
    (or the reverse) is no caller."""
    v1 = rest_event("POST", "/feedback", caller=REVIEWER)
    v2 = http_event("POST", "/feedback", caller=REVIEWER)
    expected = {"arn": REVIEWER.arn, "account": "111122223333"}
    assert caller_of(v1) == caller_of(v2) == expected
    crossed_v2 = copy.deepcopy(v2)
    crossed_v2["requestContext"]["identity"] = crossed_v2["requestContext"].pop("authorizer")["iam"]
    crossed_v1 = copy.deepcopy(v1)
    crossed_v1["requestContext"]["authorizer"] = REVIEWER.http_authorizer()
    crossed_v1["requestContext"]["identity"]["userArn"] = None
    assert caller_of(crossed_v2) is None and caller_of(crossed_v1) is None


def _set(path: tuple[str, ...], value) -> Callable[[dict], None]:
    def change(context: dict) -> None:
        for key in path[:-1]:
            context = context[key]
        context[path[-1]] = value

    return change


def _drop(key: str) -> Callable[[dict], None]:
    return lambda context: context.pop(key, None)


HUGE_ARN = "arn:aws:iam::111122223333:user/" + "a" * 1_000_000
ODD_CONTEXTS = {
    # HTTP API (v2): authorizer.iam
    "v2 no authorizer": (http_event, _drop("authorizer")),
    "v2 authorizer a string": (http_event, _set(("authorizer",), "iam")),
    "v2 iam a list": (http_event, _set(("authorizer", "iam"), [REVIEWER.arn])),
    "v2 iam a string": (http_event, _set(("authorizer", "iam"), REVIEWER.arn)),
    "v2 userArn a number": (http_event, _set(("authorizer", "iam", "userArn"), 7)),
    "v2 userArn an object": (http_event, _set(("authorizer", "iam", "userArn"), {"arn": REVIEWER.arn})),
    "v2 userArn null": (http_event, _set(("authorizer", "iam", "userArn"), None)),
    "v2 userArn huge": (http_event, _set(("authorizer", "iam", "userArn"), HUGE_ARN)),
    "v2 userArn not an ARN": (http_event, _set(("authorizer", "iam", "userArn"), "*")),
    "v2 jwt instead of iam": (http_event, _set(("authorizer",), {"jwt": {"claims": {"sub": "x"}}})),
    # REST API (v1): identity
    "v1 no identity": (rest_event, _drop("identity")),
    "v1 identity null": (rest_event, _set(("identity",), None)),
    "v1 identity a string": (rest_event, _set(("identity",), REVIEWER.arn)),
    "v1 userArn a list": (rest_event, _set(("identity", "userArn"), [REVIEWER.arn])),
    "v1 userArn huge": (rest_event, _set(("identity", "userArn"), HUGE_ARN)),
    "v1 userArn with a newline": (rest_event, _set(("identity", "userArn"), REVIEWER.arn + "\n")),
}


@pytest.mark.parametrize("mode", ["iam", "none"])
@pytest.mark.parametrize("case", list(ODD_CONTEXTS))
def test_odd_request_contexts_are_no_caller_never_a_5xx(apps, store, s3_client, mode, case) -> None:
    """Each odd shape is no caller: 403 where IAM is required, an anonymous correction where
    anonymous ones are allowed; never a 5xx, never a trusted record."""
    _, bucket, pid = store
    door, change = ODD_CONTEXTS[case]
    event = event_for(door, pid)
    change(event["requestContext"])
    status, answer = call(apps[mode], event)
    if mode == "iam":
        assert (status, answer["code"]) == (403, "authentication_required"), answer
        return
    assert status == 201 and answer["caller"] is None, answer
    key = PredictionId.parse(pid).key("capture/", "anonymous-feedback.json")
    stored = json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert stored["caller"] is None


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"null",
        b'{"prediction_id": 1e999, "label": "tiger_cat"}',
        b'{"prediction_id": "' + b"9" * 5000 + b'", "label": "tiger_cat"}',
        b"[" * 10_000 + b"]" * 10_000,
        b'{"prediction_id": "a:b:20261127T214420123456Z:' + b"0" * 64 + b'", "label": {"x": 1}}',
        b'{"prediction_id": "' + b"m" * 590 + b":1:20261127T214420123456Z:" + b"0" * 64 + b'", "label": "x"}',
        b'{"prediction_id": "..:..:20261127T214420123456Z:' + b"0" * 64 + b'", "label": "x"}',
        b'{"prediction_id": "a%2F..%2F:b:19991231T235959000000Z:' + b"0" * 64 + b'", "label": "x"}',
        b'{"prediction_id": "\\ud800", "label": "\\udfff"}',
    ],
)
def test_no_body_from_an_authenticated_caller_gives_a_5xx(apps, body: bytes) -> None:
    for door in (rest_event, http_event):
        status, answer = call(apps["iam"], event_for(door, "unused", body=body))
        assert 400 <= status < 500, (status, answer)
        assert set(answer) == {"error", "code"}
