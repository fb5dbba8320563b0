"""The decode sandbox holds its promises against decoders nobody anticipated: test doubles that
sleep forever, spin on the CPU, allocate without bound, segfault, or subvert their worker (a
decoder exploit). The OS limits and the function's CPU-time and wall-clock checks stop each,
whatever the format; no worker serves two images, so nothing one image did reaches another
caller's. No timing assertions: a test that returns at all shows the bounds held."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from handler.config import decode_wall_ms_for
from handler.errors import Code, Refusal
from handler.recognition.imaging import DecodeLimits
from handler.recognition.sandbox import Bounds, DecodeSandbox
from localaws.context import LocalContext
from localaws.events import (
    batch_operations_event,
    http_event,
    map_batch_event,
    multipart_body,
    rest_event,
    s3_event,
    sqs_event,
)
from tests.corpora import decode_doubles
from tests.support import CAT_CLASSES, body_json, busy_processes, cpu_quota, workers_of

# serial: CPU-time limits raced against wall-clock ones: alone, not beside another worker.
pytestmark = pytest.mark.serial

LIMITS = DecodeLimits(max_bytes=6 * 1024 * 1024, max_pixels=40_000_000)
MEMORY = 384 * 1024 * 1024
BOUNDS = Bounds(cpu_s=0.3, wall_s=0.6, request_cpu_s=5.0, request_wall_s=10.0)
HANG, SPIN, ALLOCATE, CRASH, PLANT = (decode_doubles.HANG, decode_doubles.SPIN, decode_doubles.ALLOCATE,
                                      decode_doubles.CRASH, decode_doubles.PLANT)  # fmt: skip


@pytest.fixture(scope="module")
def doubles() -> Iterator[DecodeSandbox]:
    """Two workers at a time running the misbehaving doubles (photos decode normally): 300 ms of
    CPU and 600 ms of wall time per image."""
    with DecodeSandbox.start(2, MEMORY, BOUNDS, decode_doubles.PATH) as sandbox:
        yield sandbox


def workers(sandbox: DecodeSandbox) -> set[int]:
    """The live worker processes, read from /proc, not from the sandbox."""
    return workers_of(sandbox.zygote_pid)


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a SIGKILL is delivered asynchronously: allow it a moment)."""
    for _ in range(500):
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except (OSError, IndexError):
            return True
        time.sleep(0.01)
    return False


def limit(pid: int, name: str) -> list[str]:
    """A worker's soft and hard limit ``name`` (e.g. "Max address space"), as /proc shows it."""
    (line,) = [row for row in Path(f"/proc/{pid}/limits").read_text().splitlines() if row.startswith(name)]
    return line[len(name) :].split()[:2]


def costly(result) -> str:
    assert isinstance(result, Refusal) and result.code == Code.IMAGE_TOO_COSTLY, result
    assert result.status == 413
    return result.message


def test_a_decoder_that_spins_is_stopped_by_its_cpu_time(doubles, grace_hopper: bytes) -> None:
    before = workers(doubles)
    (result,) = doubles.decode([SPIN], LIMITS)
    assert "needs more than 300 ms of CPU time" in costly(result)
    assert all(gone(pid) for pid in before - workers(doubles)), "the spinning worker is gone"
    (pixels,) = doubles.decode([grace_hopper], LIMITS)
    assert pixels.shape == (224, 224, 3), "the next image is decoded by a fresh worker"


def test_a_decoder_that_sleeps_is_stopped_by_the_wall_clock(doubles) -> None:
    """Asleep it uses no CPU: the liveness bound (wall time) is what stops it."""
    (result,) = doubles.decode([HANG], LIMITS)
    assert "takes longer than 600 ms" in costly(result)


