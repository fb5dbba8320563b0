"""Every case of the bad-input corpus through ``api_handler``, as REST v1 and HTTP v2 events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localaws.context import LocalContext
from localaws.events import http_event, rest_event
from tests.corpora import corpus
from tests.support import captured_logs, header

DOORS = {"rest": rest_event, "http": http_event}
CASES = {case.name: case for case in corpus.cases()}
LEAKS = ("Traceback", 'File "', "/work/", "site-packages", '.py"')


def event_for(door: str, case: corpus.Case) -> dict:
    headers = dict(case.headers)
    if case.content_type is not None:
        headers["Content-Type"] = case.content_type
    event = DOORS[door]("POST", "/predict", body=case.body, headers=headers, query=case.query)
    if case.base64_encoded is False:  # a stage without binary media types: bytes arrive as text
        event["isBase64Encoded"] = False
        event["body"] = case.body.decode("utf-8", "replace")
    return event


def test_the_corpus_is_big_enough_and_written_by_its_script(tmp_path: Path) -> None:
    assert len(CASES) >= 40
    corpus.write(tmp_path)
    written = json.loads((tmp_path / "cases.json").read_text())
    assert [c["name"] for c in written] == list(CASES)
    assert all((tmp_path / c["file"]).read_bytes() == CASES[c["name"]].body for c in written)


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("name", CASES)
def test_case_gets_its_answer(app, door: str, name: str) -> None:
    case = CASES[name]
    result = app.api_handler(event_for(door, case), LocalContext())
    answer = json.loads(result["body"])
    assert result["statusCode"] == case.status, (name, answer)
    assert header(result, "X-Content-Type-Options") == "nosniff"
    assert not any(leak in result["body"] for leak in LEAKS), result["body"]
    if case.status == 200 and "results" in answer:  # a batch: one entry per image, in order
        assert answer["results"][0]["predictions"][0]["label"] == "military_uniform"
    elif case.status == 200:
        assert answer["predictions"] and answer["predictions"][0]["label"]
    else:
        assert set(answer) == {"error", "code"} and answer["code"] == case.code


def test_exif_rotated_photo_gets_the_upright_top1(app) -> None:
    upright = app.api_handler(event_for("rest", CASES["multipart-grace"]), LocalContext())
    rotated = app.api_handler(event_for("rest", CASES["exif-rotated-jpeg"]), LocalContext())
    top = [json.loads(r["body"])["predictions"][0]["label"] for r in (upright, rotated)]
    assert top == ["military_uniform", "military_uniform"]


@pytest.mark.parametrize("event", [{}, {"hello": "world"}, [], "text", {"version": "2.0"}, None])
def test_non_api_events_get_a_400_not_a_crash(app, event) -> None:
    result = app.api_handler(event, LocalContext())
    assert result["statusCode"] == 400
    assert json.loads(result["body"])["code"] == "invalid_event"


def test_logs_never_carry_image_bytes_or_base64_bodies(app) -> None:
    with captured_logs() as stream:
        for name in ("json-base64-newlines", "json-invalid-base64", "truncated-jpeg", "multipart-grace"):
            for door in DOORS:
                app.api_handler(event_for(door, CASES[name]), LocalContext())
    logs = stream.getvalue()
    assert logs.count('"message":"classified"') == 4  # the logs were captured
    photo_base64 = json.loads(CASES["json-data-url"].body)["image"].split(",", 1)[1]
    assert photo_base64[1000:1040] not in logs
    assert "\\u00ff\\u00d8" not in logs and "\xff\xd8" not in logs
