"""README.md and the guides in docs/ keep their promises: every command block they tell a reader to
run is run here, or, where it needs AWS or Docker, checked for syntax and options
(``tests/docs/blocks.py`` says how a block is marked and what each kind gets).

Fast tier (pure, or ``make -n``): the block kinds, ``bash -n``, make targets and variables,
``imgrec`` command lines, context keys, inline mentions, relative links, the README's length, the
``/health`` example. Slow tier: the blocks run for real, doc by doc in the index's order, in a
mirror of the checkout (a temporary folder whose entries link to the checkout's, with its own
``build/`` holding a copy of ``build/model``; ``../shared`` beside it links to the shared photos and
weights, with a tiny copy of the ants and bees). Whatever the blocks write lands in the mirror,
never in the checkout: other people's models are safe. Changes made to a block before it runs,
and only these: a server's port (3000 → a free one, on 127.0.0.1) and the moto endpoint it prints;
``train`` blocks get ``--epochs 1 --fine-tune-layers 0`` on a tiny dataset; ``make test`` gets
``PYTEST_ARGS`` naming one small module.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.docs import blocks as docblocks
from tests.docs.blocks import CHECKED_ONLY, KINDS, Block, guides, shell_blocks
from tests.support import REPO, SHARED

ALL = shell_blocks()
README = REPO / "README.md"
TINY = 6  # photos a class in the tiny dataset
SPEEDY = "--epochs 1 --fine-tune-layers 0"
ONE_MODULE = "-q -p no:cacheprovider tests/docs/test_error_codes.py"  # make test, inside the suite


def ids(block: Block) -> str:
    return block.id


# ---------------------------------------------------------------- fast tier: what every block says


def test_every_shell_block_has_a_known_kind() -> None:
    assert ALL, "no shell block found"
    unknown = [(b.id, b.kind) for b in ALL if b.kind not in KINDS]
    assert not unknown, f"unknown block kinds (see tests/docs/blocks.py): {unknown}"
    assert all(b.language == "bash" for b in ALL), "write shell blocks as ```bash [kind]"


def test_the_readme_is_a_guide_of_at_most_250_lines() -> None:
    assert len(README.read_text().splitlines()) <= 250


@pytest.mark.parametrize("block", ALL, ids=ids)
def test_block_syntax(block: Block) -> None:
    done = subprocess.run(["bash", "-n"], input=block.code, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


MAKE_CALLS = [(b, targets, variables) for b in ALL for targets, variables in docblocks.make_calls(b.code)]


@pytest.mark.parametrize(
    ("block", "targets", "variables"), MAKE_CALLS, ids=[f"{b.id}:{' '.join(t)}" for b, t, _ in MAKE_CALLS]
)
def test_make_targets_and_variables_exist(block: Block, targets: list[str], variables: dict) -> None:
    assert set(targets) <= docblocks.makefile_targets(), f"no such make target in {targets}"
    unread = [name for name in variables if not docblocks.makefile_reads(name)]
    assert not unread, f"the Makefile reads no {unread}"
    dry = subprocess.run(
        ["make", "-n", "--no-print-directory", *targets, *(f"{k}={v}" for k, v in variables.items())],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_environment(),
    )
    assert dry.returncode == 0, dry.stderr
    if "CONTEXT" in variables:  # the settings reach the CDK CLI
        assert variables["CONTEXT"] in dry.stdout, dry.stdout


class Parsed(Exception):
    pass


def parse_imgrec(arguments: list[str]) -> argparse.Namespace:
    """``arguments`` through ``devtools.cli``'s own parser (its ``main`` stops once they parse)."""
    from devtools import cli

    original = argparse.ArgumentParser.parse_args

    def parse_only(self, args=None, namespace=None):
        raise Parsed(original(self, args, namespace))

    argparse.ArgumentParser.parse_args = parse_only
    try:
        with contextlib.redirect_stderr(io.StringIO()) as errors:
            cli.main(arguments)
    except Parsed as parsed:
        return parsed.args[0]
    except SystemExit:
        pytest.fail(f"imgrec {' '.join(arguments)} does not parse: {errors.getvalue()}")
    finally:
        argparse.ArgumentParser.parse_args = original
    pytest.fail("imgrec's main returned before parsing")