def test_every_worker_is_capped_by_the_kernel(doubles) -> None:
    """Address space, CPU seconds (the kernel's backstop above the function's 300 ms check: whole
    seconds, SIGKILL one later) and no core dumps, set before the worker says it is ready."""
    doubles.replenish()
    for _ in range(500):  # a worker an earlier test killed may take a moment to finish dying
        spares = workers(doubles)
        if len(spares) <= doubles.size:
            break
        time.sleep(0.01)
    assert len(spares) == doubles.size
    for pid in spares:
        assert limit(pid, "Max address space") == [str(MEMORY)] * 2
        assert limit(pid, "Max cpu time") == ["1", "2"]
        assert limit(pid, "Max core file size") == ["0", "0"]


def test_a_decoder_that_allocates_without_bound_meets_the_address_space_cap(doubles) -> None:
    (result,) = doubles.decode([ALLOCATE], LIMITS)
    message = costly(result)
    assert "memory" in message or "CPU time" in message  # the cap, or the CPU while paging


@pytest.mark.slow
def test_a_native_decoders_refused_allocation_answers_413_not_422() -> None:
    """libavif reports an allocation the address-space cap refused as a generic decode error; the
    worker checks whether the image's need still fits and answers "too costly"."""
    from tests.corpora.hostile import avif_photo

    photo = avif_photo(2_000, 1_500, quality=50)
    with DecodeSandbox.start(1, MEMORY, BOUNDS) as roomy:
        (spare,) = workers(roomy)
        status = Path(f"/proc/{spare}/status").read_text()
        baseline = next(int(row.split()[1]) for row in status.splitlines() if row.startswith("VmSize:"))
        (pixels,) = roomy.decode([photo], LIMITS)
        assert pixels.shape == (224, 224, 3)
    # Room for the worker and a few MB, not for the 2000x1500 AVIF's YUV planes and RGB (about 30 MB).
    with DecodeSandbox.start(1, (baseline + 3 * 1024) * 1024, BOUNDS) as tight:
        (refused,) = tight.decode([photo], LIMITS)
    assert "needs more memory" in costly(refused)


def test_a_segfaulting_decoder_fails_its_image_only(doubles, grace_hopper: bytes, cat: bytes) -> None:
    results = doubles.decode(
        [grace_hopper, CRASH, cat, HANG, SPIN, ALLOCATE, b"not an image", grace_hopper], LIMITS
    )
    shapes = [getattr(r, "shape", None) for r in results]
    assert shapes == [(224, 224, 3), None, (224, 224, 3), None, None, None, None, (224, 224, 3)]
    assert "stopped its decoder" in costly(results[1])
    assert "takes longer" in costly(results[3])
    assert "CPU time" in costly(results[4])
    costly(results[5])
    assert results[6].code == Code.UNSUPPORTED_IMAGE_TYPE
    assert (results[0] == results[7]).all(), "the same photo decodes the same in any worker"


def test_a_request_has_a_cpu_budget_for_its_images_together(grace_hopper: bytes) -> None:
    bounds = Bounds(cpu_s=0.3, wall_s=5.0, request_cpu_s=0.5, request_wall_s=10.0)
    with DecodeSandbox.start(1, MEMORY, bounds, decode_doubles.PATH) as sandbox:
        results = sandbox.decode([SPIN, SPIN, SPIN, grace_hopper], LIMITS, request=True)
    messages = [costly(result) for result in results]
    assert "needs more than 300 ms of CPU time" in messages[0]
    assert all("used its 500 ms of decoding CPU time" in m for m in messages[1:]), messages


def test_a_request_has_a_wall_clock_end(grace_hopper: bytes) -> None:
    bounds = Bounds(cpu_s=0.3, wall_s=5.0, request_cpu_s=5.0, request_wall_s=0.4)
    with DecodeSandbox.start(1, MEMORY, bounds, decode_doubles.PATH) as sandbox:
        results = sandbox.decode([HANG, HANG, grace_hopper], LIMITS, request=True)
    assert all("rest of its request took too long" in costly(r) for r in results)


