"""cdk-nag v3 AwsSolutions, cfn-lint and the CDK CLI on the synthesized app.

Fast tier: one nag synth of the default settings, in-process, fails on an unacknowledged finding and
on a stale acknowledgment (one that suppresses nothing), and a test shows the check catches one.
Slow tier (``aws_shape``, ``slow``): the other variants, cfn-lint and the CLI (subprocesses).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
import pytest

from infra import nag
from infra.app import build
from tests.support import REPO, VARIANT, app_with

VARIANTS = {
    "everything-on": VARIANT,
    "switched-prefixes": {
        "uploadsPrefix": "incoming/",
        "resultsPrefix": "answers/",
        "backfillPrefix": "archive/",
        "captureRate": "0.05",  # the workers write captures (into the uploads bucket)
        "feedbackAuth": "none",  # POST /feedback without an authorizer: its own acknowledgment
    },
    "http-staging": {
        "apiType": "http",
        "enableWaf": "false",
        "stage": "staging",
        "deployment": "linear",
        "githubRepo": "example-org/image-recognition",
        "captureUncertainRate": "0.5",
        "captureBucket": "team-captures",  # an existing bucket, imported by name
    },
    "rest-prod": {"stage": "prod", "deployment": "all-at-once"},
}


@dataclass(frozen=True)
class Synthesized:
    app: cdk.App
    outdir: Path

    @property
    def report(self) -> dict:
        return json.loads((self.outdir / "validation-report.json").read_text())

    @property
    def suppressed_rules(self) -> set[str]:
        (plugin,) = [p for p in self.report["pluginReports"] if p["pluginName"] == nag.PLUGIN]
        return {v["ruleName"] for v in plugin["suppressedViolations"]}


def synthesize(outdir: Path, overrides: dict[str, str] | None = None) -> Synthesized:
    """Synthesize with the nag plugin exactly as ``cdk synth`` does (raises on any finding)."""
    app = app_with(overrides, outdir=str(outdir))
    build(app)
    app.synth()
    return Synthesized(app, outdir)


@pytest.fixture(scope="module")
def defaults(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("defaults"))


@pytest.fixture(scope="module", params=["defaults", *VARIANTS])
def synthesized(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The defaults' synth (the fast tier's), then each variant's."""
    if request.param == "defaults":
        return request.getfixturevalue("defaults")
    return synthesize(tmp_path_factory.mktemp(request.param), VARIANTS[request.param])


def assert_clean(synthesized: Synthesized) -> None:
    """Nag passed, and every acknowledgment (each rule on each of its scopes) suppressed a real
    finding with the reason written for it: none is stale."""
    report = synthesized.report
    (plugin,) = [p for p in report["pluginReports"] if p["pluginName"] == nag.PLUGIN]
    assert plugin["conclusion"] == "success"
    assert nag.stale(synthesized.app, report) == [], "acknowledgments that suppress nothing: remove them"
    for stack in synthesized.app.node.children:
        if isinstance(stack, cdk.Stack):
            accepted = [(a.rule, a.scopes) for a in nag.accepted_for(stack)]
            assert len(set(accepted)) == len(accepted), f"{stack.node.path}: an acknowledgment twice"


@pytest.mark.slow  # a synth with cdk-nag of its own (3.5 s): the fast tier's budget
def test_defaults_pass_nag_with_no_stale_acknowledgment(defaults: Synthesized) -> None:
    assert_clean(defaults)
    assert "AwsSolutions-APIG3" not in defaults.suppressed_rules, "WAF is on by default"


# Two stale acknowledgments: a finding that occurs nowhere, and a real finding accepted on a
# construct where it does not occur.
NOTHING = nag.Accepted("AwsSolutions-IAM5[Resource::arn:aws:s3:::gone/*]", "gone", ("Functions/Api",))
ELSEWHERE = nag.Accepted(f"AwsSolutions-IAM4[{nag.LAMBDA_BASIC}]", "not here", ("Monitoring",))


@pytest.mark.slow  # a synth with cdk-nag of its own (3.5 s): the fast tier's budget
def test_the_check_names_a_stale_acknowledgment(defaults: Synthesized) -> None:
    stack = defaults.app.node.find_child("ImageRecognition")
    accepted = nag.accepted_for(stack)
    assert nag.unused(defaults.report, stack, accepted) == []
    assert nag.unused(defaults.report, stack, (*accepted, NOTHING, ELSEWHERE)) == [
        f"{NOTHING.rule} on Functions/Api",
        f"{ELSEWHERE.rule} on Monitoring",
    ]
    # Every (rule, scope) accepted is exactly what the report shows suppressed, nothing more.
    report = defaults.report
    (plugin,) = [p for p in report["pluginReports"] if p["pluginName"] == nag.PLUGIN]
    suppressed = {
        (v["ruleName"], c["constructPath"])
        for v in plugin["suppressedViolations"]
        for c in v["violatingConstructs"]
    }
    root = stack.node.path
    assert all(
        any(rule == a.rule and path.startswith(f"{root}/{scope}") for a in accepted for scope in a.scopes)
        for rule, path in suppressed
    )


