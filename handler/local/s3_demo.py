"""The S3 path end to end on your machine: moto's S3 server on 127.0.0.1, real photos, real model.

Starts the server, creates a bucket, uploads every image of a folder under ``uploads/``, runs
``s3_handler`` with the SQS batch S3 -> SQS would deliver, prints each result record, and stops.
Needs the dev dependencies (moto); nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TextIO

from handler.local.context import LocalContext
from handler.local.events import s3_event, sqs_event

BUCKET = "image-recognition-demo"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}


def _point_sdk_at(endpoint: str) -> None:
    os.environ.update(
        {
            "AWS_ENDPOINT_URL_S3": endpoint,
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    os.environ.pop("AWS_PROFILE", None)


def describe(record: dict) -> str:
    if "error" in record:
        return f"error {record['code']}: {record['error']}"
    return ", ".join(f"{p['label']} {p['probability']:.1%}" for p in record["predictions"][:3])


def run(folder: Path, out: TextIO) -> int:
    from moto.server import ThreadedMotoServer

    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not photos:
        out.write(f"No images in {folder}\n")
        return 1
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        _point_sdk_at(f"http://{host}:{port}")
        from handler import app, s3

        client = s3.client()
        client.create_bucket(Bucket=BUCKET)
        objects = []
        for photo in photos:
            key = f"uploads/{photo.name}"
            etag = client.put_object(Bucket=BUCKET, Key=key, Body=photo.read_bytes())["ETag"].strip('"')
            objects.append((key, etag, photo.stat().st_size))
        out.write(
            f"moto S3 on http://{host}:{port}: uploaded {len(objects)} photo(s) to s3://{BUCKET}/uploads/\n"
        )
        answer = app.s3_handler(sqs_event([s3_event(BUCKET, [obj]) for obj in objects]), LocalContext())
        out.write(f"s3_handler answered {json.dumps(answer)}\n")
        for key, _, _ in objects:
            result_key = f"results/{key}.json"
            record = json.loads(client.get_object(Bucket=BUCKET, Key=result_key)["Body"].read())
            out.write(f"  s3://{BUCKET}/{result_key}: {describe(record)}\n")
        return 1 if answer.get("batchItemFailures") else 0
    finally:
        server.stop()