def test_stored_objects_have_no_request_budget(grace_hopper: bytes) -> None:
    """Each stored object costs its own bounds only: three spinning objects do not refuse a fourth."""
    bounds = Bounds(cpu_s=0.2, wall_s=5.0, request_cpu_s=0.1, request_wall_s=0.1)
    with DecodeSandbox.start(1, MEMORY, bounds, decode_doubles.PATH) as sandbox:
        results = sandbox.decode([SPIN, SPIN, SPIN, grace_hopper], LIMITS)
    assert all("CPU time" in costly(r) for r in results[:3])
    assert results[3].shape == (224, 224, 3)


def test_a_worker_killed_while_idle_is_replaced_before_its_next_image(doubles, grace_hopper: bytes) -> None:
    """What a SnapStart restore that lost a process, or the OOM killer, would leave."""
    doubles.replenish()
    spares = workers(doubles)
    for pid in spares:
        os.kill(pid, signal.SIGKILL)
    assert all(gone(pid) for pid in spares)
    results = doubles.decode([grace_hopper, grace_hopper], LIMITS)
    assert all(r.shape == (224, 224, 3) for r in results), results


@pytest.mark.slow
def test_a_worker_killed_while_decoding_a_good_photo_does_not_fail_it(grace_hopper: bytes) -> None:
    """The photo is tried once more on a fresh worker; a second death would refuse it."""
    with DecodeSandbox.start(1, MEMORY, Bounds(2.0, 5.0, 5.0, 10.0), decode_doubles.PATH) as sandbox:
        busy = workers(sandbox)
        killer = threading.Timer(0.2, lambda: [os.kill(pid, signal.SIGKILL) for pid in busy])
        killer.start()
        (pixels,) = sandbox.decode([b"SLOW1000" + grace_hopper], LIMITS)
        killer.join()
    assert pixels.shape == (224, 224, 3)


def test_a_lost_zygote_is_started_again(grace_hopper: bytes) -> None:
    with DecodeSandbox.start(1, MEMORY, BOUNDS, decode_doubles.PATH) as sandbox:
        os.kill(sandbox.zygote_pid, signal.SIGKILL)  # its workers die with it (PR_SET_PDEATHSIG)
        (refused,) = sandbox.decode([HANG], LIMITS)
        costly(refused)
        (pixels,) = sandbox.decode([grace_hopper], LIMITS)
        assert pixels.shape == (224, 224, 3)


def test_a_decoder_that_cannot_load_stops_the_cold_start() -> None:
    from handler.recognition.sandbox import SandboxError

    with pytest.raises(SandboxError, match="cannot load its decoder"):
        DecodeSandbox.start(1, MEMORY, BOUNDS, "no.such.module:decode")


def test_a_refused_image_loses_no_worker(doubles) -> None:
    """Refusals are answers, not failures: no worker is counted as stopped or lost for them."""
    from tests.corpora import hostile

    before = doubles.replaced
    results = doubles.decode([b"not an image", hostile.png_zeros(), b""], LIMITS)
    assert [r.code for r in results] == [Code.UNSUPPORTED_IMAGE_TYPE, Code.IMAGE_TOO_COSTLY, Code.EMPTY_IMAGE]
    assert doubles.replaced == before


def test_no_worker_decodes_a_second_image(doubles, grace_hopper: bytes) -> None:
    """A worker subverted by one image (the PLANT double makes it lie about every later image it
    decodes) never sees another: in one batch or the next, every image gets a fresh process."""
    honest = doubles.decode([grace_hopper], LIMITS)[0]
    results = doubles.decode([PLANT + grace_hopper] + [grace_hopper] * 7, LIMITS, request=True)
    results += doubles.decode([grace_hopper] * 4, LIMITS)
    assert all((pixels == honest).all() for pixels in results)


def test_spare_workers_are_ready_before_the_answer_leaves(app, grace_hopper: bytes) -> None:
    """Lambda freezes every process once the answer is returned: the spares forked during the
    request have said "ready" by then, so no fork or warm-up is left to run in the next event."""
    event = rest_event("POST", "/predict", body=grace_hopper, headers={"Content-Type": "image/jpeg"})
    assert app.api_handler(event, LocalContext())["statusCode"] == 200
    spares = list(app.runtime.recognizer.sandbox._spares)
    assert len(spares) == app.runtime.recognizer.sandbox.size
    assert all(worker.pid for worker in spares)


