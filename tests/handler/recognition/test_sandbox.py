"""The decode sandbox holds its promises against decoders nobody anticipated: a test double that
hangs forever, one that allocates without bound, one that segfaults. The OS limits (the parent's
deadline, RLIMIT_AS) stop each, whatever the format; the other images, the function and the next
request are unaffected. No timing assertions: a test that returns at all shows the deadline held."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools import decode_doubles
from devtools.context import LocalContext
from devtools.events import http_event, multipart_body, rest_event
from handler.recognition.errors import Code, Refusal
from handler.recognition.imaging import DecodeLimits
from handler.recognition.sandbox import DecodeSandbox
from tests.support import CAT_CLASSES, body_json

LIMITS = DecodeLimits(max_bytes=6 * 1024 * 1024, max_pixels=40_000_000)
MEMORY = 384 * 1024 * 1024
HANG, ALLOCATE, CRASH = decode_doubles.HANG, decode_doubles.ALLOCATE, decode_doubles.CRASH


@pytest.fixture(scope="module")
def doubles() -> Iterator[DecodeSandbox]:
    """Two workers running the misbehaving doubles (photos decode normally), 300 ms per image."""
    with DecodeSandbox.start(2, MEMORY, 0.3, decode_doubles.PATH) as sandbox:
        yield sandbox


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (an exited process may linger a moment as a zombie: not running)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a SIGKILL is delivered asynchronously: allow it a moment)."""
    for _ in range(500):
        if not alive(pid):
            return True
        time.sleep(0.01)
    return False


def address_space_limit(pid: int) -> list[str]:
    """The worker's RLIMIT_AS (soft, hard), once it has set it (it does so right after the fork)."""
    for _ in range(500):
        limits = Path(f"/proc/{pid}/limits").read_text()
        (line,) = [row for row in limits.splitlines() if row.startswith("Max address space")]
        if "unlimited" not in line:
            return line.split()[3:5]
        time.sleep(0.01)
    return ["unlimited", "unlimited"]


def costly(result) -> str:
    assert isinstance(result, Refusal) and result.code == Code.IMAGE_TOO_COSTLY, result
    assert result.status == 413
    return result.message


def test_a_hanging_decoder_is_killed_at_its_deadline_and_replaced(doubles, grace_hopper: bytes) -> None:
    before, pids = doubles.replaced, set(doubles.pids())
    (result,) = doubles.decode([HANG], LIMITS)
    assert "takes longer than 300 ms" in costly(result)
    assert doubles.replaced == before + 1
    (killed,) = pids - set(doubles.pids())
    assert gone(killed), "the hung worker is gone, not left running"
    (pixels,) = doubles.decode([grace_hopper], LIMITS)
    assert pixels.shape == (224, 224, 3), "the next image is decoded by the fresh worker"


def test_a_decoder_that_allocates_without_bound_meets_the_address_space_cap(doubles) -> None:
    for pid in doubles.pids():  # a fresh fork sets its limits before it reads its first image
        assert address_space_limit(pid) == [str(MEMORY), str(MEMORY)]
    (result,) = doubles.decode([ALLOCATE], LIMITS)
    message = costly(result)
    assert "memory" in message or "takes longer" in message  # the cap, or the deadline while paging


def test_a_segfaulting_decoder_fails_its_image_only(doubles, grace_hopper: bytes, cat: bytes) -> None:
    results = doubles.decode(
        [grace_hopper, CRASH, cat, HANG, ALLOCATE, b"not an image", grace_hopper], LIMITS
    )
    shapes = [getattr(r, "shape", None) for r in results]
    assert shapes == [(224, 224, 3), None, (224, 224, 3), None, None, None, (224, 224, 3)]
    assert "stopped its decoder" in costly(results[1])
    assert "takes longer" in costly(results[3])
    costly(results[4])
    assert results[5].code == Code.UNSUPPORTED_IMAGE_TYPE
    assert (results[0] == results[6]).all(), "the same photo decodes the same in any worker"


def test_a_request_has_a_deadline_for_its_images_together(grace_hopper: bytes) -> None:
    with DecodeSandbox.start(1, MEMORY, 0.3, decode_doubles.PATH) as sandbox:
        results = sandbox.decode([HANG, HANG, HANG, grace_hopper], LIMITS, batch_deadline_s=0.4)
    messages = [costly(result) for result in results]
    assert "takes longer than 300 ms" in messages[0]
    assert all("rest of its request took too long" in m for m in messages[2:]), messages


