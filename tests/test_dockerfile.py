"""The Dockerfile, proven without Docker: its references, its build context, and a rehearsal.

The rehearsal does what the runtime stage does — ``pip install --target`` the runtime
requirements into a task root, copy the code and the model where the Dockerfile puts them — then
runs the event fixtures in a fresh interpreter that sees only that task root and the stdlib.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import MODEL_DIR, REPO, app_with, package_files, run_fixtures

pytestmark = [pytest.mark.aws_shape]

DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """``[(INSTRUCTION, arguments)]`` with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    parsed = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            parsed.append((keyword.upper(), rest.strip()))
    return parsed


def copies() -> list[tuple[str | None, list[str], str]]:
    """``[(from stage or None, sources, destination)]`` of every COPY."""
    found = []
    for keyword, args in instructions():
        if keyword == "COPY":
            words = shlex.split(args)
            stage = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
            paths = [w for w in words if not w.startswith("--")]
            found.append((stage, paths[:-1], paths[-1]))
    return found


@pytest.fixture(scope="module")
def build_context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Docker build context exactly as ``cdk synth`` stages it (after .dockerignore)."""
    from infra.settings import Settings
    from infra.stack import ImageRecognitionStack

    outdir = tmp_path_factory.mktemp("cdk.out")
    app = app_with(outdir=str(outdir))
    ImageRecognitionStack(app, "ImageRecognition", settings=Settings.from_context(app.node))
    app.synth()
    (asset,) = [p for p in outdir.glob("asset.*") if (p / "Dockerfile").is_file()]
    return asset


def test_every_copy_source_is_in_the_build_context(build_context: Path) -> None:
    for stage, sources, _ in copies():
        if stage is None:
            for source in sources:
                assert (build_context / source).exists(), f"COPY {source}: not in the build context"


def test_copy_from_names_a_stage_or_the_model_context() -> None:
    stages = {args.split()[-1] for keyword, args in instructions() if keyword == "FROM" and " AS " in args}
    assert stages == {"model-export", "model-given", "model", "runtime"}
    # "model-dir" is the named build context the stack passes with -c modelDir (test_stack checks it).
    for stage, _, _ in copies():
        assert stage in (None, "model-dir", *stages)
    (chosen,) = [args for keyword, args in instructions() if keyword == "FROM" and args.endswith(" AS model")]
    assert chosen == "model-${MODEL_ORIGIN} AS model"
    assert "ARG MODEL_ORIGIN=export" in DOCKERFILE.read_text()


def test_run_steps_use_files_the_image_has(build_context: Path) -> None:
    destinations = {destination for stage, _, destination in copies() if stage is None}
    for keyword, args in instructions():
        if keyword != "RUN":
            continue
        for requirement in re.findall(r"-r (\S+)", args):
            if requirement.startswith("/"):
                assert requirement in destinations, f"RUN reads {requirement}, which no COPY provides"
            else:
                assert (build_context / requirement).is_file(), requirement
        for module in re.findall(r"python -m (\S+)", args):
            assert (build_context / (module.replace(".", "/") + ".py")).is_file(), module


def export_stage_copies() -> list[tuple[list[str], str]]:
    """The model-export stage's ``COPY`` instructions (sources, destination)."""
    stage, found = None, []
    for keyword, args in instructions():
        if keyword == "FROM":
            stage = args.split()[-1]
        elif keyword == "COPY" and stage == "model-export":
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            found.append((words[:-1], words[-1]))
    return found


def export_stage(build_context: Path, tmp_path: Path) -> Path:
    """A folder holding exactly what the model-export stage's COPYs put in /build."""
    workdir = tmp_path / "build"
    for sources, destination in export_stage_copies():
        target = workdir / destination
        for source in sources:
            if source.endswith(".lock"):
                continue
            (target if destination.endswith("/") else target.parent).mkdir(parents=True, exist_ok=True)
            shutil.copy(
                build_context / source, target / Path(source).name if destination.endswith("/") else target
            )
    return workdir


