"""``make backfill-demo``: a stored archive on moto's S3 server (127.0.0.1), classified end to end
by ``imgrec backfill``, then again (everything skipped).

The archive is made of the shared photos and datasets (``../shared/images``, ``../shared/datasets``;
copies under several prefixes to reach a few thousand objects) plus the objects that go wrong in
real buckets: a truncated JPEG, a text file, an object over the size limit, a folder marker, and
keys with spaces, unicode, ``+``, ``%``, double slashes and 900 characters.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from handler.contract import IMAGE_SUFFIXES, Defaults

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BUCKET = "photo-archive"
PREFIX = "archive/"

# The objects every archive has somewhere, and the code each one's error record must carry.
BROKEN = {
    "archive/broken/truncated.jpg": "corrupt_image",
    "archive/broken/notes.txt": "unsupported_image_type",
    "archive/broken/too-large.jpg": "image_too_large",
}
ODD_NAMES = (
    "archive/odd names/Été 2019 + ü (1).jpg",
    "archive/odd names/100% cotton.jpg",
    "archive/odd names/a//double slash.jpg",
    "archive/odd names/" + "very-long-" * 90 + ".jpg",
)
FOLDER_MARKER = "archive/odd names/"


def photos(shared: Path = SHARED) -> list[Path]:
    """The shared photos (images and both datasets), sorted; fails saying where they belong."""
    found = sorted(
        p for folder in ("images", "datasets") for p in (shared / folder).rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )  # fmt: skip
    if not found:
        raise SystemExit(f"No photos under {shared}/images or {shared}/datasets: put the shared data there.")
    return found


def archive(copies: int, shared: Path = SHARED) -> Iterator[tuple[str, bytes]]:
    """``(key, body)`` for every object of the demo archive: ``copies`` x the shared photos, plus
    the broken objects, the odd names and a folder marker."""
    sources = photos(shared)
    for copy in range(copies):
        for path in sources:
            relative = path.relative_to(shared).as_posix()
            yield f"{PREFIX}{2019 + copy}/{relative}", path.read_bytes()
    portrait = (shared / "images" / "grace_hopper.jpg").read_bytes()
    yield "archive/broken/truncated.jpg", portrait[: len(portrait) // 3]
    yield "archive/broken/notes.txt", b"Delivery notes are scanned in the other folder.\n"
    yield "archive/broken/too-large.jpg", portrait + bytes(Defaults.MAX_UPLOAD_BYTES)
    for key in ODD_NAMES:
        yield key, portrait
    yield FOLDER_MARKER, b""


def upload(client, bucket: str, objects: Iterator[tuple[str, bytes]], progress: bool = True) -> list[str]:
    """Put every object (8 at a time, with a progress bar); their keys."""
    from tqdm import tqdm

    pending = list(objects)
    with (
        ThreadPoolExecutor(8) as pool,
        tqdm(total=len(pending), unit="obj", desc="upload", file=sys.stderr, disable=not progress) as bar,
    ):
        for _ in pool.map(
            lambda kv: (client.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), bar.update()), pending
        ):
            pass
    return [key for key, _ in pending]


def main(argv: list[str] | None = None) -> int:
    from moto.server import ThreadedMotoServer

    from devtools import backfill

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--copies", type=int, default=4, help="copies of the shared photos (4: ~2,750 objects)"
    )
    parser.add_argument("--workers", type=int, default=backfill.Options.workers)
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = backfill.client_for(endpoint)
        client.create_bucket(Bucket=BUCKET)
        keys = upload(client, BUCKET, archive(args.copies))
        print(f"moto S3 on {endpoint}: {len(keys)} objects in s3://{BUCKET}/{PREFIX}", file=sys.stderr)
        options = backfill.Options(
            f"s3://{BUCKET}/{PREFIX}", batch_size=args.batch_size, workers=args.workers, endpoint_url=endpoint
        )
        first = backfill.run(options)
        print("\nAgain: everything is answered already.", file=sys.stderr)
        second = backfill.run(options)
        lost = first.objects - first.classified - first.skipped - first.error_records
        print(
            f"\nfirst run {first.objects_per_second} objects/s with {args.workers} worker(s); "
            f"second run skipped {second.skipped} of {second.objects}; not answered: {lost + second.failed}",
            file=sys.stderr,
        )
        return 0 if lost == 0 and second.skipped == second.objects else 1
    finally:
        server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
