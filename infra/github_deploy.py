"""Deploys from GitHub Actions without stored keys: the account's GitHub OIDC provider and a deploy
role that only one repository's main branch and its ``staging``/``production`` environments can
assume (``-c githubRepo=owner/name``; deployed once per account, beside the app's stacks).

The role does what ``cdk deploy`` needs and nothing else: assume the CDK bootstrap roles (which do
the deploying, with the permissions the bootstrap gave them) and read the app's stack outputs
(the smoke suite needs ``ApiUrl``).
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.settings import Settings

GITHUB_ISSUER = "token.actions.githubusercontent.com"
ENVIRONMENTS = ("staging", "production")  # .github/workflows/deploy.yml's GitHub environments
BOOTSTRAP_QUALIFIER = "hnb659fds"  # CDK's default bootstrap qualifier


def trusted_subjects(repo: str, branch: str) -> list[str]:
    """The OIDC ``sub`` claims allowed: pushes to the branch, and jobs in the deploy environments."""
    return [f"repo:{repo}:ref:refs/heads/{branch}", *(f"repo:{repo}:environment:{e}" for e in ENVIRONMENTS)]


class GithubDeployStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings, **kwargs) -> None:
        super().__init__(
            scope,
            construct_id,
            description=f"GitHub Actions OIDC deploy role for {settings.github_repo}",
            **kwargs,
        )
        provider_arn = (
            settings.github_oidc_provider_arn
            or iam.OidcProviderNative(
                self, "GithubOidc", url=f"https://{GITHUB_ISSUER}", client_ids=["sts.amazonaws.com"]
            ).oidc_provider_arn
        )
        self.role = iam.Role(
            self,
            "DeployRole",
            description=f"cdk deploy from {settings.github_repo} ({settings.github_branch}, environments)",
            max_session_duration=Duration.hours(1),
            assumed_by=iam.WebIdentityPrincipal(
                provider_arn,
                conditions={
                    "StringEquals": {
                        f"{GITHUB_ISSUER}:aud": "sts.amazonaws.com",
                        f"{GITHUB_ISSUER}:sub": trusted_subjects(
                            settings.github_repo, settings.github_branch
                        ),
                    }
                },
            ),
        )
        # The two wildcards the role needs (infra.nag accepts exactly these).
        self.bootstrap_roles = f"arn:{self.partition}:iam::{self.account}:role/cdk-{BOOTSTRAP_QUALIFIER}-*"
        self.app_stacks = (
            f"arn:{self.partition}:cloudformation:{self.region}:{self.account}:stack/ImageRecognition*/*"
        )
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["sts:AssumeRole"], resources=[self.bootstrap_roles])
        )
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["cloudformation:DescribeStacks"], resources=[self.app_stacks])
        )
        CfnOutput(
            self, "DeployRoleArn", value=self.role.role_arn, description="the AWS_DEPLOY_ROLE_ARN variable"
        )