def test_a_worker_killed_while_idle_is_replaced_before_its_next_image(doubles, grace_hopper: bytes) -> None:
    """What a SnapStart restore that lost a process, or the OOM killer, would leave."""
    pids = doubles.pids()
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    assert all(gone(pid) for pid in pids)
    results = doubles.decode([grace_hopper, grace_hopper], LIMITS)
    assert all(r.shape == (224, 224, 3) for r in results), results
    assert set(doubles.pids()).isdisjoint(pids)


@pytest.mark.slow
def test_a_worker_killed_while_decoding_a_good_photo_does_not_fail_it(grace_hopper: bytes) -> None:
    """The photo is tried once more on a fresh worker; a second death would refuse it."""
    with DecodeSandbox.start(1, MEMORY, 5.0, decode_doubles.PATH) as sandbox:
        (pid,) = sandbox.pids()
        killer = threading.Timer(0.2, os.kill, (pid, signal.SIGKILL))
        killer.start()
        (pixels,) = sandbox.decode([b"SLOW1000" + grace_hopper], LIMITS)
        killer.join()
    assert pixels.shape == (224, 224, 3)


def test_a_lost_zygote_is_started_again(grace_hopper: bytes) -> None:
    with DecodeSandbox.start(1, MEMORY, 0.3, decode_doubles.PATH) as sandbox:
        sandbox._zygote.kill()
        sandbox._zygote.wait()
        (refused,) = sandbox.decode([HANG], LIMITS)  # its replacement needs the zygote
        costly(refused)
        (pixels,) = sandbox.decode([grace_hopper], LIMITS)
        assert pixels.shape == (224, 224, 3)


def test_a_decoder_that_cannot_load_stops_the_cold_start() -> None:
    from handler.recognition.sandbox import SandboxError

    with pytest.raises(SandboxError, match="cannot load its decoder"):
        DecodeSandbox.start(1, MEMORY, 0.3, "no.such.module:decode")


# Through the function: both event versions, and both stored-object entry points.


@pytest.fixture(scope="module")
def app(configure, doubles):
    return configure(sandbox=doubles)


@pytest.mark.parametrize("door", [rest_event, http_event], ids=["rest-v1", "http-v2"])
@pytest.mark.parametrize("payload", [HANG, ALLOCATE, CRASH], ids=["hang", "allocate", "crash"])
def test_the_api_answers_413_for_each_double(app, door, payload: bytes) -> None:
    event = door("POST", "/predict", body=payload + b"\x00" * 64, headers={"Content-Type": "image/jpeg"})
    result = app.api_handler(event, LocalContext())
    assert result["statusCode"] == 413, result
    body = body_json(result)
    assert body["code"] == "image_too_costly" and "Traceback" not in body["error"]


@pytest.mark.parametrize("door", [rest_event, http_event], ids=["rest-v1", "http-v2"])
def test_a_batch_with_doubles_classifies_its_photos(app, door, grace_hopper: bytes, cat: bytes) -> None:
    parts = [grace_hopper, HANG, cat, CRASH, ALLOCATE]
    form, form_type = multipart_body(
        [("image", f"{i}.jpg", data, "image/jpeg") for i, data in enumerate(parts)]
    )
    result = app.api_handler(door("POST", "/predict", body=form, headers={"Content-Type": form_type}),
                             LocalContext())  # fmt: skip
    assert result["statusCode"] == 200
    answers = body_json(result)["results"]
    assert answers[0]["predictions"][0]["label"] == "military_uniform"
    assert answers[2]["predictions"][0]["label"] in CAT_CLASSES
    assert [answers[i]["code"] for i in (1, 3, 4)] == ["image_too_costly"] * 3


