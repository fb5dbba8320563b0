"""cdk-nag v3 AwsSolutions, cfn-lint and the CDK CLI on the synthesized app."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from infra import nag
from infra.app import build
from infra.settings import Settings
from tests.support import REPO, VARIANT, app_with

pytestmark = [pytest.mark.aws_shape, pytest.mark.slow]

VARIANTS = {
    "defaults": {},
    "everything-on": VARIANT,
    "backfill-archive": {"backfillPrefix": "archive/"},
    "http-staging": {
        "apiType": "http",
        "enableWaf": "false",
        "stage": "staging",
        "deployment": "linear",
        "githubRepo": "example-org/image-recognition",
    },
    "rest-prod": {"stage": "prod", "deployment": "all-at-once", "preTrafficTop1": ""},
}


@pytest.fixture(scope="module", params=VARIANTS.values(), ids=VARIANTS.keys())
def synthesized(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthesize with the nag plugin exactly as ``cdk synth`` does (raises on any finding)."""
    name = next(key for key, overrides in VARIANTS.items() if overrides is request.param)
    outdir = tmp_path_factory.mktemp(name)
    app = app_with(request.param, outdir=str(outdir))
    build(app)
    app.synth()
    return outdir


def test_cdk_nag_passes_with_every_finding_acknowledged(synthesized: Path) -> None:
    report = (synthesized / "validation-report.json").read_text()
    assert '"pluginName": "AwsSolutions"' in report
    assert '"conclusion": "success"' in report


def test_every_acknowledgment_is_used_with_its_reason(synthesized: Path) -> None:
    """No stale acknowledgment: each accepted rule suppresses a real finding in the defaults' synth,
    and the report carries the reason written for it."""
    report = json.loads((synthesized / "validation-report.json").read_text())
    (plugin,) = [p for p in report["pluginReports"] if p["pluginName"] == nag.PLUGIN]
    suppressed = {(v["ruleName"], v["reason"]) for v in plugin["suppressedViolations"]}
    overrides = next(o for name, o in VARIANTS.items() if synthesized.name.startswith(name))
    settings = Settings.from_context(app_with(overrides).node)
    waf_enabled = settings.enable_waf
    accepted = nag.accepted_for(settings) + (nag.GITHUB_DEPLOY if settings.github_repo else ())
    assert len({a.rule for a in accepted}) == len(accepted)
    unused = [a.rule for a in accepted if (a.rule, a.reason) not in suppressed]
    assert unused == [], "acknowledgments that suppress nothing: remove them"
    waf_off_on_rest = settings.api_type == "rest" and not waf_enabled
    assert ("AwsSolutions-APIG3" in {rule for rule, _ in suppressed}) is waf_off_on_rest


def test_an_unacknowledged_finding_fails_synth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin really runs: drop one acknowledgment and synth must fail."""
    monkeypatch.setattr(nag, "REST_API", tuple(a for a in nag.REST_API if a.rule != "AwsSolutions-APIG4"))
    app = app_with(outdir=str(tmp_path))
    build(app)
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    assert "AwsSolutions-APIG4" in (tmp_path / "validation-report.json").read_text()


def test_cfn_lint_finds_no_errors(synthesized: Path) -> None:
    templates = sorted(synthesized.glob("*.template.json"))
    assert templates
    done = subprocess.run(
        [str(Path(os.sys.executable).parent / "cfn-lint"), "-i", "W3005", "--", *map(str, templates)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_cdk_cli_synthesizes_offline(tmp_path: Path) -> None:
    """What ``make synth`` runs: the pinned CLI, ``python3 infra/app.py`` from cdk.json, no network."""
    cli = REPO / "node_modules" / ".bin" / "cdk"
    assert cli.exists(), "run `make setup` (npm ci installs the pinned CDK CLI)"
    env = {
        **os.environ,
        "PATH": f"{Path(os.sys.executable).parent}:{os.environ['PATH']}",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    done = subprocess.run(
        [str(cli), "synth", "--no-notices", "--quiet", "--output", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "ImageRecognition.template.json").is_file()
    assert "WARNING" not in done.stdout + done.stderr