# Slow but legitimate photos: the CPU-time bound does not refuse them when the CPU is shared.


def slow_photos(grace_hopper: bytes) -> list[bytes]:
    """Four photos whose decode needs 200 ms of CPU each (under the 300 ms cap)."""
    return [b"BURN200" + grace_hopper] * 4


def shared_cpu_sandbox(cpus: float) -> DecodeSandbox:
    """The doubles with the bounds the function derives for two workers on ``cpus`` CPUs."""
    wall = decode_wall_ms_for(300, 2, cpus) / 1000
    return DecodeSandbox.start(2, MEMORY, Bounds(0.3, wall, 5.0, 20.0), decode_doubles.PATH)


def test_slow_photos_classify_beside_two_busy_processes(grace_hopper: bytes) -> None:
    with shared_cpu_sandbox(len(os.sched_getaffinity(0))) as sandbox, busy_processes(2):
        results = sandbox.decode(slow_photos(grace_hopper), LIMITS, request=True)
    assert all(getattr(r, "shape", None) == (224, 224, 3) for r in results), results


def test_slow_photos_classify_on_half_a_cpu_shared_by_two_workers(grace_hopper: bytes) -> None:
    with shared_cpu_sandbox(0.5) as sandbox, cpu_quota({sandbox.zygote_pid} | workers(sandbox), 0.5):
        results = sandbox.decode(slow_photos(grace_hopper), LIMITS, request=True)
    assert all(getattr(r, "shape", None) == (224, 224, 3) for r in results), results


# Through the function: both event versions, and every stored-object entry point.


@pytest.fixture(scope="module")
def app(configure, doubles):
    return configure(sandbox=doubles)


@pytest.mark.parametrize("door", [rest_event, http_event], ids=["rest-v1", "http-v2"])
@pytest.mark.parametrize("payload", [HANG, SPIN, ALLOCATE, CRASH], ids=["hang", "spin", "allocate", "crash"])
def test_the_api_answers_413_for_each_double(app, door, payload: bytes) -> None:
    event = door("POST", "/predict", body=payload + b"\x00" * 64, headers={"Content-Type": "image/jpeg"})
    result = app.api_handler(event, LocalContext())
    assert result["statusCode"] == 413, result
    body = body_json(result)
    assert body["code"] == "image_too_costly" and "Traceback" not in body["error"]


@pytest.mark.parametrize("door", [rest_event, http_event], ids=["rest-v1", "http-v2"])
def test_a_batch_with_doubles_classifies_its_photos(app, door, grace_hopper: bytes, cat: bytes) -> None:
    parts = [grace_hopper, HANG, cat, CRASH, ALLOCATE, SPIN]
    form, form_type = multipart_body(
        [("image", f"{i}.jpg", data, "image/jpeg") for i, data in enumerate(parts)]
    )
    result = app.api_handler(door("POST", "/predict", body=form, headers={"Content-Type": form_type}),
                             LocalContext())  # fmt: skip
    assert result["statusCode"] == 200
    answers = body_json(result)["results"]
    assert answers[0]["predictions"][0]["label"] == "military_uniform"
    assert answers[2]["predictions"][0]["label"] in CAT_CLASSES
    assert [answers[i]["code"] for i in (1, 3, 4, 5)] == ["image_too_costly"] * 4


def test_a_planted_request_changes_no_later_answer(app, grace_hopper: bytes) -> None:
    """One client's request subverts its worker; the next 30 requests, from anyone, answer as before."""

    def predict(body: bytes) -> dict:
        event = rest_event("POST", "/predict", body=body, headers={"Content-Type": "image/jpeg"})
        result = app.api_handler(event, LocalContext())
        assert result["statusCode"] == 200
        return body_json(result)["predictions"][0]

    honest = predict(grace_hopper)
    assert predict(PLANT + grace_hopper) == honest
    assert all(predict(grace_hopper) == honest for _ in range(30))


