"""``make layers``: the zip packaging, its sizes, and a rehearsal from the unzipped layers."""

from __future__ import annotations

import json
import platform
import shutil
import zipfile
from pathlib import Path

import pytest
from aws_cdk.assertions import Template

from infra.settings import Settings
from infra.stack import ImageRecognitionStack
from layers import build
from tests.support import MODEL_DIR, REPO, app_with, package_files, run_fixtures

pytestmark = [pytest.mark.aws_shape, pytest.mark.network, pytest.mark.slow]

# The rehearsal imports the layer here, so it is built for this interpreter; deploys use 3.12+.
LOCAL_PYTHON = ".".join(platform.python_version_tuple()[:2])
ARCH = {"x86_64": "x86_64", "aarch64": "arm64"}[platform.machine()]


@pytest.fixture(scope="module")
def layers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("layers")
    build.build(out, MODEL_DIR, LOCAL_PYTHON, ARCH)
    return out


def test_sizes_fit_lambdas_limit(layers: Path) -> None:
    report = json.loads((layers / "layers.json").read_text())
    assert report["total_unzipped"] < build.LAMBDA_UNZIPPED_LIMIT
    assert report["total_unzipped"] == sum(report[f"{k}_unzipped"] for k in ("runtime", "model", "function"))
    assert 30 * 2**20 < report["runtime_zip"] < 120 * 2**20


def test_layer_layouts_match_lambdas_opt(layers: Path) -> None:
    with zipfile.ZipFile(layers / "runtime-layer.zip") as runtime:
        names = runtime.namelist()
    assert all(name.startswith("python/") for name in names)
    assert any(name.startswith("python/ai_edge_litert/") for name in names)
    assert not [n for n in names if "/__pycache__/" in n or n.endswith(".pyc") or "/tests/" in n]
    with zipfile.ZipFile(layers / "model-layer.zip") as model:
        assert sorted(model.namelist()) == [
            "model/labels.json",
            "model/manifest.json",
            "model/mobilenet_v2.tflite",
        ]
    function = {p.name for p in (layers / "function").iterdir()}
    assert function == {"handler"}, "nothing from devtools, tests or infra"
    assert package_files(layers / "function") == package_files(REPO), "the handler package, exactly"


def test_unzipped_layers_classify_grace_hopper(layers: Path, tmp_path: Path) -> None:
    opt, task = tmp_path / "opt", tmp_path / "var" / "task"
    for archive in ("runtime-layer.zip", "model-layer.zip"):
        with zipfile.ZipFile(layers / archive) as bundle:
            bundle.extractall(opt)
    shutil.copytree(layers / "function", task)
    run_fixtures([task, opt / "python"], {"LAMBDA_TASK_ROOT": str(task), "MODEL_DIR": str(opt / "model")})


def test_zip_packaging_with_snapstart_in_the_template(layers: Path) -> None:
    app = app_with({"packaging": "zip", "snapStart": "true", "layersDir": str(layers)})
    template = Template.from_stack(
        ImageRecognitionStack(app, "ImageRecognition", settings=Settings.from_context(app.node))
    )
    functions = [
        f["Properties"]
        for f in template.find_resources("AWS::Lambda::Function").values()
        if str(f["Properties"].get("Handler", "")).startswith("handler.app.")
    ]
    assert sorted(f["Handler"] for f in functions) == [
        "handler.app.api_handler",
        "handler.app.bulk_handler",
        "handler.app.s3_handler",
    ]
    for function in functions:
        assert function["Runtime"] == "python3.12"
        assert "PackageType" not in function
        assert len(function["Layers"]) == 2
        assert function["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    template.resource_count_is("AWS::Lambda::LayerVersion", 2)


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"packaging": "zip", "modelBackend": "keras"}, "litert backend only"),
        ({"snapStart": "true"}, "needs packaging=zip"),
        ({"pythonVersion": "3.11"}, "glibc"),
    ],
)
def test_impossible_combinations_are_refused(context: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_context(app_with(context).node)
