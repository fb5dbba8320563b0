"""Build API Gateway proxy events the way API Gateway does, for the local server, fixtures and tests.

REST API (v1) with binary media types base64-encodes bodies whose Content-Type matches one of
them and passes others as text; HTTP API (v2) base64-encodes every non-text body. Both are
reproduced here so local runs exercise the same decoding paths as AWS.

A request IAM authorization let through carries its caller where API Gateway puts it: v1
``requestContext.identity`` (``userArn``, ``caller``, ``accountId``: null when unauthenticated),
v2 ``requestContext.authorizer.iam`` (absent when the route has no IAM authorizer): ``caller=``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qs, quote_plus

from handler.contract import BINARY_MEDIA_TYPES

TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")


@dataclass(frozen=True)
class Caller:
    """An IAM principal whose signed request API Gateway authenticated."""

    arn: str
    account: str
    user_id: str  # the principal's unique id ("AIDA...", or "AROA...:session" for a role)
    access_key: str = "ASIAEXAMPLEEXAMPLE00"
    org_id: str | None = None

    def rest_identity(self) -> dict:
        return {
            "accessKey": self.access_key,
            "accountId": self.account,
            "caller": self.user_id,
            "user": self.user_id,
            "userArn": self.arn,
            "principalOrgId": self.org_id,
        }

    def http_authorizer(self) -> dict:
        return {
            "iam": {
                "accessKey": self.access_key,
                "accountId": self.account,
                "callerId": self.user_id,
                "cognitoIdentity": None,
                "principalOrgId": self.org_id,
                "userArn": self.arn,
                "userId": self.user_id,
            }
        }


# What the local server puts in the event of a POST /feedback sent with its local credential
# (localaws.server): a reviewer of account 000000000000, which no real account has.
LOCAL_REVIEWER = Caller(
    arn="arn:aws:iam::000000000000:user/local-reviewer", account="000000000000", user_id="AIDALOCALREVIEWER"
)
_UNAUTHENTICATED = {"accessKey": None, "accountId": None, "caller": None, "user": None, "userArn": None}


def is_binary(content_type: str | None) -> bool:
    """Would API Gateway (REST, with our binary media types) base64-encode this body?"""
    kind = (content_type or "").split(";")[0].strip().lower()
    return any(
        kind.startswith(pattern[:-1]) if pattern.endswith("*") else kind == pattern
        for pattern in BINARY_MEDIA_TYPES
    )


def _encode(body: bytes, base64_encoded: bool) -> str:
    return base64.b64encode(body).decode("ascii") if base64_encoded else body.decode("utf-8", "replace")


def _query(query: str | dict[str, str] | None) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    if not query:
        return None, None
    multi = (
        parse_qs(query, keep_blank_values=True)
        if isinstance(query, str)
        else {k: [v] for k, v in query.items()}
    )
    return {k: v[-1] for k, v in multi.items()}, multi


def _headers(headers: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> dict[str, list[str]]:
    """Header values by name, in arrival order; repeated headers keep every value."""
    pairs = headers.items() if isinstance(headers, Mapping) else (headers or [])
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        multi.setdefault(name, []).append(value)
    return multi


def rest_event(
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    query: str | dict[str, str] | None = None,
    stage: str = "prod",
    domain_name: str = "localhost",
    caller: Caller | None = None,
) -> dict:
    """A REST API (v1) Lambda proxy event: ``headers`` holds the last value of a repeated header,
    ``multiValueHeaders`` all of them, as API Gateway does; ``caller``: the IAM principal it
    authenticated (None: an unauthenticated request, whose identity fields are null)."""
    multi_headers = _headers(headers)
    headers = {name: values[-1] for name, values in multi_headers.items()}
    single, multi = _query(query)
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
    encoded = bool(body) and is_binary(content_type)
    now = datetime.now(UTC)
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method.upper(),
        "headers": headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": single,
        "multiValueQueryStringParameters": multi,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method.upper(),
            "path": f"/{stage}{path}" if stage else path,
            "stage": stage or "$default",
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "accountId": "123456789012",
            "apiId": "local",
            "protocol": "HTTP/1.1",
            "domainName": domain_name,
            "identity": {
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("User-Agent", "local"),
                **(caller.rest_identity() if caller else _UNAUTHENTICATED),
            },
        },
        "body": _encode(body, encoded) if body else None,
        "isBase64Encoded": encoded,
    }


def http_event(
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    query: str | None = None,
    stage: str = "$default",
    domain_name: str = "localhost",
    caller: Caller | None = None,
) -> dict:
    """An HTTP API (v2) Lambda proxy event (payload format 2.0); ``caller``: the IAM principal
    the route's IAM authorizer authenticated (None: a route without one)."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    single, _ = _query(query)
    content_type = headers.get("content-type", "")
    encoded = bool(body) and not content_type.startswith(TEXT_TYPES)
    now = datetime.now(UTC)
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query or "",
        "headers": headers,
        "queryStringParameters": single,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": domain_name,
            "http": {
                "method": method.upper(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("user-agent", "local"),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": stage,
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
            **({"authorizer": caller.http_authorizer()} if caller else {}),
        },
        "body": _encode(body, encoded) if body else None,
        "isBase64Encoded": encoded,
    }


