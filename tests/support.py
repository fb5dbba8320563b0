"""What the tests share, in one place: where things are, reading proxy results, local servers,
synthesizing the stack, and the clean-interpreter rehearsal. Tests import this, never each other."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SHARED", REPO.parent / "shared"))
PHOTOS = SHARED / "images"
EVENTS = REPO / "events"
MODEL_DIR = Path(os.environ.get("MODEL_DIR", REPO / "build" / "model"))
CAT_CLASSES = {"Egyptian_cat", "tabby", "tiger_cat"}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def body_json(result: dict) -> dict:
    """The JSON body of a Lambda proxy result."""
    assert not result.get("isBase64Encoded"), "JSON answers must not be base64-encoded"
    return json.loads(result["body"])


def header(result: dict, name: str) -> str | None:
    """A response header from either ``headers`` (HTTP v2) or ``multiValueHeaders`` (REST v1)."""
    for key, value in (result.get("headers") or {}).items():
        if key.lower() == name.lower():
            return value
    for key, values in (result.get("multiValueHeaders") or {}).items():
        if key.lower() == name.lower():
            return ", ".join(values)
    return None


@contextlib.contextmanager
def serving(server) -> Iterator[str]:
    """Run a ``LocalApiServer`` in a thread; yield its URL; shut it down afterwards."""
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def local_site(configure, stage: str | None = None, uploads: bool = False, **overrides) -> Iterator[str]:
    """The local API server on 127.0.0.1 in a thread, serving a function built by ``configure``;
    with ``uploads``, moto's S3 (behind S3's POST policy checks) and a worker function of its own
    (its own model) for the notifier, as the stack has. Yields the URL.

    The API function shares the session's model, so the server runs its requests one at a time
    (one execution environment): a function instance never runs two events at once."""
    from localaws.server import LocalApiServer

    local = None
    if uploads:
        from localaws.s3_stack import LocalS3

        local = LocalS3(bucket=f"site-{uuid.uuid4().hex[:8]}")
        if "model" in overrides:
            raise ValueError("uploads=True serves the session's model: its worker needs a copy of its own")
        function = configure(s3_client=local.client, uploads_bucket=local.bucket, **overrides)
        worker = configure(
            s3_client=local.client,
            uploads_bucket=local.bucket,
            model=worker_classifier(),
            sandbox=worker_sandbox(),
            **overrides,
        )
        local.notify(worker.s3_handler)
    else:
        function = configure(**overrides)
    server = LocalApiServer(
        lambda: function.api_handler,
        port=0,
        quiet=True,
        stage=stage,
        environments=1,
        feedback_auth=overrides.get("feedback_auth", "iam"),  # as the stack sets both
    )
    try:
        with serving(server) as url:
            yield url
    finally:
        if local:
            local.stop()


@functools.cache
def worker_classifier():
    """A second instance of the real model, for a worker function running beside the API's."""
    from handler.recognition import model

    return model.load_classifier(MODEL_DIR, "litert", threads=os.cpu_count() or 1)


@functools.cache
def worker_sandbox():
    """A second decode sandbox, for that worker function (a sandbox serves one event at a time)."""
    from handler import config
    from handler.runtime import start_sandbox

    return start_sandbox(config.read_settings({"MODEL_DIR": str(MODEL_DIR)}))


def s3_client_for(endpoint: str, secret: str = "testing"):
    """A boto3 S3 client for a local endpoint (moto, or a proxy in front of it), credentials given."""
    from localaws.s3_stack import local_client

    return local_client(endpoint, "testing", secret)


