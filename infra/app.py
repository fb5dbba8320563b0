"""CDK entry point (``cdk.json``: ``python3 infra/app.py``): reads settings, wires the stack."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script by the CDK CLI

import infra  # noqa: F401,I001  (first: it quiets jsii's banner before aws_cdk starts Node)
import aws_cdk as cdk

from infra import nag
from infra.github_deploy import GithubDeployStack
from infra.settings import Settings
from infra.stack import ImageRecognitionStack


def build(app: cdk.App) -> ImageRecognitionStack:
    """The stack with the app's context settings and the nag checks; shared with the tests."""
    settings = Settings.from_context(app.node)
    stack = ImageRecognitionStack(app, "ImageRecognition", settings=settings, stack_name=settings.stack_name)
    nag.add_checks(app)
    nag.acknowledge(stack)  # after the stack is built: the findings are named after its constructs
    if settings.github_repo:  # once per account: the OIDC role GitHub Actions deploys with
        github = GithubDeployStack(app, "ImageRecognitionGithubDeploy", settings=settings)
        nag.acknowledge(github)
    return stack


if __name__ == "__main__":
    application = cdk.App()
    build(application)
    application.synth()