def test_the_export_stage_copies_every_module_the_export_imports(build_context: Path, tmp_path: Path) -> None:
    """The model-export stage copies files one by one: run ``layers.model.export``'s imports in an
    interpreter that sees only what those COPYs put in /build (and the installed packages)."""
    workdir = export_stage(build_context, tmp_path)
    probe = (
        "import sys, layers.model.export; "
        "print([m.__file__ for n, m in sys.modules.items() if n.split('.')[0] in ('handler', 'layers')])"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=workdir, env={"PYTHONPATH": str(workdir), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert str(REPO) not in done.stdout, "imports must come from the stage's copies, not the checkout"


@pytest.mark.slow
def test_the_export_stage_command_runs_on_its_copies(build_context: Path, tmp_path: Path) -> None:
    """The stage's RUN itself (the export, its default options) on only what the stage copied: an
    import inside a function (the converter's notice filter, say) of a module the stage never
    copies fails here as it would fail the image build, which cannot run on this machine."""
    import os

    workdir = export_stage(build_context, tmp_path)
    out = tmp_path / "model"
    done = subprocess.run(
        [sys.executable, "-m", "layers.model.export", "--out", str(out), "--version", "1.0.0"],
        cwd=workdir, env={**os.environ, "PYTHONPATH": str(workdir)}, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    fields = json.loads((out / "manifest.json").read_text())
    assert fields["input"]["dtype"] == "uint8" and "cost" not in fields, "the export alone: no cost"


def imported_packages(source: Path) -> set[str]:
    """The top-level names ``source`` imports, at module level or inside a function."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_the_export_stage_installs_every_package_its_modules_import() -> None:
    """The stage installs ``layers/model/requirements.lock`` only, while the probe above runs in
    .venv, which has everything: each third-party package a copied module imports must be pinned in
    that lock (``handler/recognition/manifest.py`` validates with pydantic, say)."""
    from importlib.metadata import packages_distributions

    def canonical(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    lock = (REPO / "layers" / "model" / "requirements.lock").read_text().splitlines()
    pinned = {canonical(line.split("==")[0]) for line in lock if "==" in line and not line.startswith(" ")}
    providers = packages_distributions()
    first_party = {"handler", "layers"}
    missing = []
    for sources, _ in export_stage_copies():
        for source in (s for s in sources if s.endswith(".py")):
            for name in sorted(imported_packages(REPO / source) - first_party - set(sys.stdlib_module_names)):
                if not {canonical(d) for d in providers.get(name, [name])} & pinned:
                    missing.append(f"{source} imports {name}")
    assert not missing, f"not in layers/model/requirements.lock: {missing}"


def test_cmd_names_a_real_entry_point() -> None:
    import importlib

    from handler.contract import API_HANDLER

    (cmd,) = [json.loads(args) for keyword, args in instructions() if keyword == "CMD"]
    assert cmd == [API_HANDLER]
    module, name = cmd[0].rsplit(".", 1)
    assert callable(getattr(importlib.import_module(module), name))


def test_model_lands_at_opt_model_and_the_env_points_there() -> None:
    assert ("model", ["/opt/model"], "/opt/model") in copies()
    env = " ".join(args for keyword, args in instructions() if keyword == "ENV")
    assert "MODEL_DIR=/opt/model" in env


def test_build_context_is_small_and_clean(build_context: Path) -> None:
    files = [p for p in build_context.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 500_000
    names = {p.relative_to(build_context).parts[0] for p in files}
    assert names <= {"Dockerfile", ".dockerignore", "handler", "layers"}, names
    assert not [p for p in files if p.suffix in {".h5", ".tflite", ".keras", ".pyc"}]
    # The image gets the handler package, exactly: no dev tools, with no exclusion list needed.
    assert package_files(build_context) == package_files(REPO)


@pytest.mark.network
@pytest.mark.slow
def test_image_rehearsal_classifies_grace_hopper(build_context: Path, tmp_path: Path) -> None:
    task_root, opt_model = tmp_path / "var" / "task", tmp_path / "opt" / "model"
    pip = subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--target", str(task_root), "--require-hashes",
            "-r", str(build_context / "layers/runtime/requirements.lock"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr
    # COPY handler/ ${LAMBDA_TASK_ROOT}/handler/
    shutil.copytree(build_context / "handler", task_root / "handler")
    shutil.copytree(MODEL_DIR, opt_model)  # COPY --from=model /opt/model /opt/model
    run_fixtures(
        [task_root],
        {
            "LAMBDA_TASK_ROOT": str(task_root),
            "MODEL_DIR": str(opt_model),
            "MODEL_BACKEND": "litert",
            "KERAS_HOME": str(tmp_path / "keras"),
        },
    )


def test_base_images_come_from_build_arguments_with_tag_defaults() -> None:
    from layers import base_images

    froms = [args for keyword, args in instructions() if keyword == "FROM"]
    assert "--platform=$BUILDPLATFORM ${EXPORT_BASE} AS model-export" in froms
    assert "${LAMBDA_BASE} AS runtime" in froms
    declared = dict(
        args.split("=", 1) for keyword, args in instructions() if keyword == "ARG" and "=" in args
    )
    assert declared["EXPORT_BASE"] == "python:${PYTHON_VERSION}-slim"
    assert declared["LAMBDA_BASE"] == "public.ecr.aws/lambda/python:${PYTHON_VERSION}"
    assert base_images.tags("3.12") == {
        "EXPORT_BASE": "python:3.12-slim",
        "LAMBDA_BASE": "public.ecr.aws/lambda/python:3.12",
    }


def test_recorded_digests_pin_the_base_images(tmp_path) -> None:
    from layers import base_images

    digest = "sha256:" + "a" * 64
    record = tmp_path / "base-images.json"
    assert base_images.pinned("3.12", record) == {}, "nothing recorded: the tags"
    record.write_text(json.dumps({"public.ecr.aws/lambda/python:3.12": digest}))
    assert base_images.pinned("3.12", record) == {
        "LAMBDA_BASE": f"public.ecr.aws/lambda/python:3.12@{digest}"
    }


def test_every_pip_install_is_hash_checked_from_a_lock_file() -> None:
    installs = [args for keyword, args in instructions() if keyword == "RUN" and "pip install" in args]
    assert len(installs) == 2
    for run in installs:
        for command in run.split("pip install")[1:]:
            assert "--require-hashes" in command and ".lock" in command, command
