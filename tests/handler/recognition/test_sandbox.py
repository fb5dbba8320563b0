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
    for pid in doubles.pids():
        limits = Path(f"/proc/{pid}/limits").read_text()
        (line,) = [row for row in limits.splitlines() if row.startswith("Max address space")]
        assert line.split()[3:5] == [str(MEMORY), str(MEMORY)], line
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


def test_a_refused_image_keeps_its_worker(doubles) -> None:
    """Refusals are answers, not failures: no worker is replaced for them (forks are for the lost)."""
    from devtools import hostile

    before, pids = doubles.replaced, doubles.pids()
    results = doubles.decode([b"not an image", hostile.png_zeros(), b""], LIMITS)
    assert [r.code for r in results] == [Code.UNSUPPORTED_IMAGE_TYPE, Code.IMAGE_TOO_COSTLY, Code.EMPTY_IMAGE]
    assert (doubles.replaced, doubles.pids()) == (before, pids)
