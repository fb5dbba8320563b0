"""The GitHub OIDC deploy stack: whom the role trusts, and what it may do."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Template

from infra.github_deploy import GithubDeployStack
from infra.settings import Settings
from tests.support import app_with, only

# Fast tier: the deploy stack is one role and a provider, in-process (about 0.2 s a template).

REPO_NAME = "example-org/image-recognition"


def github_template(**context: str) -> Template:
    app = app_with({"githubRepo": REPO_NAME, **context})
    return Template.from_stack(GithubDeployStack(app, "Github", settings=Settings.from_context(app.node)))


def test_the_role_trusts_one_repository_its_branch_and_its_environments() -> None:
    template = github_template()
    provider = only(template, "AWS::IAM::OIDCProvider")["Properties"]
    assert provider["Url"] == "https://token.actions.githubusercontent.com"
    assert provider["ClientIdList"] == ["sts.amazonaws.com"]
    (statement,) = only(template, "AWS::IAM::Role")["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    condition = statement["Condition"]
    assert list(condition) == ["StringEquals"], "exact subjects, no wildcard"
    assert condition["StringEquals"]["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
    assert condition["StringEquals"]["token.actions.githubusercontent.com:sub"] == [
        f"repo:{REPO_NAME}:ref:refs/heads/main",
        f"repo:{REPO_NAME}:environment:staging",
        f"repo:{REPO_NAME}:environment:production",
    ]


def test_the_role_only_assumes_cdk_bootstrap_roles_and_reads_outputs() -> None:
    template = github_template(githubBranch="release")
    policy = only(template, "AWS::IAM::Policy")["Properties"]["PolicyDocument"]["Statement"]
    assert {s["Action"] for s in policy} == {"sts:AssumeRole", "cloudformation:DescribeStacks"}
    assert "role/cdk-hnb659fds-*" in json.dumps(policy)
    trust = json.dumps(only(template, "AWS::IAM::Role")["Properties"]["AssumeRolePolicyDocument"])
    assert f"repo:{REPO_NAME}:ref:refs/heads/release" in trust


def test_an_existing_provider_is_reused() -> None:
    arn = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
    template = github_template(githubOidcProviderArn=arn)
    assert not template.find_resources("AWS::IAM::OIDCProvider")
    assert arn in json.dumps(only(template, "AWS::IAM::Role")["Properties"]["AssumeRolePolicyDocument"])


def test_githubrepo_must_be_owner_slash_name() -> None:
    with pytest.raises(ValueError, match="owner/name"):
        github_template(githubRepo="image-recognition")
