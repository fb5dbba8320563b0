"""CodeDeploy pre-traffic hook: before alias ``live`` sends a single request to a new version of the
API function, invoke that version with a real photo and fail the deployment unless it answers 200
with the expected top-1 label and the expected model. A model that cannot classify never takes
traffic.

Deployed as its own small function (``infra/components/delivery.py``), allowed to invoke that one
version only. ``photo_event.json`` is the committed API fixture ``events/api-http-predict-raw-jpeg.json``
(grace_hopper.jpg, raw JPEG, HTTP API payload 2.0). Standard library and the runtime's boto3 only.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

EVENT = Path(__file__).resolve().with_name("photo_event.json")

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


def check(invoke: Invoke, expected_top1: str, expected_model: dict[str, str]) -> tuple[bool, str]:
    """Send the photo through ``invoke`` (the new version); whether its answer is the expected one,
    and why not."""
    answer = invoke(json.loads(EVENT.read_text()))
    if "statusCode" not in answer:
        return False, f"not an API answer: {json.dumps(answer)[:300]}"
    if answer["statusCode"] != 200:
        return False, f"status {answer['statusCode']}: {str(answer.get('body', ''))[:300]}"
    body = answer.get("body") or ""
    result = json.loads(base64.b64decode(body) if answer.get("isBase64Encoded") else body)
    model = {key: result.get("model", {}).get(key) for key in ("name", "version")}
    if model != expected_model:
        return False, f"model {model}, expected {expected_model}"
    top1 = result["predictions"][0]["label"]
    if expected_top1 and top1 != expected_top1:
        return False, f"top-1 {top1!r}, expected {expected_top1!r}"
    return True, f"200, top-1 {top1!r}, model {model['name']} {model['version']}"


def lambda_invoker(client: Any, function_arn: str) -> Invoke:
    """Invoke ``function_arn`` synchronously; a function error becomes a 500-like answer."""

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        response = client.invoke(FunctionName=function_arn, Payload=json.dumps(event).encode())
        payload = json.loads(response["Payload"].read() or b"{}")
        if response.get("FunctionError"):
            return {"statusCode": 500, "body": json.dumps(payload)}
        return payload

    return invoke


def run(event: dict[str, Any], lambda_client: Any, codedeploy_client: Any, environ: dict[str, str]) -> str:
    """Check the new version and tell CodeDeploy: ``Succeeded`` lets traffic shift, ``Failed`` rolls
    the deployment back."""
    try:
        ok, reason = check(
            lambda_invoker(lambda_client, environ["TARGET_VERSION_ARN"]),
            environ.get("EXPECTED_TOP1", ""),
            {"name": environ["EXPECTED_MODEL_NAME"], "version": environ["EXPECTED_MODEL_VERSION"]},
        )
    except Exception as error:  # an unreadable answer fails the deployment; it must never pass
        ok, reason = False, f"{type(error).__name__}: {error}"
    status = "Succeeded" if ok else "Failed"
    print(json.dumps({"pre_traffic": status, "reason": reason, "version": environ["TARGET_VERSION_ARN"]}))
    codedeploy_client.put_lifecycle_event_hook_execution_status(
        deploymentId=event["DeploymentId"],
        lifecycleEventHookExecutionId=event["LifecycleEventHookExecutionId"],
        status=status,
    )
    return status


def handler(event: dict[str, Any], context: Any) -> str:
    import boto3

    return run(event, boto3.client("lambda"), boto3.client("codedeploy"), dict(os.environ))