@pytest.mark.aws_shape
@pytest.mark.slow
def test_a_stale_acknowledgment_passes_synth_but_fails_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cdk-nag ignores an acknowledgment that suppresses nothing: only the stale check sees it."""
    accepted = nag.rest_api_accepted
    monkeypatch.setattr(nag, "rest_api_accepted", lambda stack: (*accepted(stack), NOTHING, ELSEWHERE))
    synthesized = synthesize(tmp_path)
    assert nag.stale(synthesized.app, synthesized.report) == [
        f"ImageRecognition: {NOTHING.rule} on Functions/Api",
        f"ImageRecognition: {ELSEWHERE.rule} on Monitoring",
    ]
    with pytest.raises(AssertionError, match="acknowledgments that suppress nothing"):
        assert_clean(synthesized)


@pytest.mark.slow  # a synth with cdk-nag of its own (3.5 s): the fast tier's budget
def test_only_the_public_routes_are_accepted_without_authorization(defaults: Synthesized) -> None:
    """APIG4 ("no authorization") is acknowledged on the public methods only: POST /feedback is
    authenticated with IAM, so no APIG4 finding exists there, and none is acknowledged."""
    stack = defaults.app.node.find_child("ImageRecognition")
    apig4 = [scope for a in nag.accepted_for(stack) if a.rule == "AwsSolutions-APIG4" for scope in a.scopes]
    assert len(apig4) == 7 and all(scope.startswith("Api/RestApi/Default/") for scope in apig4)
    assert "Api/RestApi/Default/feedback/POST" not in apig4 and "Api/RestApi/Default" not in apig4
    (plugin,) = [p for p in defaults.report["pluginReports"] if p["pluginName"] == nag.PLUGIN]
    unauthorized = [
        c["constructPath"]
        for v in plugin["suppressedViolations"]
        if v["ruleName"] == "AwsSolutions-APIG4"
        for c in v["violatingConstructs"]
    ]
    assert len(unauthorized) >= 7 and not [p for p in unauthorized if "/feedback/" in p]
    cog4 = {a.reason for a in nag.accepted_for(stack) if a.rule == "AwsSolutions-COG4"}
    assert any("authenticated with IAM" in reason for reason in cog4)


@pytest.mark.slow  # a synth with cdk-nag of its own (3.5 s): the fast tier's budget
def test_an_acknowledgment_of_no_construct_is_refused(defaults: Synthesized) -> None:
    stack = defaults.app.node.find_child("ImageRecognition")
    with pytest.raises(ValueError, match="no construct under Nowhere; remove or fix it"):
        nag.acknowledge_findings(stack, (nag.Accepted("AwsSolutions-APIG4", "none", ("Nowhere",)),))


@pytest.mark.slow  # a synth with cdk-nag of its own (3.5 s): the fast tier's budget
def test_resource_findings_are_named_after_the_constructs_and_the_settings(defaults: Synthesized) -> None:
    """The bucket's finding carries its logical id and the configured prefixes, found through the
    stack (infra/nag.py writes neither a hashed id nor a prefix)."""
    stack = defaults.app.node.find_child("ImageRecognition")
    settings = stack.settings
    bucket_id = stack.resolve(stack.uploads.bucket.node.default_child.logical_id)
    rules = {a.rule for a in nag.accepted_for(stack)}
    for prefix in (settings.uploads_prefix, settings.results_prefix):
        assert f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{prefix}*]" in rules
    source = (REPO / "infra" / "nag.py").read_text()
    assert bucket_id not in source
    assert not [p for p in (settings.uploads_prefix, settings.results_prefix) if f'"{p}' in source]


@pytest.mark.aws_shape
@pytest.mark.slow
def test_every_variant_passes_nag_with_no_stale_acknowledgment(synthesized: Synthesized) -> None:
    assert_clean(synthesized)
    settings = synthesized.app.node.find_child("ImageRecognition").settings
    waf_off_on_rest = settings.api_type == "rest" and not settings.enable_waf
    assert ("AwsSolutions-APIG3" in synthesized.suppressed_rules) is waf_off_on_rest


@pytest.mark.aws_shape
@pytest.mark.slow
def test_an_unacknowledged_finding_fails_synth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin really runs: drop one acknowledgment and synth must fail."""
    accepted = nag.rest_api_accepted
    monkeypatch.setattr(
        nag,
        "rest_api_accepted",
        lambda stack: tuple(a for a in accepted(stack) if a.rule != "AwsSolutions-APIG4"),
    )
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        synthesize(tmp_path)
    assert "AwsSolutions-APIG4" in (tmp_path / "validation-report.json").read_text()


@pytest.mark.aws_shape
@pytest.mark.slow
def test_cfn_lint_finds_no_errors(synthesized: Synthesized) -> None:
    templates = sorted(synthesized.outdir.glob("*.template.json"))
    assert templates
    done = subprocess.run(
        [str(Path(os.sys.executable).parent / "cfn-lint"), "-i", "W3005", "--", *map(str, templates)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.aws_shape
@pytest.mark.slow
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
