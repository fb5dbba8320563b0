"""Capture: where sampled predictions (image, answer) and their feedback are stored, and who may.

The bucket is the uploads bucket (its lifecycle rule expires ``capture/`` after
``captureExpiryDays``: ``uploads.py``) or, with ``captureBucket``, an existing bucket imported by
name, whose lifecycle, encryption and policy its owner manages. Objects go under ``capture/`` only,
a prefix the S3 notifications never watch (they are filtered to the uploads prefix).

Permissions, each scoped to ``capture/*``:

- the API function reads (``POST /feedback`` checks that the capture exists), writes (its own
  captures, and the feedback records) and lists the prefix (so a missing capture is a 404, not a
  403). It keeps them while capture is off: feedback on what was captured before still lands, and
  an unknown id is a clean 404;
- the S3 worker and the bulk worker only write, and only while a capture rate is above 0.
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.settings import CAPTURE_PREFIX, Settings


class Capture(Construct):
    """``bucket`` and ``prefix`` of captures; ``environment`` the functions get; ``grant_*``."""

    def __init__(
        self, scope: Construct, construct_id: str, *, settings: Settings, uploads_bucket: s3.IBucket
    ) -> None:
        super().__init__(scope, construct_id)
        self.settings = settings
        self.prefix = CAPTURE_PREFIX
        self.bucket: s3.IBucket = (
            s3.Bucket.from_bucket_name(self, "Bucket", settings.capture_bucket)
            if settings.capture_bucket
            else uploads_bucket
        )

    @property
    def environment(self) -> dict[str, str]:
        """Set whether capture is on or off: ``POST /feedback`` needs the bucket either way."""
        return {
            "CAPTURE_RATE": f"{self.settings.capture_rate:g}",
            "CAPTURE_UNCERTAIN_RATE": f"{self.settings.uncertain_rate:g}",
            "CAPTURE_BUCKET": self.bucket.bucket_name,
            "CAPTURE_PREFIX": self.prefix,
            # POST /feedback: "iam", the function refuses a correction without an authenticated caller.
            "FEEDBACK_AUTH": self.settings.feedback_auth,
        }

    @property
    def objects(self) -> str:
        """The ARN of every object under the capture prefix."""
        return self.bucket.arn_for_objects(f"{self.prefix}*")

    def grant_api(self, api: lambda_.IFunction) -> None:
        """Read, write and list ``capture/`` (captures, feedback; 404 for an unknown capture)."""
        api.add_to_role_policy(
            iam.PolicyStatement(actions=["s3:GetObject", "s3:PutObject"], resources=[self.objects])
        )
        api.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{self.prefix}*"]}},
            )
        )

    def grant_worker(self, worker: lambda_.IFunction) -> None:
        """Write captures under ``capture/`` while a capture rate is above 0 (nothing otherwise)."""
        if self.settings.capture_on:
            worker.add_to_role_policy(iam.PolicyStatement(actions=["s3:PutObject"], resources=[self.objects]))
