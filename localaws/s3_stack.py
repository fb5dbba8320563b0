"""S3 on your machine: moto's server on 127.0.0.1 behind a proxy that checks presigned POST
policies as S3 does (``s3_proxy``), an uploads bucket, and a notifier that stands in for
S3 -> SQS -> Lambda by calling ``s3_handler`` for each new object under the uploads prefix.

Used by ``imgrec serve --s3`` (uploads and results work end to end, in the demo page
too) and ``imgrec s3-demo``. Dev only: moto is a development dependency.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from localaws.context import LocalContext
from localaws.events import s3_event
from localaws.s3_proxy import S3Proxy

DEFAULT_BUCKET = "image-recognition-local"
LOCAL_SECRET_KEY = "local"


def local_client(endpoint: str, access_key: str = "local", secret: str = LOCAL_SECRET_KEY):
    """A boto3 S3 client for the local S3 at ``endpoint`` (moto, or the proxy in front of it; what a
    function started elsewhere, an execution environment's process, builds from the endpoint)."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        config=Config(signature_version="s3v4", retries={"mode": "standard", "max_attempts": 3}),
    )


class LocalS3:
    """moto's S3 on 127.0.0.1 with a bucket, and a client for it. Configures nothing globally: give
    ``client`` and ``bucket`` to the function you build (``Function.start(settings, client)``)."""

    def __init__(self, bucket: str = DEFAULT_BUCKET) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the notifier polls: no access log
        self.bucket = bucket
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        # Clients (boto3, the browser's upload) reach moto through the policy-checking proxy.
        self.proxy = S3Proxy(f"http://{host}:{port}", post_policy_secret=LOCAL_SECRET_KEY)
        self.endpoint = self.proxy.url
        self.client = local_client(self.endpoint)
        self.client.create_bucket(Bucket=bucket)
        self._stop = threading.Event()
        self._notifier: threading.Thread | None = None

    def notify(
        self, s3_handler: Callable[[dict, Any], Any], prefix: str = "uploads/", every_s: float = 0.3
    ) -> None:
        """Call ``s3_handler`` once per new object version under ``prefix``, from a background thread."""
        seen: set[tuple[str, str]] = set()

        def loop() -> None:
            while not self._stop.wait(every_s):
                listing = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
                fresh = [
                    (item["Key"], item["ETag"].strip('"'), item["Size"])
                    for item in listing.get("Contents", [])
                    if (item["Key"], item["ETag"]) not in seen
                ]
                for key, etag, size in fresh:
                    seen.add((key, f'"{etag}"'))
                    try:
                        s3_handler(s3_event(self.bucket, [(key, etag, size)]), LocalContext())
                    except Exception:  # Lambda would retry and then give up: the notifier goes on
                        logging.getLogger(__name__).exception("s3_handler failed for %s", key)

        self._notifier = threading.Thread(target=loop, name="s3-notifier", daemon=True)
        self._notifier.start()

    def stop(self) -> None:
        self._stop.set()
        if self._notifier is not None:  # its s3_handler call ends before the next server starts one
            self._notifier.join(timeout=60)
        self.proxy.close()
        self._server.stop()
