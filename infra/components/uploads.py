"""Uploads: a private bucket, S3 -> SQS (filtered) -> the worker function, a dead-letter queue."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as notifications
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from handler.contract import IMAGE_SUFFIXES
from infra.settings import CAPTURE_PREFIX, Settings

# S3 suffix filters are case-sensitive: phones and cameras write upper-case extensions too.
# S3 notification filters are case-sensitive: lower and upper case of each image suffix.
NOTIFIED_SUFFIXES = [ext for base in IMAGE_SUFFIXES for ext in (base, base.upper())]


class Uploads(Construct):
    """Bucket, queues and the wiring to the worker; results land under ``results_prefix``."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings) -> None:
        super().__init__(scope, construct_id)
        self.settings = settings
        self.bucket = self._bucket(settings, self._access_logs())
        self.dead_letters, self.queue = self._queues(settings)
        destination = notifications.SqsDestination(self.queue)
        for suffix in NOTIFIED_SUFFIXES:
            self.bucket.add_event_notification(
                s3.EventType.OBJECT_CREATED,
                destination,
                s3.NotificationKeyFilter(prefix=settings.uploads_prefix, suffix=suffix),
            )

    def _access_logs(self) -> s3.Bucket:
        """Who read and wrote what in the uploads bucket (anyone may upload): kept 90 days."""
        return s3.Bucket(
            self,
            "AccessLogs",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(90))],
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _bucket(self, settings: Settings, access_logs: s3.Bucket) -> s3.Bucket:
        """The private, versioned bucket of uploads, results and captures; each prefix expires on
        its own schedule, and browsers may POST to it with the API's presigned forms."""
        return s3.Bucket(
            self,
            "Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="uploads-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-old-versions",
                    noncurrent_version_expiration=Duration.days(30),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
                *self._expiry_rules(settings),
                *self._capture_rules(settings),
            ],
            # Browsers POST large photos straight to the bucket with the API's presigned forms.
            cors=[
                s3.CorsRule(
                    allowed_methods=[s3.HttpMethods.POST],
                    allowed_origins=settings.origins,
                    allowed_headers=["*"],
                    max_age=3000,
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _queues(self, settings: Settings) -> tuple[sqs.Queue, sqs.Queue]:
        """(dead letters, queue): the notifications wait in the queue for the worker; one that
        fails ``sqsMaxReceiveCount`` times moves to the dead letters (an alarm) instead of looping."""
        dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            # AWS's guidance: at least six times the consumer's timeout, so retries do not overlap.
            visibility_timeout=Duration.seconds(6 * settings.s3_timeout_seconds),
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=dead_letters, max_receive_count=settings.sqs_max_receive_count
            ),
        )
        return dead_letters, queue

    @staticmethod
    def _expiry_rules(settings: Settings) -> list[s3.LifecycleRule]:
        """Anyone may upload through a presigned form: uploads and their results do not pile up forever."""
        if settings.expire_after_days == 0:
            return []
        # Only the uploads' results expire with them: a backfill's records of a stored archive stay.
        upload_results = f"{settings.results_prefix}{settings.uploads_prefix}"
        return [
            s3.LifecycleRule(
                id=f"expire-{name}", prefix=prefix, expiration=Duration.days(settings.expire_after_days)
            )
            for name, prefix in (("uploads", settings.uploads_prefix), ("results", upload_results))
        ]

    @staticmethod
    def _capture_rules(settings: Settings) -> list[s3.LifecycleRule]:
        """Captured photos are personal data kept for a while: they, their answers and feedback expire
        after ``captureExpiryDays``, and the versions that leaves behind a day later (not the
        bucket-wide 30). With ``captureBucket`` that bucket's owner sets its lifecycle."""
        if settings.capture_bucket:
            return []
        return [
            s3.LifecycleRule(
                id="expire-capture",
                prefix=CAPTURE_PREFIX,
                expiration=Duration.days(settings.capture_expiry_days),
                noncurrent_version_expiration=Duration.days(1),
            )
        ]

    def connect(self, worker: lambda_.IFunction) -> None:
        """Feed the worker from the queue and give it exactly the S3 access it needs."""
        settings = self.settings
        worker.add_event_source(
            sources.SqsEventSource(
                self.queue,
                batch_size=settings.sqs_batch_size,
                max_batching_window=Duration.seconds(settings.sqs_max_batching_window_seconds),
                report_batch_item_failures=True,
                max_concurrency=max(2, settings.s3_worker_max_concurrency),
            )
        )
        worker.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:GetObjectVersion"], resources=[self._objects("uploads")]
            )
        )
        # It reads its own results too: that is how a re-delivered notification is recognised.
        worker.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:PutObject"], resources=[self._objects("results")]
            )
        )
        worker.add_to_role_policy(self._list_prefixes())

    def connect_api(self, api: lambda_.IFunction) -> None:
        """The API presigns uploads (the form carries its s3:PutObject right) and reads results."""
        api.add_to_role_policy(
            iam.PolicyStatement(actions=["s3:PutObject"], resources=[self._objects("uploads")])
        )
        api.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"], resources=[self._objects("uploads"), self._objects("results")]
            )
        )
        api.add_to_role_policy(self._list_prefixes())

    def _objects(self, which: str) -> str:
        prefix = self.settings.uploads_prefix if which == "uploads" else self.settings.results_prefix
        return self.bucket.arn_for_objects(f"{prefix}*")

    def _list_prefixes(self) -> iam.PolicyStatement:
        """Without ListBucket a missing key answers 403 instead of 404; scoped to the two prefixes."""
        prefixes = [f"{self.settings.uploads_prefix}*", f"{self.settings.results_prefix}*"]
        return iam.PolicyStatement(
            actions=["s3:ListBucket"],
            resources=[self.bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": prefixes}},
        )

    @property
    def results_location(self) -> str:
        return f"s3://{self.bucket.bucket_name}/{self.settings.results_prefix}"