@pytest.mark.slow
def test_stored_objects_each_pay_their_own_deadline(app, s3_client, grace_hopper: bytes, cat: bytes) -> None:
    """An SQS batch and a Map batch with hanging objects: every object ends with its record; the
    photos are classified (the batch has no deadline of its own)."""
    from devtools.events import s3_event, sqs_event

    bucket = "sandbox-objects"
    s3_client.create_bucket(Bucket=bucket)
    objects = {
        "uploads/a.jpg": grace_hopper,
        "uploads/hang-1.jpg": HANG,
        "uploads/hang-2.jpg": HANG,
        "uploads/hang-3.jpg": HANG,
        "uploads/b.bmp": cat,
    }
    listed = []
    for key, data in objects.items():
        put = s3_client.put_object(Bucket=bucket, Key=key, Body=data)
        listed.append((key, put["ETag"].strip('"'), len(data)))
    notification = s3_event(bucket, listed)
    assert app.s3_handler(sqs_event([notification]), LocalContext()) == {"batchItemFailures": []}
    records = {
        key: json.loads(s3_client.get_object(Bucket=bucket, Key=f"results/{key}.json")["Body"].read())
        for key in objects
    }
    assert records["uploads/a.jpg"]["predictions"][0]["label"] == "military_uniform"
    assert records["uploads/b.bmp"]["predictions"][0]["label"] in CAT_CLASSES
    assert {records[f"uploads/hang-{n}.jpg"]["code"] for n in (1, 2, 3)} == {"image_too_costly"}
    assert all("takes longer" in records[f"uploads/hang-{n}.jpg"]["error"] for n in (1, 2, 3))

    items = [{"Key": key, "Etag": etag, "Size": size} for key, etag, size in listed]
    batch = {"Items": items, "BatchInput": {"bucket": bucket, "force": True}}
    summary = app.bulk_handler(batch, LocalContext())
    assert (summary["classified"], summary["error_records"]) == (2, 3)


def test_a_refused_image_loses_no_worker(doubles) -> None:
    """Refusals are answers, not failures: no worker is killed and replaced for them."""
    from devtools import hostile

    before = doubles.replaced
    results = doubles.decode([b"not an image", hostile.png_zeros(), b""], LIMITS)
    assert [r.code for r in results] == [Code.UNSUPPORTED_IMAGE_TYPE, Code.IMAGE_TOO_COSTLY, Code.EMPTY_IMAGE]
    assert doubles.replaced == before


def test_no_worker_carries_a_batch_into_the_next(grace_hopper: bytes) -> None:
    """A worker subverted by one request's image (the PLANT double makes it lie about every later
    image) never sees the next request's: the workers a batch used are fresh forks afterwards."""
    with DecodeSandbox.start(1, MEMORY, 5.0, decode_doubles.PATH) as sandbox:
        (honest,) = sandbox.decode([grace_hopper], LIMITS)
        first = sandbox.pids()
        (planted,) = sandbox.decode([decode_doubles.PLANT + grace_hopper], LIMITS)
        assert (planted == honest).all()
        (after,) = sandbox.decode([grace_hopper], LIMITS)
        assert (after == honest).all(), "the next request's photo was decoded by a fresh worker"
        assert sandbox.pids() != first and sandbox.replaced == 0


def test_kept_workers_are_recycled_after_a_few_hundred_images(grace_hopper: bytes, monkeypatch) -> None:
    """API requests keep their workers (a fresh fork costs milliseconds) but not for long."""
    from handler.recognition import sandbox as module

    monkeypatch.setattr(module, "MAX_IMAGES_PER_WORKER", 2)
    with DecodeSandbox.start(1, MEMORY, 5.0, decode_doubles.PATH) as sandbox:
        first = sandbox.pids()
        sandbox.decode([grace_hopper], LIMITS, fresh_workers=False)
        assert sandbox.pids() == first
        sandbox.decode([grace_hopper], LIMITS, fresh_workers=False)
        assert sandbox.pids() != first


def test_the_function_cannot_be_read_by_its_workers(doubles) -> None:
    """Once a sandbox starts, the function is non-dumpable: same-user processes (a subverted worker)
    cannot read or write its memory through /proc, nor attach to it."""
    import ctypes

    assert ctypes.CDLL(None).prctl(3, 0, 0, 0, 0) == 0  # PR_GET_DUMPABLE


def test_workers_see_no_credentials(monkeypatch, grace_hopper: bytes) -> None:
    """The zygote, and so every worker, gets an allow-listed environment: no AWS_* variables."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "canary-secret")
    with DecodeSandbox.start(1, MEMORY, 5.0, decode_doubles.PATH) as sandbox:
        (pid,) = sandbox.pids()
        environment = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"canary-secret" not in environment and b"AWS_" not in environment
    assert b"PYTHONPATH=" in environment
