"""``/openapi.json``: valid OpenAPI 3, and exactly the routes the resolver serves."""

from __future__ import annotations

import json
import re

import pytest
from openapi_spec_validator import validate

from handler.contract import ROUTES
from handler.http import routes
from handler.http.schemas import ErrorAnswer, HealthAnswer, PredictionAnswer
from localaws.context import LocalContext
from localaws.events import rest_event
from tests.support import body_json


@pytest.fixture(scope="module")
def document(app) -> dict:
    result = app.api_handler(rest_event("GET", "/openapi.json"), LocalContext())
    assert result["statusCode"] == 200
    return body_json(result)


def test_is_valid_openapi_3(document: dict) -> None:
    assert document["openapi"].startswith("3.")
    validate(document)


def test_documents_exactly_the_routes_served(app, document: dict) -> None:
    documented = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    # The router's registrations: (rule, methods, ...) keys, the source both resolvers serve from.
    served = {
        (re.sub(r"<(\w+)>", r"{\1}", key[0]), method) for key in routes.router._routes for method in key[1]
    }
    assert documented == served
    # ... and exactly the routes API Gateway creates, on either API type (handler.contract.ROUTES).
    assert {(method, path) for path, method in served} == set(ROUTES)
    for path, method in documented:
        concrete = path.replace("{upload_id}", "0" * 32 + ".jpg")
        response = app.api.rest.resolve(rest_event(method, concrete), LocalContext())
        assert '"code":"not_found"' not in response["body"].replace(" ", ""), (path, method)


def test_predict_documents_the_three_upload_styles_and_errors(document: dict) -> None:
    post = document["paths"]["/predict"]["post"]
    assert set(post["requestBody"]["content"]) == {
        "multipart/form-data",
        "application/json",
        "image/*",
        "application/octet-stream",
    }
    assert post["requestBody"]["content"]["multipart/form-data"]["schema"]["required"] == ["image"]
    assert {"200", "400", "413", "415", "422", "500"} <= set(post["responses"])
    (top_k,) = post["parameters"]
    assert (top_k["name"], top_k["in"], top_k["schema"]["minimum"], top_k["schema"]["maximum"]) == (
        "top_k",
        "query",
        1,
        20,
    )
    assert document["servers"] == [{"url": "."}], "relative, so it works behind a stage path"


def test_real_answers_match_the_documented_schemas(app, grace_hopper: bytes) -> None:
    ok = app.api_handler(
        rest_event("POST", "/predict", body=grace_hopper, headers={"Content-Type": "image/jpeg"}),
        LocalContext(),
    )
    PredictionAnswer.model_validate(body_json(ok))
    bad = app.api_handler(
        rest_event("POST", "/predict", body=b"x", headers={"Content-Type": "text/plain"}), LocalContext()
    )
    ErrorAnswer.model_validate(body_json(bad))
    health = app.api_handler(rest_event("GET", "/health"), LocalContext())
    HealthAnswer.model_validate(body_json(health))
    # "uncertain" appears only when a confidence threshold applies (none for ImageNet by default),
    # "captured" only when capture sampled the answer (off by default).
    assert json.loads(ok["body"]).keys() == PredictionAnswer.model_fields.keys() - {
        "uncertain",
        "captured",
        "top_k_clamped",
    }
