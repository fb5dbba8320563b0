"""The Dockerfile's base images, pinned by digest: ``make base-digests`` resolves each tag the stack
can build from (``docker buildx imagetools inspect``) and records ``tag@sha256:…`` in
``layers/base-images.json``; the CDK stack passes the recorded references as ``EXPORT_BASE`` and
``LAMBDA_BASE``. A tag not recorded builds from the tag (and says so at synth).

    python -m layers.base_images            # refresh layers/base-images.json (needs Docker)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Literal, get_args

# The Python versions the runtime layer and the image are built for (the stack's pythonRuntime).
PythonRuntime = Literal["3.12", "3.13"]
PYTHON_RUNTIMES = get_args(PythonRuntime)
RECORD = Path(__file__).resolve().with_name("base-images.json")


def tags(python_version: str) -> dict[str, str]:
    """The Dockerfile's build arguments and their default tags for ``python_version``."""
    return {
        "EXPORT_BASE": f"python:{python_version}-slim",
        "LAMBDA_BASE": f"public.ecr.aws/lambda/python:{python_version}",
    }


def pinned(python_version: str, record: Path = RECORD) -> dict[str, str]:
    """Build arguments for the tags whose digest is recorded (``tag@sha256:…``)."""
    known = json.loads(record.read_text()) if record.is_file() else {}
    return {arg: f"{tag}@{known[tag]}" for arg, tag in tags(python_version).items() if tag in known}


def digest(tag: str) -> str:
    """The manifest-list digest of ``tag`` (what ``FROM tag@digest`` pins, for every platform)."""
    out = subprocess.run(
        ["docker", "buildx", "imagetools", "inspect", tag, "--format", "{{json .Manifest}}"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return json.loads(out)["digest"]


def main() -> int:
    every = sorted({tag for version in PYTHON_RUNTIMES for tag in tags(version).values()})
    try:
        record = {tag: digest(tag) for tag in every}
    except (OSError, subprocess.CalledProcessError) as error:
        print(
            f"cannot resolve digests ({error}); needs Docker with buildx and registry access", file=sys.stderr
        )
        return 1
    RECORD.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    for tag, value in record.items():
        print(f"{tag}@{value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
