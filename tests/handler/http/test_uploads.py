"""Presigned uploads and result polling, on moto's S3 server with S3's POST policy check in front."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import requests

from localaws.context import LocalContext
from localaws.events import http_event, rest_event, s3_event
from localaws.s3_proxy import S3Proxy
from tests.support import body_json, eight_megabyte_photo, s3_client_for


@pytest.fixture
def uploads_bucket(moto_s3: str, s3_client, configure) -> Iterator[tuple[str, S3Proxy, object]]:
    """Uploads enabled on a fresh bucket; the function talks to S3 through a policy-checking proxy."""
    bucket = f"uploads-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=bucket)
    proxy = S3Proxy(moto_s3, post_policy_secret="testing")
    function = configure(s3_client=s3_client_for(proxy.url), uploads_bucket=bucket)
    try:
        yield bucket, proxy, function
    finally:
        proxy.close()


@pytest.fixture
def app(uploads_bucket):
    """In this module the function has uploads on."""
    return uploads_bucket[2]


def request_upload(app, content_type: str | None = "image/jpeg", door=rest_event) -> dict:
    body = json.dumps({"content_type": content_type}).encode() if content_type else b""
    # A client's Host and X-Forwarded-* headers must not steer result_url: API Gateway's domain does.
    headers = {"Content-Type": "application/json", "Host": "evil.example", "X-Forwarded-Proto": "gopher"}
    event = door("POST", "/uploads", body=body, headers=headers)
    event["requestContext"]["domainName"] = "api.example.org"
    result = app.api_handler(event, LocalContext())
    assert result["statusCode"] == 201, result["body"]
    return body_json(result)


def poll(app, upload_id: str) -> tuple[int, dict]:
    result = app.api_handler(rest_event("GET", f"/results/{upload_id}"), LocalContext())
    return result["statusCode"], body_json(result)


def send(form: dict, data: bytes, content_type: str = "image/jpeg") -> requests.Response:
    fields = dict(form["upload"]["fields"])
    fields["Content-Type"] = content_type
    return requests.post(
        form["upload"]["url"], data=fields, files={"file": ("photo", data, content_type)}, timeout=60
    )


@pytest.mark.slow
def test_an_8_mb_photo_goes_through_the_presigned_post_and_gets_its_result(
    app, uploads_bucket, s3_client, grace_hopper
) -> None:
    bucket, proxy, _ = uploads_bucket
    photo = eight_megabyte_photo(grace_hopper)
    assert 7_000_000 < len(photo) < 20 * 1024 * 1024
    form = request_upload(app)
    upload_id = form["id"]
    assert form["result_url"] == f"https://api.example.org/prod/results/{upload_id}"
    assert form["expires_in"] == 300 and form["max_bytes"] == 20 * 1024 * 1024
    assert form["upload"]["fields"]["key"] == f"uploads/{upload_id}"

    response = send(form, photo)
    assert response.status_code == 204, response.text
    assert not proxy.refused
    status, pending = poll(app, upload_id)
    assert (status, pending["status"]) == (202, "pending")

    head = s3_client.head_object(Bucket=bucket, Key=f"uploads/{upload_id}")
    event = s3_event(bucket, [(f"uploads/{upload_id}", head["ETag"].strip('"'), head["ContentLength"])])
    assert app.s3_handler(event, LocalContext())["objects"][0]["status"] == "classified"
    status, record = poll(app, upload_id)
    assert status == 200
    assert record["predictions"][0]["label"] == "military_uniform"
    assert record["key"] == f"uploads/{upload_id}"


def test_s3_refuses_an_upload_over_the_range_or_not_an_image(app, uploads_bucket, s3_client) -> None:
    bucket, proxy, _ = uploads_bucket
    form = request_upload(app)
    too_big = send(form, b"\xff\xd8" + b"\0" * (20 * 1024 * 1024))
    assert too_big.status_code == 400 and "EntityTooLarge" in too_big.text
    not_an_image = send(form, b"hello", content_type="text/plain")
    assert not_an_image.status_code == 403 and "Content-Type" in not_an_image.text
    tampered = dict(
        form, upload=dict(form["upload"], fields=dict(form["upload"]["fields"], key="results/x.json"))
    )
    assert send(tampered, b"\xff\xd8\xff").status_code == 403
    listing = s3_client.list_objects_v2(Bucket=bucket)
    assert listing["KeyCount"] == 0, "nothing refused reached the bucket"
    assert len(proxy.refused) == 3


@pytest.mark.parametrize("declared", ["image/png", "image/webp", None])
def test_the_key_extension_follows_the_declared_type(app, uploads_bucket, declared) -> None:
    form = request_upload(app, declared, door=http_event)
    assert form["id"].endswith({"image/png": ".png", "image/webp": ".webp", None: ".jpg"}[declared])
    assert form["upload"]["fields"]["Content-Type"] == (declared or "image/jpeg")


@pytest.mark.parametrize("declared", ["text/plain", "image/svg+xml", "application/pdf"])
def test_non_image_declarations_are_415(app, uploads_bucket, declared) -> None:
    body = json.dumps({"content_type": declared}).encode()
    result = app.api_handler(
        rest_event("POST", "/uploads", body=body, headers={"Content-Type": "application/json"}),
        LocalContext(),
    )
    assert result["statusCode"] == 415


def test_unknown_ids_are_404(app, uploads_bucket) -> None:
    status, answer = poll(app, uuid.uuid4().hex + ".jpg")
    assert (status, answer["code"]) == (404, "unknown_upload")


@pytest.mark.parametrize(
    "upload_id",
    [
        *("../x", "%2e%2e", "..%2F..%2Fetc%2Fpasswd", "/etc/passwd", "a" * 300, "A" * 32 + ".jpg"),
        *("0" * 32 + ".exe", "0" * 32 + ".jpg.json", "results", "0" * 31 + ".jpg"),
    ],
)
def test_malformed_ids_are_400_and_never_reach_s3(app, uploads_bucket, upload_id) -> None:
    _, proxy, _ = uploads_bucket
    for door in (rest_event, http_event):
        result = app.api_handler(door("GET", f"/results/{upload_id}"), LocalContext())
        assert result["statusCode"] == 400, (upload_id, result["body"])
        assert body_json(result)["code"] == "invalid_id"
    assert not proxy.dropped and not proxy.refused


def test_uploads_without_a_bucket_are_501(configure) -> None:
    function = configure()
    assert function.runtime.settings.uploads_bucket is None
    result = function.api_handler(rest_event("POST", "/uploads"), LocalContext())
    assert result["statusCode"] == 501
    assert body_json(result)["code"] == "uploads_disabled"


@pytest.mark.slow
def test_make_devs_local_s3_enforces_the_post_policy_as_s3_does(configure) -> None:
    """``serve --s3`` (what ``make dev`` runs): a local upload cannot exceed its size or leave its key."""
    from tests.support import local_site

    with local_site(configure, uploads=True) as url:
        form = requests.post(f"{url}uploads", json={"content_type": "image/png"}, timeout=30).json()
        too_big = send(form, b"\x89PNG" + b"\0" * (20 * 1024 * 1024), "image/png")
        assert too_big.status_code == 400 and b"EntityTooLarge" in too_big.content
        elsewhere = dict(
            form, upload={**form["upload"], "fields": {**form["upload"]["fields"], "key": "x/y.png"}}
        )
        moved = send(elsewhere, b"\x89PNG small", "image/png")
        assert moved.status_code == 403 and b"Policy Condition failed: key" in moved.content
        assert send(form, b"\x89PNG small", "image/png").status_code == 204
