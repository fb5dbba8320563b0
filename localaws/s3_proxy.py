"""An HTTP proxy on 127.0.0.1 in front of moto's S3 server: S3's POST policy checks, and faults.

moto stores browser POST uploads without evaluating their signed policy; with
``post_policy_secret`` this proxy refuses what S3 would (signature, expiry, size range, key,
content type), so a local upload cannot write outside its key or over its size (``make dev`` and
the tests). Requests whose path contains one of ``drop`` are answered by closing the connection
without a response (what a dying endpoint looks like to boto3). The rest goes to moto unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import io
import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import multipart

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class S3Proxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, post_policy_secret: str | None = None) -> None:
        self.upstream = urlsplit(upstream)
        self.drop: set[str] = set()
        self.dropped: list[str] = []
        self.post_policy_secret = post_policy_secret  # check browser POST uploads as S3 does
        self.refused: list[str] = []
        super().__init__(("127.0.0.1", 0), _Forward)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Forward(BaseHTTPRequestHandler):
    server: S3Proxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:
        pass

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if any(marker in self.path for marker in self.server.drop):
            self.server.dropped.append(f"{self.command} {self.path}")
            self.close_connection = True  # no status line at all: the connection just ends
            return
        content_type = self.headers.get("Content-Type", "")
        if (
            self.server.post_policy_secret
            and self.command == "POST"
            and content_type.startswith("multipart/")
        ):
            violation = post_policy_violation(body, content_type, self.server.post_policy_secret)
            if violation:
                self.server.refused.append(violation)
                code = violation.split(":")[0]
                status = 400 if code.startswith("Entity") else 403
                payload = f"<Error><Code>{code}</Code><Message>{violation}</Message></Error>".encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
        upstream = http.client.HTTPConnection(
            self.server.upstream.hostname, self.server.upstream.port, timeout=30
        )
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        payload = response.read()
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        upstream.close()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_OPTIONS = _forward


def post_policy_violation(body: bytes, content_type: str, secret_key: str) -> str | None:
    """What S3 would refuse in a browser-style POST upload, or None.

    moto's S3 server stores POST uploads without evaluating their policy, so this does what S3
    documents: check the SigV4 signature of the policy with the (test) secret key, its expiration,
    and each condition (exact match, ``starts-with``, ``content-length-range``) against the form.
    """
    fields, file_size = _form(body, content_type)
    encoded = fields.get("policy", "")
    credential = fields.get("x-amz-credential", "").split("/")
    if len(credential) != 5 or file_size is None:
        return "MissingFields"
    _, date, region, service, _ = credential
    key = f"AWS4{secret_key}".encode()
    for piece in (date, region, service, "aws4_request"):
        key = hmac.new(key, piece.encode(), hashlib.sha256).digest()
    if hmac.new(key, encoded.encode(), hashlib.sha256).hexdigest() != fields.get("x-amz-signature"):
        return "SignatureDoesNotMatch"
    policy = json.loads(base64.b64decode(encoded))
    if datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00")) < datetime.now(UTC):
        return "AccessDenied: policy expired"
    for condition in policy["conditions"]:
        if isinstance(condition, dict):
            ((name, value),) = condition.items()
            if name != "bucket" and fields.get(name.lower()) != value:
                return f"AccessDenied: Policy Condition failed: {name}"
        elif condition[0] == "content-length-range":
            if not condition[1] <= file_size <= condition[2]:
                return "EntityTooLarge" if file_size > condition[2] else "EntityTooSmall"
        elif condition[0] == "starts-with":
            if not fields.get(condition[1].lstrip("$").lower(), "").startswith(condition[2]):
                return f"AccessDenied: Policy Condition failed: {condition[1]}"
        elif condition[0] == "eq" and fields.get(condition[1].lstrip("$").lower()) != condition[2]:
            return f"AccessDenied: Policy Condition failed: {condition[1]}"
    return None


def _form(body: bytes, content_type: str) -> tuple[dict[str, str], int | None]:
    """A multipart form's text fields (names lower-cased) and the size of its ``file`` part."""
    _, options = multipart.parse_options_header(content_type)
    fields: dict[str, str] = {}
    file_size = None
    for part in multipart.MultipartParser(io.BytesIO(body), options["boundary"], content_length=len(body)):
        if part.name == "file":
            file_size = part.size
        else:
            fields[part.name.lower()] = part.value
    return fields, file_size
