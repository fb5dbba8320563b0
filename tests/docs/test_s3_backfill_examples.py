"""The bulk examples of docs/s3.md: the ``aws s3control create-job`` call is valid for the S3 Control API
(botocore's own model) and uses the locations the stack's role may use; the execution input is the
state machine's."""

from __future__ import annotations

import json
import re

import botocore.session
import pytest
from botocore.exceptions import ParamValidationError
from botocore.validate import validate_parameters

from tests.support import REPO

README = (REPO / "docs" / "s3.md").read_text()


def create_job_arguments() -> dict[str, dict]:
    shell_blocks = re.findall(r"```bash(?: aws)?\n(.*?)```", README, re.S)
    (block,) = [b for b in shell_blocks if "s3control create-job" in b]
    shell = block.replace('"\'"$BULK_WORKER_ARN"\'"', '"arn:aws:lambda:us-east-1:123456789012:function:bulk"')
    shell = shell.replace("'\"$BUCKET\"'", "my-uploads-bucket")
    return {
        name: json.loads(value)
        for name, value in re.findall(r"--(operation|manifest-generator|report) '(.*?)'", shell)
    }


def create_job_shape():
    return (
        botocore.session.get_session().get_service_model("s3control").operation_model("CreateJob").input_shape
    )


def test_the_create_job_example_is_a_valid_request() -> None:
    arguments = create_job_arguments()
    assert set(arguments) == {"operation", "manifest-generator", "report"}
    request = {
        "AccountId": "123456789012",
        "ConfirmationRequired": False,
        "Priority": 10,
        "RoleArn": "arn:aws:iam::123456789012:role/batch",
        "ClientRequestToken": "readme",  # the CLI generates one
        "Operation": arguments["operation"],
        "ManifestGenerator": arguments["manifest-generator"],
        "Report": arguments["report"],
    }
    validate_parameters(request, create_job_shape())
    with pytest.raises(ParamValidationError):  # the check is real: a typo fails it
        validate_parameters(
            {**request, "Report": {**request["Report"], "Enabled": "yes"}}, create_job_shape()
        )


def test_the_job_uses_the_bulk_worker_and_the_roles_locations() -> None:
    arguments = create_job_arguments()
    invoke = arguments["operation"]["LambdaInvoke"]
    assert invoke["InvocationSchemaVersion"] == "2.0" and invoke["FunctionArn"].endswith(":function:bulk")
    generator = arguments["manifest-generator"]["S3JobManifestGenerator"]
    assert generator["ManifestOutputLocation"]["ManifestPrefix"].startswith("results/batch-operations/")
    assert arguments["report"]["Prefix"].startswith("results/batch-operations/")
    assert "$BATCH_OPERATIONS_ROLE_ARN" in README and "BatchOperationsRoleArn" in README


def test_the_execution_example_is_the_state_machines_input() -> None:
    (line,) = [line for line in README.splitlines() if "--input '" in line]
    execution_input = json.loads(line.split("--input '")[1].split("'")[0])
    assert set(execution_input) <= {"prefix", "force"} and isinstance(execution_input["prefix"], str)