def package_files(root: Path, package: str = "handler") -> set[str]:
    """The files of ``package`` under ``root`` (bytecode caches aside), as relative POSIX paths."""
    return {
        path.relative_to(root).as_posix()
        for path in (root / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


# --- The stack, synthesized offline (no Docker, no AWS) with cdk.json's context plus overrides.

CDK_JSON = json.loads((REPO / "cdk.json").read_text())

# Everything switched away from its default, to prove context reaches the template.
VARIANT = {
    "memorySize": "3008",
    "architecture": "arm64",
    "throttleRateLimit": "7",
    "throttleBurstLimit": "11",
    "usagePlanQuotaPerDay": "1234",
    "apiKeyRequired": "true",
    "enableWaf": "false",
    "expireAfterDays": "0",
    "uploadsThrottleRateLimit": "2",
    "uploadsThrottleBurstLimit": "3",
    "logRetentionDays": "14",
    "alarmP99LatencyMs": "1500",
    "alarmEmail": "ops@example.org",
    "provisionedConcurrency": "2",
    "reservedConcurrency": "20",
    "sqsBatchSize": "25",
    "modelBackend": "keras",
    "enableBackfill": "false",
    "uploadsPrefix": "incoming/",
    "resultsPrefix": "answers/",
}


def app_with(overrides: dict[str, str] | None = None, outdir: str | None = None):
    import aws_cdk as cdk

    return cdk.App(context={**CDK_JSON["context"], **(overrides or {})}, outdir=outdir)


def template_for(overrides: dict[str, str] | None = None):
    """The stack's template (a fresh App without cdk-nag, as assertion tests should use)."""
    from aws_cdk.assertions import Template

    from infra.settings import Settings
    from infra.stack import ImageRecognitionStack

    app = app_with(overrides)
    stack = ImageRecognitionStack(app, "ImageRecognition", settings=Settings.from_context(app.node))
    return Template.from_stack(stack)


def only(template, kind: str, props: dict | None = None) -> dict:
    found = template.find_resources(kind, {"Properties": props} if props else None)
    assert len(found) == 1, f"expected one {kind} matching {props}, found {len(found)}"
    return next(iter(found.values()))


def alias_of(template, command: str) -> tuple[str, dict]:
    """The logical id and resource of alias ``live`` of the function running ``command``."""
    function_id = next(
        logical_id
        for logical_id, f in template.find_resources("AWS::Lambda::Function").items()
        if f["Properties"].get("ImageConfig", {}).get("Command") == [command]
        or f["Properties"].get("Handler") == command
    )
    return next(
        (logical_id, alias)
        for logical_id, alias in template.find_resources("AWS::Lambda::Alias").items()
        if alias["Properties"]["FunctionName"] == {"Ref": function_id}
    )


def functions(template) -> dict[str, dict]:
    """Our two image functions by command (the notification custom resource is not ours)."""
    return {
        r["Properties"]["ImageConfig"]["Command"][0]: r
        for r in template.find_resources("AWS::Lambda::Function").values()
        if r["Properties"].get("PackageType") == "Image"
    }


# --- The API fixtures in a fresh interpreter that sees only a given set of directories.
# ``python -I -S``: no site-packages, no user site, no PYTHON* variables; ``sys.path`` is the
# standard library plus exactly the roots given (a task root, a layer's ``python/``), as in Lambda.

SCRIPT = r"""
import json, sys
roots = json.loads(sys.argv[1])
sys.path[:0] = roots
try:
    import tensorflow  # noqa: F401
    sys.exit("tensorflow is importable: the litert package must not need it")
except ImportError:
    pass

class Context:
    function_name = "rehearsal"
    function_version = "$LATEST"
    memory_limit_in_mb = 2048
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:rehearsal"
    aws_request_id = "rehearsal"
    def get_remaining_time_in_millis(self):
        return 30000

from handler import app
assert app.__file__.startswith(roots[0]), app.__file__
answers = {}
for path in sys.argv[2:]:
    result = app.api_handler(json.load(open(path)), Context())
    answers[path.rsplit("/", 1)[-1]] = {"status": result["statusCode"], "body": json.loads(result["body"])}
print("REHEARSAL " + json.dumps(answers))
"""


def run_fixtures(roots: list[Path], env: dict[str, str]) -> dict[str, dict]:
    """Answers to every ``events/api-*.json`` fixture, checked against ``expected.json``."""
    fixtures = sorted(str(p) for p in EVENTS.glob("api-*.json"))
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", SCRIPT, json.dumps([str(r) for r in roots]), *fixtures],
        env={
            "PATH": "/usr/bin:/bin",
            "POWERTOOLS_SERVICE_NAME": "image-recognition",
            "POWERTOOLS_METRICS_NAMESPACE": "ImageRecognition",
            "POWERTOOLS_TRACE_DISABLED": "true",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    answers = json.loads(done.stdout.split("REHEARSAL ", 1)[1])
    expected = json.loads((EVENTS / "expected.json").read_text())
    for name, answer in answers.items():
        assert answer["status"] == expected[name]["status"], (name, answer)
        if "top1" in expected[name]:
            assert answer["body"]["predictions"][0]["label"] == expected[name]["top1"]
    assert answers["api-rest-predict-multipart.json"]["body"]["predictions"][0]["label"] == "military_uniform"
    return answers


# --- Photos made from the shared ones.


def eight_megabyte_photo(photo: bytes) -> bytes:
    """The portrait at 24 MP with sensor-like noise: about 8 MB of JPEG, over the API's limit."""
    image = Image.open(io.BytesIO(photo)).convert("RGB").resize((4000, 4700), Image.Resampling.BICUBIC)
    noise = np.random.default_rng(3).integers(-12, 13, (4700, 4000, 3), dtype=np.int16)
    pixels = np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=97)
    return buffer.getvalue()


@contextlib.contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """Powertools' logger keeps the stdout it found at import: swap its stream for one we can read."""
    from handler import function

    stream = io.StringIO()
    previous = function.logger.registered_handler.setStream(stream)
    try:
        yield stream
    finally:
        function.logger.registered_handler.setStream(previous)


@contextlib.contextmanager
def cli_server(*args: str, timeout: float = 90, output: list[str] | None = None) -> Iterator[str]:
    """``imgrec serve --port 0 ARGS`` in a process: the OS picks the port, the server prints its URL
    when it listens, and that line is awaited (no port probing, no polling). Yields the URL; every
    line it prints is appended to ``output`` when one is given."""
    import queue
    import re

    process = subprocess.Popen(
        [sys.executable, "-m", "devtools", "serve", "--port", "0", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    seen_by_caller = output if output is not None else []

    def read() -> None:
        for line in process.stdout:
            lines.put(line)
            seen_by_caller.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        seen = []
        while True:
            line = lines.get(timeout=timeout)
            seen.append(line)
            found = re.search(r"Demo page and API on (http://\S+)", line)
            if found:
                break
            assert process.poll() is None, "".join(seen)
        yield found.group(1)
    finally:
        process.terminate()
        process.wait(timeout=10)


def distinct_copy(source: Path, target: Path, index: int) -> None:
    """``source`` as another photo: a corner block painted by ``index`` and re-encoded in its format
    (training and evaluation skip byte-identical copies: they would count twice). The block is
    16 px wide so JPEG's quantization cannot erase the difference."""
    with Image.open(source) as image:
        changed = image.convert("RGB")
        changed.paste((index * 37 % 256, index * 91 % 256, index * 53 % 256), (0, 0, 16, 16))
        changed.save(target, format=image.format)


# The CPU shared as Lambda, CI or a busy laptop share it (the decode sandbox's bounds must not care).

from bench.shape import busy_processes  # noqa: E402, F401  (the benchmarks' own, for the tests)


@contextlib.contextmanager
def cpu_quota(pids: set[int], cpus: float) -> Iterator[None]:
    """Move ``pids`` (and so everything they fork later) into a cgroup v1 ``cpu`` group with a CFS
    quota of ``cpus``: how Lambda shares a CPU by memory size (these machines are root, cgroup v1)."""
    root = Path("/sys/fs/cgroup/cpu")
    if not os.access(root, os.W_OK):
        raise AssertionError(f"{root} is not writable: run the tests as root on a machine with cgroup v1 cpu")
    group = root / f"sandbox-test-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text(str(int(cpus * 100_000)))
        for pid in pids:
            (group / "tasks").write_text(str(pid))
        yield
    finally:
        for pid in (group / "tasks").read_text().split():
            with contextlib.suppress(OSError):
                (root / "tasks").write_text(pid)
        group.rmdir()


def workers_of(zygote: int) -> set[int]:
    """A decode sandbox's live worker processes (its zygote's children), read from /proc."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == zygote and fields[0] != "Z":
                found.add(int(stat.parent.name))
    return found


def link_file(source: Path, target: Path) -> None:
    """``target`` as the same file as ``source`` without copying it where the file system allows
    (a hard link); a copy otherwise. Never a symlink: a model directory's files must resolve inside
    it (``manifest.inside``), as a symlink to the build's would not."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