IMGREC_CALLS = [(b, args) for b in ALL for args in docblocks.imgrec_calls(b.code)]


@pytest.mark.parametrize(
    ("block", "arguments"), IMGREC_CALLS, ids=[f"{b.id}:{a[0]}" for b, a in IMGREC_CALLS]
)
def test_imgrec_command_lines_parse(block: Block, arguments: list[str]) -> None:
    parse_imgrec(arguments)


def test_the_parser_check_is_real() -> None:
    with pytest.raises(pytest.fail.Exception):
        parse_imgrec(["train", "data", "--out", "x", "--no-such-flag"])


def context_defaults() -> dict:
    from infra.settings import Settings

    cdk = json.loads((REPO / "cdk.json").read_text())["context"]
    return {**{k: v for k, v in cdk.items() if not k.startswith("@")}, **Settings.defaults()}


CONTEXT_USES = [(b, key) for b in ALL for key in docblocks.context_keys(b.code)]


@pytest.mark.parametrize(("block", "key"), CONTEXT_USES, ids=[f"{b.id}:{k}" for b, k in CONTEXT_USES])
def test_context_keys_are_known(block: Block, key: str) -> None:
    assert key in context_defaults()


def test_inline_make_and_imgrec_mentions_exist() -> None:
    """``make X`` and ``imgrec X --flag`` in the prose: the target, the sub-command, each flag."""
    targets, wrong = docblocks.makefile_targets(), []
    helps: dict[str, str] = {}
    for doc in guides():
        for span in docblocks.inline_code(doc):
            words = span.split()
            for i, word in enumerate(words[:-1]):
                nxt = words[i + 1]
                if word == "make" and re.fullmatch(r"[a-z0-9-]+", nxt) and nxt not in targets:
                    wrong.append(f"{doc.name}: `{span}`")
                if word in ("imgrec", ".venv/bin/imgrec") and re.fullmatch(r"[a-z0-9-]+", nxt):
                    sub = nxt if nxt != "dataset" else "dataset export"
                    if sub not in helps:
                        helps[sub] = imgrec_help(sub.split())
                    if helps[sub] is None:
                        wrong.append(f"{doc.name}: `{span}` (no sub-command {sub})")
                        continue
                    flags = {re.sub(r"^--\[no-\]", "--", f) for f in re.findall(r"--[\[\]a-z0-9-]+", span)}
                    for flag in flags:
                        if flag.rstrip("]") not in helps[sub] and f"--no-{flag[2:]}" not in helps[sub]:
                            wrong.append(f"{doc.name}: `{span}` ({flag})")
    assert not wrong, "\n".join(wrong)


def imgrec_help(words: list[str]) -> str | None:
    from devtools import cli

    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            cli.main([*words, "--help"])
    except SystemExit as stop:
        return out.getvalue() if stop.code == 0 else None
    return None


