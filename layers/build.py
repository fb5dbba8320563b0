"""``make layers``: the zip packaging, built without Docker.

- ``runtime-layer.zip``: ``python/`` with ``layers/runtime/requirements.lock`` (hash-checked)
  installed for the Lambda runtime's Python and architecture (``pip --platform --only-binary``),
  caches and test suites stripped; Lambda puts ``/opt/python`` on ``sys.path``.
- ``model-layer.zip``: ``model/`` (the ``make model`` output), extracted by Lambda to ``/opt/model``.
- ``function/``: the function code (``handler/`` without the dev-only CLI).

Lambda's limit is 250 MB unzipped for the function and all its layers together: checked here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
PLATFORMS = {
    # manylinux_2_27/2_28 wheels need glibc >= 2.27: Lambda's Python 3.12+ runtimes (Amazon Linux 2023).
    "x86_64": ["manylinux2014_x86_64", "manylinux_2_27_x86_64", "manylinux_2_28_x86_64"],
    "arm64": ["manylinux2014_aarch64", "manylinux_2_27_aarch64", "manylinux_2_28_aarch64"],
}
STRIP_DIRS = {"__pycache__", "tests", "test", "testing_data"}
STRIP_SUFFIXES = {".pyc", ".pyi", ".c", ".h", ".cpp", ".pxd", ".pyx"}


def install_runtime(target: Path, python_version: str, architecture: str) -> None:
    platforms = [arg for platform in PLATFORMS[architecture] for arg in ("--platform", platform)]
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--only-binary=:all:", *platforms, "--implementation", "cp", "--python-version", python_version,
            "--target", str(target), "--require-hashes",
            "-r", str(REPO / "layers" / "runtime" / "requirements.lock"),
        ],
        check=True,
    )  # fmt: skip


def strip(root: Path) -> None:
    """Drop what never runs in Lambda: bytecode caches, bundled test suites, headers, stubs."""
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and path.name in STRIP_DIRS:
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and path.suffix in STRIP_SUFFIXES:
            path.unlink()
    for cache in root.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def zip_tree(source: Path, archive: Path) -> None:
    """Zip ``source``'s children with paths relative to it (``python/...``, ``model/...``)."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as bundle:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                bundle.write(path, path.relative_to(source))


def served_files(model_dir: Path) -> list[str]:
    """What the function reads from a model directory: ``manifest.json`` and every file it pins
    (sha256), except the ``.keras`` model the litert backend does not load."""
    pinned = json.loads((model_dir / "manifest.json").read_text()).get("files", {})
    return ["manifest.json", *sorted(name for name in pinned if not name.endswith(".keras"))]


def build(out: Path, model_dir: Path, python_version: str, architecture: str) -> dict:
    if not (model_dir / "manifest.json").is_file():
        raise SystemExit(f"No model in {model_dir}: run `make model` first.")
    if out.exists():
        shutil.rmtree(out)
    runtime_root, model_root, function_root = out / "runtime", out / "model", out / "function"
    install_runtime(runtime_root / "python", python_version, architecture)
    strip(runtime_root)
    # The zip packaging serves the litert backend (TensorFlow alone is over Lambda's 250 MB limit):
    # the manifest and the files it pins, less the .keras file; no reports, nothing unlisted.
    for name in served_files(model_dir):
        (model_root / "model" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(model_dir / name, model_root / "model" / name)
    shutil.copytree(REPO / "handler", function_root / "handler", ignore=shutil.ignore_patterns("__pycache__"))
    zip_tree(runtime_root, out / "runtime-layer.zip")
    zip_tree(model_root, out / "model-layer.zip")
    sizes = {
        "runtime_unzipped": tree_size(runtime_root),
        "model_unzipped": tree_size(model_root),
        "function_unzipped": tree_size(function_root),
        "runtime_zip": (out / "runtime-layer.zip").stat().st_size,
        "model_zip": (out / "model-layer.zip").stat().st_size,
    }
    total = sizes["runtime_unzipped"] + sizes["model_unzipped"] + sizes["function_unzipped"]
    report = {"python": python_version, "architecture": architecture, **sizes, "total_unzipped": total}
    (out / "layers.json").write_text(json.dumps(report, indent=2) + "\n")
    if total > LAMBDA_UNZIPPED_LIMIT:
        raise SystemExit(f"Function + layers unzip to {total / 2**20:.0f} MB: over Lambda's 250 MB limit")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=REPO / "build" / "layers")
    parser.add_argument("--model-dir", type=Path, default=REPO / "build" / "model")
    parser.add_argument("--python-version", default="3.12", help="the Lambda runtime's Python (3.12+)")
    parser.add_argument("--architecture", choices=sorted(PLATFORMS), default="x86_64")
    args = parser.parse_args(argv)
    report = build(args.out, args.model_dir, args.python_version, args.architecture)
    mb = {k: f"{v / 2**20:.1f} MB" for k, v in report.items() if isinstance(v, int)}
    print(f"layers for Python {args.python_version} {args.architecture} in {args.out}: {mb}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