def put_objects(s3_client, bucket: str, objects: dict[str, bytes]) -> list[tuple[str, str, int]]:
    s3_client.create_bucket(Bucket=bucket)
    listed = []
    for key, data in objects.items():
        put = s3_client.put_object(Bucket=bucket, Key=key, Body=data)
        listed.append((key, put["ETag"].strip('"'), len(data)))
    return listed


def records(s3_client, bucket: str, keys) -> dict[str, dict]:
    return {
        key: json.loads(s3_client.get_object(Bucket=bucket, Key=f"results/{key}.json")["Body"].read())
        for key in keys
    }


@pytest.mark.parametrize("door", ["sqs", "map", "batch-operations"])
def test_a_planted_upload_changes_no_other_uploaders_record(
    app, s3_client, door, grace_hopper: bytes, cat: bytes
) -> None:
    """One uploader's object subverts its worker; the nine others of the same batch are recorded
    from honest pixels (the same answer as alone), whichever road the batch came by."""
    bucket = f"planted-{door}-{uuid.uuid4().hex[:6]}"
    objects = {"uploads/0-planted.jpg": PLANT + grace_hopper}
    objects |= {f"uploads/{n}.jpg": grace_hopper if n % 2 else cat for n in range(1, 10)}
    listed = put_objects(s3_client, bucket, objects)
    if door == "sqs":
        assert app.s3_handler(sqs_event([s3_event(bucket, listed)]), LocalContext()) == {
            "batchItemFailures": []
        }
    elif door == "map":
        assert (
            app.bulk_handler(map_batch_event(bucket, listed, force=True), LocalContext())["classified"] == 10
        )
    else:  # a job: one task per invocation, as S3 Batch Operations sends them
        for key in objects:
            answer = app.bulk_handler(batch_operations_event(bucket, [key]), LocalContext())
            assert answer["results"][0]["resultCode"] == "Succeeded", answer
    found = records(s3_client, bucket, objects)
    honest = {
        label: top for label, top in (("photo", found["uploads/1.jpg"]), ("cat", found["uploads/2.jpg"]))
    }
    assert honest["photo"]["predictions"][0]["label"] == "military_uniform"
    assert honest["cat"]["predictions"][0]["label"] in CAT_CLASSES
    for n in range(1, 10):
        expected = honest["photo" if n % 2 else "cat"]["predictions"]
        assert found[f"uploads/{n}.jpg"]["predictions"] == expected, n


@pytest.mark.slow
def test_stored_objects_each_pay_their_own_bounds(app, s3_client, grace_hopper: bytes, cat: bytes) -> None:
    """An SQS batch and a Map batch with hanging and spinning objects: every object ends with its
    record; the photos are classified (the batch has no budget of its own)."""
    bucket = f"sandbox-objects-{uuid.uuid4().hex[:6]}"
    objects = {
        "uploads/a.jpg": grace_hopper,
        "uploads/hang-1.jpg": HANG,
        "uploads/spin-2.jpg": SPIN,
        "uploads/hang-3.jpg": HANG,
        "uploads/b.bmp": cat,
    }
    listed = put_objects(s3_client, bucket, objects)
    assert app.s3_handler(sqs_event([s3_event(bucket, listed)]), LocalContext()) == {"batchItemFailures": []}
    found = records(s3_client, bucket, objects)
    assert found["uploads/a.jpg"]["predictions"][0]["label"] == "military_uniform"
    assert found["uploads/b.bmp"]["predictions"][0]["label"] in CAT_CLASSES
    assert {found[key]["code"] for key in objects if "-" in key} == {"image_too_costly"}
    assert "CPU time" in found["uploads/spin-2.jpg"]["error"]

    summary = app.bulk_handler(map_batch_event(bucket, listed, force=True), LocalContext())
    assert (summary["classified"], summary["error_records"]) == (2, 3)


def test_the_function_cannot_be_read_by_its_workers(doubles) -> None:
    """Once a sandbox starts, the function is non-dumpable: same-user processes (a subverted worker)
    cannot read or write its memory through /proc, nor attach to it."""
    import ctypes

    assert ctypes.CDLL(None).prctl(3, 0, 0, 0, 0) == 0  # PR_GET_DUMPABLE