def test_every_relative_link_points_to_a_file() -> None:
    """Links of README.md and docs/ (reports too). ``docs/reports/X`` counts as there while the
    reports still live in ``docs/X`` (they are moving)."""
    broken = []
    for doc in [README, *sorted((REPO / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            path = (doc.parent / target.split("#")[0]).resolve()
            moved = path.parent.name == "reports" and (path.parent.parent / path.name).exists()
            if not (path.exists() or moved):
                broken.append(f"{doc.relative_to(REPO)} -> {target}")
    assert not broken, broken


def test_api_md_examples_are_the_ones_test_api_md_runs() -> None:
    from tests.docs import test_api_md

    plain = [b.code for b in ALL if b.doc.name == "api.md" and b.kind == "run"]
    run_there = set(test_api_md.blocks("bash", "curl"))
    assert [code for code in plain if code not in run_there] == ["API=http://127.0.0.1:3000/\n"]


def test_the_health_example_is_the_services_answer() -> None:
    """docs/api.md's ``GET health`` answer has exactly the fields the service sends (the handler,
    as ``imgrec invoke events/api-rest-health.json`` runs it)."""
    from devtools import cli

    documented = [
        json.loads(b.code) for b in docblocks.blocks(REPO / "docs" / "api.md") if '"status": "ok"' in b.code
    ]
    assert len(documented) == 1
    out = io.StringIO()
    assert cli.invoke(REPO / "events" / "api-rest-health.json", out) == 0
    real = json.loads(json.loads(out.getvalue())["body"])
    assert shape(documented[0]) == shape(real)


def shape(value):
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    return type(value).__name__


# ---------------------------------------------------------------- slow tier: the blocks, for real


def clean_environment(**extra: str) -> dict[str, str]:
    """A reader's shell: none of the variables the test process or make set for itself."""
    drop = {"KERAS_HOME", "PYTHONPATH", "MODEL_DIR", "MAKEFLAGS", "MAKELEVEL", "MFLAGS", "PORT"}
    drop |= {"CAPTURE_RATE", "LOG_FORMAT", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER", "SHARED"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, **extra}


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkout as a reader has it, in a temporary folder; ``../shared`` beside it."""
    # The mirror links .venv and node_modules: make there must not reinstall into the shared ones.
    # (Its build/model is a copy: a stale model or check set is rebuilt in the mirror.)
    for target in (".venv/.installed", "node_modules/.installed"):
        if subprocess.run(["make", "-q", target], cwd=REPO, env=clean_environment()).returncode:
            pytest.fail(f"{target} is out of date in the checkout: run make setup first")
    root = tmp_path_factory.mktemp("docs")
    shared, main = root / "shared", root / "main"
    shared.mkdir()
    for name in ("images", "models"):
        (shared / name).symlink_to(SHARED / name)
    for cls in ("ants", "bees"):
        (shared / "datasets" / "hymenoptera" / "train" / cls).mkdir(parents=True)
        for photo in sorted((SHARED / "datasets" / "hymenoptera" / "train" / cls).iterdir())[:TINY]:
            shutil.copy(photo, shared / "datasets" / "hymenoptera" / "train" / cls / photo.name)
    main.mkdir()
    for entry in REPO.iterdir():
        if entry.name not in ("build", "cdk.out", "test-output", ".git", ".pytest_cache", ".ruff_cache"):
            (main / entry.name).symlink_to(entry)
    (main / "build").mkdir()
    shutil.copytree(REPO / "build" / "model", main / "build" / "model", copy_function=shutil.copy2)
    return main


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, block: Block, cwd: Path) -> None:
        self.port = free_port()
        code = block.code.replace("--port 3000", f"--port {self.port}")
        self.stage = re.search(r"--stage (\w+)", code)
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            ["bash", "-c", code],
            cwd=cwd,
            env=clean_environment(PORT=str(self.port)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        import threading

        threading.Thread(target=self._read, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.port}/" + (f"{self.stage.group(1)}/" if self.stage else "")
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "the server stopped:\n" + "".join(self.lines)
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}health", timeout=5).status_code == 200:
                    return
            time.sleep(0.5)
        self.stop()
        pytest.fail("the server never answered /health:\n" + "".join(self.lines))

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def s3_endpoint(self) -> str | None:
        found = re.search(r"moto S3 on (http://127\.0\.0\.1:\d+)", "".join(self.lines))
        return found.group(1) if found else None

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def run(code: str, cwd: Path, timeout: float = 600, **env: str) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_environment(**env),
    )
    assert done.returncode == 0, f"{code}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def speedy(code: str) -> str:
    """A training block on the tiny dataset: one epoch, no fine-tuning (nothing else changes)."""
    code = code.replace('TRAIN_ARGS="', f'TRAIN_ARGS="{SPEEDY} ')
    return re.sub(r"^(\S*imgrec train .*?)$", rf"\1 {SPEEDY}", code, flags=re.M)


ALREADY_RUN: set[str] = set()


def run_doc(doc: Path, mirror: Path, tmp_path: Path) -> Iterator[tuple[Block, str]]:
    """Run ``doc``'s blocks in order; yield each one that ran with its output."""
    server: Server | None = None
    try:
        for block in [b for b in shell_blocks([doc]) if b.kind not in CHECKED_ONLY]:
            if doc.name == "api.md" and "curl" in block.code:
                continue  # test_api_md.py runs these against the local server
            if block.kind == "serve":
                if server:
                    server.stop()
                server = Server(block, mirror)
                yield block, "".join(server.lines)
                continue
            code = block.code
            if block.kind == "run" and code in ALREADY_RUN:
                continue  # the same command in two docs (make synth CONTEXT=...): run once
            ALREADY_RUN.add(code)
            if block.kind == "client":
                assert server, f"{block.id}: a client block needs a serve block before it"
                code = code.replace("http://127.0.0.1:3000/", server.url)
                if endpoint := server.s3_endpoint():
                    code = re.sub(r"^S3=http://127\.0\.0\.1:\d+", f"S3={endpoint}", code, flags=re.M)
            if block.kind == "train":
                code = speedy(code)
            if block.kind == "suite":
                code = code.replace("make test", f'make test PYTEST_ARGS="{ONE_MODULE}"')
            cwd, env = mirror, {}
            if block.kind == "outside":
                cwd = tmp_path / "photos"
                cwd.mkdir(exist_ok=True)
                shutil.copy(SHARED / "images" / "grace_hopper.jpg", cwd)
                env = {"PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}"}
            yield block, run(code, cwd, **env)
    finally:
        if server:
            server.stop()


SLOW_DOCS = [d for d in guides() if any(b.kind not in CHECKED_ONLY for b in shell_blocks([d]))]


@pytest.mark.slow
@pytest.mark.parametrize("doc", SLOW_DOCS, ids=lambda d: str(d.relative_to(REPO)))
def test_the_docs_blocks_run(doc: Path, mirror: Path, tmp_path: Path) -> None:
    """Each block of the doc, in order; what it printed is what the doc promises."""
    for block, output in run_doc(doc, mirror, tmp_path):
        if block.kind == "client" and doc == README:
            assert_readme_answer(output)
        if "imgrec predict" in block.code:
            assert "military_uniform" in output or "Egyptian_cat" in output, output
        if block.kind == "train":
            assert "model written to" in output or (mirror / "build" / "models").is_dir(), output
    if doc.name == "own-classes.md":
        manifest = json.loads((mirror / "build" / "models" / "hymenoptera" / "manifest.json").read_text())
        assert manifest["name"] == "hymenoptera"
    if doc.name == "production-loop.md":
        assert (mirror / "build" / "exports" / "local" / "ants").is_dir()
        manifest = json.loads((mirror / "build" / "models" / "next" / "manifest.json").read_text())
        assert (manifest["name"], manifest["version"]) == ("hymenoptera", "1.1.0")


def assert_readme_answer(output: str) -> None:
    """The README's example answer is the service's, but for the time in ``prediction_id``."""
    (documented,) = [json.loads(b.code) for b in docblocks.blocks(README) if b.language == "json"]
    answer = json.loads(output)

    def timeless(body: dict) -> dict:
        model, version, _time, digest = body["prediction_id"].split(":")
        return {**body, "prediction_id": (model, version, digest)}

    assert timeless(answer) == timeless(documented)


def test_the_settings_reference_names_every_context_key_and_variable() -> None:
    """docs/settings.md: every key of ``cdk.json`` / ``infra/settings.py`` and every environment
    variable ``handler/config.py`` reads."""
    reference = (REPO / "docs" / "settings.md").read_text()
    from handler.config import Variables

    variables = set(Variables.model_fields)
    assert len(variables) > 20
    missing = [name for name in [*context_defaults(), *sorted(variables)] if f"`{name}`" not in reference]
    assert not missing, f"docs/settings.md lacks {missing}"
