"""The S3 path end to end on your machine: moto's S3 server on 127.0.0.1, real photos, real model.

Starts the server, uploads every image of a folder under ``uploads/``, runs ``s3_handler`` with
the SQS batch S3 -> SQS would deliver, prints each result record as stored, and stops.
Needs the dev dependencies (moto); nothing leaves the machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from handler.contract import IMAGE_SUFFIXES
from localaws.context import LocalContext
from localaws.events import s3_event, sqs_event
from localaws.s3_stack import LocalS3

BUCKET = "image-recognition-demo"


def run(folder: Path, out: TextIO) -> int:
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not photos:
        out.write(f"No images in {folder}\n")
        return 1
    local = LocalS3(BUCKET)
    try:
        from dataclasses import replace

        from handler import config
        from handler.function import Function

        settings = replace(config.read_settings(), uploads_bucket=BUCKET)
        function = Function.start(settings, s3_client=local.client)
        objects = []
        for photo in photos:
            key = f"uploads/{photo.name}"
            etag = local.client.put_object(Bucket=BUCKET, Key=key, Body=photo.read_bytes())["ETag"].strip('"')
            objects.append((key, etag, photo.stat().st_size))
        out.write(
            f"moto S3 on {local.endpoint}: uploaded {len(objects)} photo(s) to s3://{BUCKET}/uploads/\n"
        )
        answer = function.s3_handler(sqs_event([s3_event(BUCKET, [obj]) for obj in objects]), LocalContext())
        out.write(f"s3_handler answered {json.dumps(answer)}\n")
        for key, _, _ in objects:
            result_key = f"results/{key}.json"
            record = json.loads(local.client.get_object(Bucket=BUCKET, Key=result_key)["Body"].read())
            out.write(f"\ns3://{BUCKET}/{result_key}\n{json.dumps(record, indent=2)}\n")
        return 1 if answer.get("batchItemFailures") else 0
    finally:
        local.stop()