def test_workers_see_no_credentials(monkeypatch) -> None:
    """The zygote, and so every worker, gets an allow-listed environment: no AWS_* variables."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "canary-secret")
    with DecodeSandbox.start(1, MEMORY, BOUNDS, decode_doubles.PATH) as sandbox:
        (pid,) = workers(sandbox)
        environment = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"canary-secret" not in environment and b"AWS_" not in environment
    assert b"PYTHONPATH=" in environment


def test_a_subverted_decoder_reaches_nothing_beyond_its_image(doubles) -> None:
    """The seccomp filter: an exploit in a worker cannot open a socket, fork, run a program, signal
    the zygote, leave its process group or hold a memfd (each attempt answers EPERM); a filter that
    was not installed would show here as the list of what worked."""
    doubles.replenish()
    assert all(worker.confined for worker in doubles._spares)
    (result,) = doubles.decode([decode_doubles.ESCAPE], LIMITS)
    assert result.message == "escaped: none"


def run_filter(instructions, arch: int, nr: int, arg0: int = 0) -> int:
    """Classic BPF as the kernel runs a seccomp filter: loads from seccomp_data, forward jumps."""
    from handler.recognition import seccomp

    data, accumulator, at = {seccomp.NR: nr, seccomp.ARCH: arch, seccomp.ARG0: arg0}, 0, 0
    while True:
        code, yes, no, k = instructions[at]
        if code == seccomp.RET:
            return k
        if code == seccomp.LOAD:
            accumulator, at = data[k], at + 1
            continue
        taken = {
            seccomp.JEQ: accumulator == k,
            seccomp.JGE: accumulator >= k,
            seccomp.JSET: bool(accumulator & k),
        }
        at += 1 + (yes if taken[code] else no)


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_the_filter_refuses_what_it_lists_and_nothing_else(machine: str) -> None:
    """The BPF program itself, on both of Lambda's architectures: every listed call is refused,
    signals and limits only aimed at itself pass, clone only for threads, another ABI is killed."""
    from handler.recognition import seccomp

    table, pid = seccomp.ARCHITECTURES[machine], 4242
    instructions = seccomp.program(machine, pid)
    verdict = lambda nr, arg0=0, arch=table["audit"]: run_filter(instructions, arch, nr, arg0)  # noqa: E731
    assert all(verdict(nr) == seccomp.DENY for nr in table["deny"])
    assert all(verdict(nr, pid) == verdict(nr, 0) == seccomp.ALLOW for nr in table["self_only"])
    assert all(verdict(nr, pid + 1) == seccomp.DENY for nr in table["self_only"])
    assert verdict(table["clone"], seccomp.CLONE_THREAD | 0x3D0F00) == seccomp.ALLOW
    assert verdict(table["clone"], 0x11) == seccomp.DENY  # fork's flags: SIGCHLD
    assert verdict(table["clone3"]) == seccomp.MISSING
    assert verdict(0) == verdict(1) == verdict(63) == seccomp.ALLOW  # read, write, uname…
    assert verdict(0, arch=0x40000003) == seccomp.KILL  # i386 on x86_64, or any other ABI


def test_a_worker_that_lies_or_drips_its_answer_is_held_to_its_bounds(doubles, grace_hopper: bytes) -> None:
    """A subverted worker answering behind its decoder's back: a refusal whose status is a list (once
    an exception out of ``decode`` that lost its whole batch) and a well-formed answer dripped a
    byte every 50 ms (once read with no bound but each ``recv``'s). Only its own image is refused."""
    results = doubles.decode([grace_hopper, decode_doubles.LIE, decode_doubles.DRIP, grace_hopper], LIMITS)
    assert results[0].shape == results[3].shape == (224, 224, 3)
    assert "stopped its decoder" in costly(results[1])
    assert "takes longer than 600 ms" in costly(results[2])
