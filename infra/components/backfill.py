"""Backfill: classify what is already in the bucket, on AWS's own bulk engines.

- **Step Functions Distributed Map**: start an execution with ``{"prefix": "archive/2019/"}``
  (``"force": true`` recomputes answered objects). ``S3ObjectsItemReader`` lists the prefix,
  ``ItemBatcher`` hands the bulk worker ``backfillBatchSize`` keys at a time, at most
  ``backfillMaxConcurrency`` at once; a batch that fails transiently is retried with backoff; a run
  fails once more than ``backfillToleratedFailurePercent`` of its batches failed for good, and the
  ``ResultWriter`` manifest under ``<results>backfill-runs/`` lists every failed batch (redrive the
  run, or start it again: answered objects are skipped).
- **S3 Batch Operations**: CloudFormation has no resource for jobs, so the stack provides what a
  job needs, the bulk worker and a role S3 Batch Operations assumes to invoke it; README shows the
  ``aws s3control create-job`` call. Manifests and completion reports live under
  ``<results>batch-operations/``.

Every permission is scoped to ``backfillPrefix`` (what may be read), the results prefix (what is
written) and these two functions.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.components.common import log_group
from infra.settings import Settings

# What the worker raises when S3 throttles or fails (handler.s3.TransientError), and what
# Lambda answers when it cannot run the invocation: worth retrying with backoff.
TRANSIENT_ERRORS = [
    "TransientError",
    "Lambda.TooManyRequestsException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.ClientExecutionTimeoutException",
]


def list_statement(bucket: s3.IBucket, prefixes: list[str]) -> iam.PolicyStatement:
    """``s3:ListBucket`` limited to keys under ``prefixes`` (unconditioned when one is empty)."""
    conditions = None if "" in prefixes else {"StringLike": {"s3:prefix": [f"{p}*" for p in prefixes]}}
    return iam.PolicyStatement(
        actions=["s3:ListBucket"], resources=[bucket.bucket_arn], conditions=conditions
    )


class ScopedObjectsReader(sfn.S3ObjectsItemReader):
    """The Map lists only under the backfill prefix (CDK's own grant is the whole bucket)."""

    def __init__(self, *, bucket: s3.IBucket, readable_prefix: str, prefix: str) -> None:
        super().__init__(bucket=bucket, prefix=prefix)
        self._readable_prefix = readable_prefix

    def provide_policy_statements(self) -> list[iam.PolicyStatement]:
        return [list_statement(self.bucket, [self._readable_prefix])]


class ScopedResultWriter(sfn.ResultWriterV2):
    """The run manifest is written under its prefix only (CDK's own grant is the whole bucket)."""

    def provide_policy_statements(self) -> list[iam.PolicyStatement]:
        return [
            iam.PolicyStatement(
                actions=[
                    "s3:PutObject",
                    "s3:GetObject",
                    "s3:ListMultipartUploadParts",
                    "s3:AbortMultipartUpload",
                ],
                resources=[self.bucket.arn_for_objects(f"{self.prefix}*")],
            )
        ]


def string_match_pattern(prefix: str) -> str:
    """A ``StringMatches`` pattern for "starts with ``prefix``" (``*`` and ``\\`` escaped)."""
    return prefix.replace("\\", "\\\\").replace("*", "\\*") + "*"


class Backfill(Construct):
    """The state machine, the S3 Batch Operations role, and the bulk worker's S3 permissions."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        bucket: s3.IBucket,
        worker: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        self.settings = settings
        self.bucket = bucket
        self.worker = worker
        self.runs_prefix = f"{settings.results_prefix}backfill-runs/"
        self.batch_operations_prefix = f"{settings.results_prefix}batch-operations/"
        self._grant_worker()
        self.state_machine = self._state_machine()
        self.batch_operations_role = self._batch_operations_role()

    def _grant_worker(self) -> None:
        """Read the backfill prefix; read and write records (reading them is how reruns skip)."""
        settings = self.settings
        self.worker.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=[self.bucket.arn_for_objects(f"{settings.backfill_prefix}*")],
            )
        )
        self.worker.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:PutObject"],
                resources=[self.bucket.arn_for_objects(f"{settings.results_prefix}*")],
            )
        )
        # Without ListBucket a deleted key answers 403, not 404: its record would say "denied".
        self.worker.add_to_role_policy(
            list_statement(self.bucket, [settings.backfill_prefix, settings.results_prefix])
        )

    def _classify_batches(self) -> sfn.DistributedMap:
        settings = self.settings
        classify = tasks.LambdaInvoke(
            self,
            "ClassifyBatch",
            lambda_function=self.worker,
            payload_response_only=True,  # the worker's summary is the item's result
            retry_on_service_exceptions=False,  # our own Retry below covers Lambda's errors
        )
        classify.add_retry(
            errors=TRANSIENT_ERRORS,
            interval=Duration.seconds(2),
            max_attempts=6,
            backoff_rate=2,
            max_delay=Duration.seconds(60),
            jitter_strategy=sfn.JitterType.FULL,
        )
        # A timeout or crash may be the moment's (a slow S3) or the batch's: twice more, then the
        # batch counts against the tolerated failures and is listed in the run's manifest.
        classify.add_retry(
            errors=["States.ALL"], interval=Duration.seconds(5), max_attempts=2, backoff_rate=2
        )
        classify_objects = sfn.DistributedMap(
            self,
            "ClassifyObjects",
            item_reader=ScopedObjectsReader(
                bucket=self.bucket,
                readable_prefix=settings.backfill_prefix,
                prefix=sfn.JsonPath.string_at("$.prefix"),
            ),
            item_batcher=sfn.ItemBatcher(
                max_items_per_batch=settings.backfill_batch_size,
                max_input_bytes_per_batch=settings.backfill_max_batch_bytes,
                # CDK copies BatchInput as written: ".$" makes Step Functions read the path.
                batch_input={"bucket": self.bucket.bucket_name, "force.$": "$.force"},
            ),
            max_concurrency=settings.backfill_max_concurrency,
            tolerated_failure_percentage=settings.backfill_tolerated_failure_percent,
            result_writer_v2=ScopedResultWriter(
                bucket=self.bucket,
                prefix=self.runs_prefix,
                writer_config=sfn.WriterConfig(
                    output_type=sfn.OutputType.JSON, transformation=sfn.Transformation.NONE
                ),
            ),
        )
        return classify_objects.item_processor(classify)

    def _state_machine(self) -> sfn.StateMachine:
        settings = self.settings
        readable = settings.backfill_prefix
        # The execution input may omit either option: {"prefix": backfillPrefix, "force": false}.
        defaults = sfn.Pass(
            self,
            "Defaults",
            parameters={"defaults": {"prefix": readable, "force": False}, "input.$": "$"},
        )
        options = sfn.Pass(
            self,
            "Options",
            parameters={"options.$": "States.JsonMerge($.defaults, $.input, false)"},
            output_path="$.options",
        )
        allowed = sfn.Condition.and_(
            sfn.Condition.is_string("$.prefix"),
            sfn.Condition.string_matches("$.prefix", string_match_pattern(readable)),
            sfn.Condition.not_(
                sfn.Condition.string_matches("$.prefix", string_match_pattern(settings.results_prefix))
            ),
        )
        refused = sfn.Fail(
            self,
            "PrefixNotAllowed",
            error="PrefixNotAllowed",
            cause=(
                f'The prefix must be a string under "{readable}" (context backfillPrefix) and not '
                f'under "{settings.results_prefix}", e.g. {{"prefix": "{readable}"}}.'
            ),
        )
        definition = defaults.next(options).next(
            sfn.Choice(self, "PrefixAllowed").when(allowed, self._classify_batches()).otherwise(refused)
        )
        run_logs = log_group(self, "Logs", settings.log_retention_days)
        return sfn.StateMachine(
            self,
            "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            comment='Classify every object under a prefix: {"prefix": "archive/", "force": false}',
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=run_logs, level=sfn.LogLevel.ALL, include_execution_data=False),
        )

    def _batch_operations_role(self) -> iam.Role:
        """What an S3 Batch Operations job runs as: invoke the bulk worker, read the job's manifest,
        write its completion report (both under ``<results>batch-operations/``)."""
        role = iam.Role(
            self,
            "BatchOperationsRole",
            assumed_by=iam.ServicePrincipal("batchoperations.s3.amazonaws.com"),
            description="S3 Batch Operations jobs that classify stored photos with the bulk worker",
        )
        self.worker.grant_invoke(role)
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"],
                resources=[self.bucket.arn_for_objects(f"{self.batch_operations_prefix}*")],
            )
        )
        # A job may generate its manifest by listing the backfill prefix (--manifest-generator).
        role.add_to_policy(list_statement(self.bucket, [self.settings.backfill_prefix]))
        return role
