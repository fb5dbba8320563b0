"""``imgrec``: invoke, predict and serve as separate processes, like a developer runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import requests

from tests.support import CAT_CLASSES, EVENTS, PHOTOS, REPO, cli_server

pytestmark = [pytest.mark.slow]


def run(*args: str, timeout: int = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devtools", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "POWERTOOLS_TRACE_DISABLED": "true", **env},
    )


def test_invoke_prints_only_the_lambda_result_on_stdout() -> None:
    done = run("invoke", str(EVENTS / "api-rest-predict-multipart.json"))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["statusCode"] == 200
    assert json.loads(result["body"])["predictions"][0]["label"] == "military_uniform"
    # Quiet by default: no log line, no LiteRT notice; LOG_LEVEL=DEBUG brings both back (to stderr).
    assert "model ready" not in done.stderr and "XNNPACK" not in done.stderr, done.stderr
    loud = run(
        "invoke", str(EVENTS / "api-rest-predict-multipart.json"), LOG_LEVEL="DEBUG", POWERTOOLS_LOG_LEVEL=""
    )
    assert json.loads(loud.stdout)["statusCode"] == 200
    assert '"message":"model ready"' in loud.stderr and "XNNPACK delegate" in loud.stderr, loud.stderr


def test_invoke_an_error_fixture() -> None:
    done = run("invoke", str(EVENTS / "api-rest-error-415-not-an-image.json"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["statusCode"] == 415


def test_predict_prints_a_table_per_image(tmp_path) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image")
    done = run("predict", str(PHOTOS / "grace_hopper.jpg"), str(PHOTOS / "cat.bmp"), str(text_file))
    assert done.returncode == 1, "a failed image makes the exit code non-zero"
    sections = [section.strip() for section in done.stdout.split("\n\n")]
    grace = next(s for s in sections if "grace_hopper.jpg" in s)
    cat = next(s for s in sections if "cat.bmp" in s)
    assert grace.splitlines()[1].split()[:2] == ["1.", "military_uniform"]
    assert cat.splitlines()[1].split()[1] in {"Egyptian_cat", "tabby", "tiger_cat"}
    assert "error unsupported_image_type: Not a supported image type" in done.stdout
    assert not done.stderr.strip(), f"nothing but the table: {done.stderr}"


def test_predict_says_uncertain_as_the_api_does() -> None:
    """grace_hopper's top-1 is about 0.93: under a 0.99 threshold the table says so, under 0.5 not."""
    photo = str(PHOTOS / "grace_hopper.jpg")
    strict = run("predict", photo, MIN_CONFIDENCE="0.99")
    assert strict.returncode == 0, strict.stderr
    assert "uncertain: the top class is below the confidence threshold" in strict.stdout
    relaxed = run("predict", photo, MIN_CONFIDENCE="0.5")
    assert "military_uniform" in relaxed.stdout and "uncertain" not in relaxed.stdout


def test_serve_answers_curl_style_uploads_with_one_readable_line_each() -> None:
    output: list[str] = []
    with cli_server("--stage", "prod", output=output) as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/prod/")
        assert requests.get(f"{url}health", timeout=30).json()["model"]["name"] == "mobilenet_v2"
        with (PHOTOS / "grace_hopper.jpg").open("rb") as photo:
            answer = requests.post(f"{url}predict", files={"image": photo}, timeout=30)
        assert answer.status_code == 200
        assert answer.json()["predictions"][0]["label"] == "military_uniform"
        assert requests.post(f"{url}predict", data=b"x", timeout=30).status_code == 415
        with requests.Session() as session:  # Powertools prints metrics at 100 values even when off
            small = (PHOTOS / "cat.bmp").read_bytes()
            for _ in range(101):
                session.post(f"{url}predict", data=small, headers={"Content-Type": "image/bmp"}, timeout=30)
    # Access lines only: a server line about a connection (an idle keep-alive read timing out on a
    # busy machine, logged by http.server) is not a request.
    access = [line for line in output if line.startswith("[serve] ") and " -> " in line]
    assert [line.split(" (")[0] for line in access[:3]] == [
        "[serve] GET /prod/health -> 200",
        "[serve] POST /prod/predict -> 200",
        "[serve] POST /prod/predict -> 415",
    ], output
    assert len(access) == 104
    assert not [line for line in output if line.lstrip().startswith("{")], "no JSON logs or EMF by default"


def test_serve_answers_concurrent_requests_each_in_an_environment_of_its_own() -> None:
    """Eight photos at once against the real model: every answer right, none mixed up (each
    environment has its own interpreter; nothing in the function is shared across threads)."""
    from concurrent.futures import ThreadPoolExecutor

    photos = {"grace_hopper.jpg": {"military_uniform"}, "cat.bmp": CAT_CLASSES}

    def classify(url: str, name: str) -> tuple[str, int, str]:
        answer = requests.post(f"{url}predict", files={"image": (PHOTOS / name).read_bytes()}, timeout=60)
        return name, answer.status_code, answer.json()["predictions"][0]["label"]

    output: list[str] = []
    with cli_server(output=output) as url, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda n: classify(url, n), [*photos] * 4))
    assert all(status == 200 for _, status, _ in answers), answers
    assert all(label in photos[name] for name, _, label in answers), answers


def test_serve_with_log_format_json_keeps_lambdas_shape() -> None:
    output: list[str] = []
    os.environ["LOG_FORMAT"] = "json"
    try:
        with cli_server(output=output) as url, (PHOTOS / "grace_hopper.jpg").open("rb") as photo:
            assert requests.post(f"{url}predict", files={"image": photo}, timeout=30).status_code == 200
    finally:
        del os.environ["LOG_FORMAT"]
    emitted = [json.loads(line) for line in output if line.startswith("{")]
    assert any(record.get("message") == "classified" for record in emitted), output
    assert any("_aws" in record for record in emitted), "an EMF metrics blob, as Lambda would print"


def test_s3_demo_prints_each_result_record_as_stored() -> None:
    done = run("s3-demo", str(PHOTOS))
    assert done.returncode == 0, done.stderr
    assert 's3_handler answered {"batchItemFailures": []}' in done.stdout
    # After the summary line: "s3://bucket/key" then the record's JSON, for each photo.
    blocks = done.stdout.split("\ns3://image-recognition-demo/")[1:]
    records = {block.split("\n", 1)[0]: json.loads(block.split("\n", 1)[1]) for block in blocks}
    portrait = records["results/uploads/grace_hopper.jpg.json"]
    assert portrait["predictions"][0]["label"] == "military_uniform"
    assert portrait["key"] == "uploads/grace_hopper.jpg" and portrait["model"]["backend"] == "litert"
    assert records["results/uploads/cat.bmp.json"]["predictions"][0]["label"] in CAT_CLASSES


def test_upload_through_serve_with_local_s3(tmp_path) -> None:
    """`serve --s3` (moto + notifier) and `upload`: the large-photo flow end to end, as a user runs it."""
    with cli_server("--s3") as url:
        photo = tmp_path / "portrait.png"
        photo.write_bytes(_png_of(PHOTOS / "grace_hopper.jpg"))
        done = run("upload", str(photo), "--api", url, "--timeout", "60")
        assert done.returncode == 0, done.stderr
        assert "uploaded portrait.png" in done.stderr and "done" in done.stderr
        assert done.stdout.strip().splitlines()[1].split()[:2] == ["1.", "military_uniform"]


def _png_of(path) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.open(path).save(buffer, "PNG")
    return buffer.getvalue()