def multipart_body(
    parts: list[tuple[str, str | None, bytes, str | None]], boundary: str | None = None
) -> tuple[bytes, str]:
    """Encode ``[(field, filename, data, content_type), ...]``; a None filename makes a text field.

    Returns (body, Content-Type)."""
    boundary = boundary or f"----local{uuid.uuid4().hex}"
    chunks = []
    for field, filename, data, content_type in parts:
        disposition = f'form-data; name="{field}"' + (
            f'; filename="{filename}"' if filename is not None else ""
        )
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        chunks.append(head.encode() + b"\r\n" + data + b"\r\n")
    return b"".join(chunks) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def s3_key_in_event(key: str) -> str:
    """How S3 writes a key into a notification: URL-encoded, spaces as ``+``."""
    return quote_plus(key, safe="/")


def s3_event(bucket: str, objects: list[tuple[str, str, int]], region: str = "us-east-1") -> dict:
    """A direct S3 ``ObjectCreated:Put`` notification for ``[(key, etag, size), ...]``."""
    records = []
    for index, (key, etag, size) in enumerate(objects):
        records.append(
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": region,
                "eventTime": "2026-11-01T00:00:00.000Z",
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:EXAMPLE"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {"x-amz-request-id": "EXAMPLE", "x-amz-id-2": "EXAMPLE"},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "uploads",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "EXAMPLE"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": {
                        "key": s3_key_in_event(key),
                        "size": size,
                        "eTag": etag,
                        "sequencer": f"{index:016X}",
                    },
                },
            }
        )
    return {"Records": records}


def s3_test_event(bucket: str) -> dict:
    """The message S3 sends once when a notification configuration is created."""
    return {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2026-11-01T00:00:00.000Z",
        "Bucket": bucket,
        "RequestId": "EXAMPLE",
        "HostId": "EXAMPLE",
    }


def sqs_event(
    messages: list[dict], queue: str = "image-recognition-uploads", region: str = "us-east-1"
) -> dict:
    """An SQS batch whose message bodies are the given documents (S3 notifications)."""
    return {
        "Records": [
            {
                "messageId": f"00000000-0000-4000-8000-{index:012d}",
                "receiptHandle": f"receipt-{index}",
                "body": json.dumps(message),
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1795000000000",
                    "SenderId": "EXAMPLE",
                    "ApproximateFirstReceiveTimestamp": "1795000000000",
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(json.dumps(message).encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{region}:123456789012:{queue}",
                "awsRegion": region,
            }
            for index, message in enumerate(messages)
        ]
    }


def map_items(objects: Iterable[tuple[str, str, int]]) -> list[dict]:
    """Distributed Map items as ``S3ObjectsItemReader`` lists them (ListObjectsV2, quoted ETag)."""
    return [
        {
            "Etag": f'"{etag.strip(chr(34))}"',
            "Key": key,
            "LastModified": 1_795_000_000,
            "Size": size,
            "StorageClass": "STANDARD",
        }
        for key, etag, size in objects
    ]


def map_batch_event(bucket: str, objects: Iterable[tuple[str, str, int]], **batch_input: object) -> dict:
    """A Distributed Map child batch (``ItemBatcher``): the items and the ``BatchInput`` we set."""
    return {"Items": map_items(objects), "BatchInput": {"bucket": bucket, **batch_input}}


def batch_operations_event(
    bucket: str,
    keys: Iterable[str],
    version: str = "2.0",
    user_arguments: Mapping[str, str] | None = None,
    version_ids: Mapping[str, str] | None = None,
) -> dict:
    """An S3 Batch Operations ``LambdaInvoke`` event, schema 1.0 (bucket ARN per task) or 2.0
    (bucket name, ``userArguments``); keys URL-encoded as S3 Batch Operations sends them."""
    tasks = []
    for index, key in enumerate(keys):
        task = {
            "taskId": f"task-{index:04d}",
            "s3Key": quote_plus(key, safe="/"),
            "s3VersionId": (version_ids or {}).get(key),
        }
        if version == "1.0":
            task["s3BucketArn"] = f"arn:aws:s3:::{bucket}"
        else:
            task["s3Bucket"] = bucket
        tasks.append(task)
    job: dict[str, object] = {"id": "00000000-0000-4000-8000-00000000b0b0"}
    if version == "2.0":
        job["userArguments"] = dict(user_arguments or {})
    return {
        "invocationSchemaVersion": version,
        "invocationId": "ZXhhbXBsZS1pbnZvY2F0aW9uLWlk",
        "job": job,
        "tasks": tasks,
    }
