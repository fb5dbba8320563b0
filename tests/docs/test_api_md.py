"""Every example in docs/api.md runs against the local server and gets the answer it promises;
the signed ``POST feedback`` example (AWS only) runs against a recorder of what it sends. The ``sh``
blocks (the AWS CLI, awscurl) need an AWS account and are not run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import PHOTOS, REPO, local_site

pytestmark = [pytest.mark.slow]

DOC = (REPO / "docs" / "api.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", DOC, flags=re.DOTALL)
DOCUMENTED_BASE = "http://127.0.0.1:3000/"


def blocks(language: str, containing: str = "") -> list[str]:
    return [code for lang, code in BLOCKS if lang == language and containing in code]


@pytest.fixture(scope="module")
def base_url(configure) -> Iterator[str]:
    with local_site(configure, uploads=True, capture_rate=1.0) as url:  # the feedback example needs it
        yield url


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """``photo.jpg``: the portrait at 4x its size, about 400 KB, as a phone photo would be. Its
    base64 is over the shell's argument limit for one word, so a ``-d "$(base64 …)"`` example fails."""
    from PIL import Image

    with Image.open(PHOTOS / "grace_hopper.jpg") as portrait:
        big = portrait.resize((portrait.width * 2, portrait.height * 2), Image.Resampling.BICUBIC)
    big.save(tmp_path / "photo.jpg", quality=95)
    assert (tmp_path / "photo.jpg").stat().st_size > 200_000
    return tmp_path


def run(command: list[str], workdir: Path, **env: str) -> str:
    done = subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, timeout=120, env={**os.environ, **env}
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


SIGNED = "SigV4Auth"


def test_the_doc_has_examples_in_each_language() -> None:
    assert len(blocks("bash", "curl")) >= 5
    assert len(blocks("python")) == 3 and len(blocks("js")) == 1
    assert len(blocks("python", SIGNED)) == 1


@pytest.mark.parametrize("example", blocks("bash", "curl"), ids=lambda code: code.split("\n")[0][:60])
def test_curl_examples(example: str, base_url: str, workdir: Path) -> None:
    answer = json.loads(run(["bash", "-euo", "pipefail", "-c", example], workdir, API=base_url))
    if "results" in answer:
        assert [r["predictions"][0]["label"] for r in answer["results"]] == ["military_uniform"] * 2
        assert len(answer["results"][0]["predictions"]) == 2
    elif "predictions" in answer:
        assert answer["predictions"][0]["label"] == "military_uniform"
        top_k = re.search(r"top_k=(\d+)", example)
        assert len(answer["predictions"]) == (int(top_k.group(1)) if top_k else 5)
    elif "answered" in answer:  # POST feedback on the answer the example just got
        assert (answer["label"], answer["answered"]) == ("suit", "military_uniform"), answer
    elif "status" in answer:
        assert answer["status"] == "ok" and answer["limits"]["max_image_bytes"] == 6 * 1024 * 1024
    else:
        assert answer["code"] == "unsupported_image_type", answer


@pytest.mark.parametrize(
    "example", [b for b in blocks("python") if SIGNED not in b], ids=["predict", "upload"]
)
def test_python_examples(example: str, base_url: str, workdir: Path) -> None:
    script = workdir / "example.py"
    script.write_text(example.replace(DOCUMENTED_BASE, base_url))
    lines = run([sys.executable, str(script)], workdir).splitlines()
    if "uploads" in example:
        assert lines[-1].startswith("military_uniform")
    else:
        assert re.fullmatch(r"military_uniform 9\d\.\d%", lines[0]), lines[0]
        assert lines[1].startswith("['military_uniform',") and lines[1].count("'") == 6


def test_the_signed_feedback_example_sends_a_sigv4_request_for_execute_api(workdir: Path) -> None:
    """The example, pointed at a local recorder instead of API Gateway: it POSTs the correction
    with an AWS Signature Version 4 for ``execute-api`` in its region, from the usual credentials."""
    import http.server
    import threading

    received: dict = {}

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received["path"], received["headers"] = self.path, dict(self.headers)
            received["body"] = self.rfile.read(int(self.headers["Content-Length"]))
            answer = b'{"label": "suit"}'
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (example,) = blocks("python", SIGNED)
    documented = re.search(r'API = "(https://[^"]+)"', example).group(1)
    script = workdir / "signed.py"
    script.write_text(example.replace(documented, f"http://127.0.0.1:{server.server_port}/prod/"))
    try:
        printed = run(
            [sys.executable, str(script)],
            workdir,
            AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
            AWS_SECRET_ACCESS_KEY="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            AWS_CONFIG_FILE=str(workdir / "none"),
            AWS_SHARED_CREDENTIALS_FILE=str(workdir / "none"),
        )
    finally:
        server.shutdown()
        server.server_close()
    assert printed.startswith("201 ")
    assert received["path"] == "/prod/feedback"
    authorization = received["headers"]["Authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in authorization and "SignedHeaders=" in authorization
    assert "X-Amz-Date" in received["headers"]
    assert json.loads(received["body"])["label"] == "suit"


def test_javascript_example(base_url: str, workdir: Path) -> None:
    (example,) = blocks("js")
    script = workdir / "example.mjs"
    script.write_text(example.replace(DOCUMENTED_BASE, base_url))
    output = run(["node", str(script)], workdir)
    assert "label: 'military_uniform'" in output
    assert re.search(r"\[ 'military_uniform', '\w+', '\w+' \] litert", output), output
