"""``make rollout-demo``: what a rollout would decide, without AWS.

1. **The pre-traffic gate** (``hooks/pre_traffic.py``, unchanged) against the real function serving
   the good model, then each broken build of it and a slow one whose manifest claims the good
   build's cost (``devtools/bad_builds.py``), all held to the good model's check set, as synth puts
   it in the hook's asset, and to the cost synth derives from the good build's record. Each build
   runs in an execution environment of its own (``localaws.environment``), whose figures stand in
   for Lambda's REPORT line, with the good build serving as alias live.
2. **The rollback alarms** (``infra/components/rollout_alarms.py``) over a simulated canary: a new
   version that passed the gate but answers 500 to every third request (a bug the check photos did
   not reach), and a good one. Each minute the new version gets its 10 % of the traffic through the
   real function; its EMF blobs (stdout, as in Lambda) are read back and summed per minute by their
   ``version`` dimension, with its invocations and crashes as Lambda counts them; the alarm rule
   (thresholds and ``rollbackMinutes`` from ``cdk.json``) decides each minute.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import numpy as np

from handler.recognition.model import Classifier, Prediction
from localaws.context import LocalContext

CANARY_MINUTES = 5
REQUESTS_PER_MINUTE = 30  # the new version's 10 % of 300 requests a minute
CLOUDWATCH_DELAY_MINUTES = 1  # about: a minute's datapoint is evaluated about a minute after it ends


class EveryThirdFails(Classifier):
    """The good model, but its third, sixth, ... call raises: a bug that answers 500s."""

    def __init__(self, base: Classifier) -> None:
        super().__init__(base._backend, base._labels, base.info, base.manifest)

    def assess(self, batch: np.ndarray, top_k: int = 5) -> list[tuple[list[Prediction], bool]]:
        if self.calls % 3 == 2:
            self.calls += 1
            raise RuntimeError("a bug in the new version (injected)")
        return super().assess(batch, top_k)


def run(model_dir: Path | None, out: TextIO) -> int:
    from devtools import bad_builds
    from handler.recognition import model
    from infra.settings import Settings
    from training import checkset

    model_dir = Path(model_dir or os.environ.get("MODEL_DIR") or "build/model")
    settings = Settings()  # its defaults are cdk.json's (tests hold them equal)
    try:
        checkset.read(model_dir)
    except checkset.CheckSetError as error:
        print(f"rollout-demo: {error}", file=out)
        return 2
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "CRITICAL")  # the injected bug would log each 500
    os.environ.pop("POWERTOOLS_DEV", None)
    with _sandbox(model_dir) as sandbox, tempfile.TemporaryDirectory() as scratch:
        print(f"1. The pre-traffic gate: each build held to {model_dir}/check and its cost\n", file=out)
        builds = {"the good build": model_dir}
        for name, make in {**bad_builds.BUILDS, **bad_builds.COSTLY_BUILDS}.items():
            print(f"   building '{name}' ...", file=out, flush=True)
            builds[name] = make(
                model_dir, Path(scratch) / name.replace(" ", "-").replace(",", "").replace("'", "")
            )
        with _quiet_environments():  # the gate's: a verdict each, no EMF blobs
            rows = _gate_rows(builds, model_dir, settings)
        os.environ["POWERTOOLS_METRICS_DISABLED"] = "false"  # the canary is read from its metrics
        print(file=out)
        for name, decision, reason in rows:
            print(f"   {name:<22} {decision:<14} {reason}", file=out)
        good = model.load_classifier(model_dir, "litert", threads=2)
        print(
            f"\n2. The rollback alarms over a {CANARY_MINUTES}-minute canary ({_rule(settings)})\n", file=out
        )
        for name, classifier in (("a version with a bug", EveryThirdFails(good)), ("a good version", good)):
            function = _function(model_dir, classifier, sandbox, "9")
            print(f"   {name}:", file=out)
            for line in _canary(function, model_dir, settings):
                print(f"     {line}", file=out)
    bad_stopped = all(decision == "STOPPED" for name, decision, _ in rows[1:])
    return 0 if rows[0][1] == "takes traffic" and bad_stopped else 1


@contextlib.contextmanager
def _quiet_environments():
    """Execution environments started meanwhile publish no metrics and warn of none."""
    saved = {key: os.environ.get(key) for key in ("POWERTOOLS_METRICS_DISABLED", "PYTHONWARNINGS")}
    os.environ.update(POWERTOOLS_METRICS_DISABLED="true", PYTHONWARNINGS="ignore::UserWarning")
    try:
        yield
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


@contextlib.contextmanager
def _sandbox(model_dir: Path):
    from handler import config
    from handler.runtime import start_sandbox

    with start_sandbox(config.read_settings({"MODEL_DIR": str(model_dir)})) as sandbox:
        yield sandbox


def _function(model_dir: Path, classifier: Classifier, sandbox, version: str):
    """The function as version ``version`` of alias live would run it (its signals carry it)."""
    from handler import config
    from handler.function import Function
    from handler.runtime import Runtime

    os.environ["AWS_LAMBDA_FUNCTION_VERSION"] = version
    settings = config.read_settings({"MODEL_DIR": str(model_dir)})
    return Function(Runtime.with_classifier(settings, classifier, None, sandbox))


def _gate_rows(builds: dict[str, Path], model_dir: Path, settings) -> list[tuple[str, str, str]]:
    """Each build as a new version in an execution environment of its own (so Lambda's figures are
    its own), gated with the good build serving as the live version."""
    from handler import config
    from localaws.environment import FunctionProcess

    def environment(folder: Path) -> FunctionProcess:
        return FunctionProcess(
            config.read_settings({"MODEL_DIR": str(folder), "POWERTOOLS_LOG_LEVEL": "CRITICAL"})
        )

    rows, live = [], environment(model_dir)
    try:
        for name, folder in builds.items():
            new = live if folder == model_dir else environment(folder)
            try:
                verdict = gate(new, live, model_dir, settings)
            finally:
                if new is not live:
                    new.close()
            rows.append((name, "takes traffic" if verdict.passed else "STOPPED", verdict.reason))
    finally:
        live.close()
    return rows


def _invoker(function):
    """``function`` (an execution environment) as the hook invokes a version: answer and figures."""
    from localaws.environment import FunctionFailed

    def invoke(event: dict) -> tuple[dict, dict]:
        try:
            answer = function(event, LocalContext())
        except FunctionFailed as error:
            answer = {"statusCode": 500, "body": json.dumps({"errorMessage": str(error)})}
        return answer, dict(function.last_report)

    return invoke


def gate(new, live, model_dir: Path, settings):
    """The hook's verdict on ``new``, as synth would configure it for ``model_dir``'s deployment."""
    from hooks import pre_traffic
    from infra import model_cost

    expected = json.loads((model_dir / "manifest.json").read_text())
    need = model_cost.need(model_cost.recorded(model_dir), settings.memory_size, settings.model_cost_headroom)
    gate = pre_traffic.Gate(
        model={"name": expected["name"], "version": expected["version"]},
        accuracy_tolerance=settings.quality_gate_accuracy_tolerance,
        probability_tolerance=settings.quality_gate_probability_tolerance,
        cost=pre_traffic.cost_from(model_cost.gate_environment(settings, need)),
    )
    return pre_traffic.check(_invoker(new), gate, model_dir / "check", live=_invoker(live))


def _rule(settings) -> str:
    return (
        f"ApiRolloutFailureRate: >= {settings.rollback_error_rate_percent:g} % of the new version's requests "
        f"failed, {settings.rollback_minutes} minutes in a row"
    )


def _canary(function, model_dir: Path, settings) -> list[str]:
    """Minute by minute: the new version's traffic, what its signals sum to, the alarm's state."""
    from hooks import pre_traffic

    template = json.loads(pre_traffic.EVENT.read_text())
    photos = sorted((model_dir / "check").glob("*.jpg"))
    lines, breaching = [], 0
    for minute in range(CANARY_MINUTES):
        invocations, crashed, failed = _minute(function, template, photos)
        rate = 100 * (failed + crashed) / invocations
        breaching = breaching + 1 if rate >= settings.rollback_error_rate_percent else 0
        state = "ALARM" if breaching >= settings.rollback_minutes else "OK"
        lines.append(
            f"minute {minute}-{minute + 1}: {invocations} invocations, {failed} answered 5xx, "
            f"{crashed} crashed -> {rate:.0f} % -> {state}"
        )
        if state == "ALARM":
            at = minute + 1 + CLOUDWATCH_DELAY_MINUTES
            lines.append(
                f"=> at about {at} min: CodeDeploy stops the deployment, alias live is back on the old "
                f"version (the canary would have shifted all traffic at {CANARY_MINUTES} min)"
            )
            return lines
    lines.append(f"=> no alarm in {CANARY_MINUTES} minutes: CodeDeploy shifts all traffic to the new version")
    return lines


def _minute(function, template: dict, photos: list[Path]) -> tuple[int, int, int]:
    """One minute of the new version's traffic; its invocations and crashes (Lambda's count) and
    the sum of its ``AnswerFailed`` signal, read back from the EMF it printed."""
    from hooks import pre_traffic

    crashed, printed = 0, io.StringIO()
    with contextlib.redirect_stdout(printed):
        for index in range(REQUESTS_PER_MINUTE):
            event = pre_traffic.photo_event(template, photos[index % len(photos)].read_bytes(), 1)
            crashed += _invocation_failed(function.api_handler, event)
    return REQUESTS_PER_MINUTE, crashed, _signal_sum(printed.getvalue(), "AnswerFailed")


def _invocation_failed(handler: Callable, event: dict) -> int:
    try:
        handler(event, LocalContext())
    except Exception:  # Lambda's Errors: the invocation failed outright
        return 1
    return 0


def _signal_sum(printed: str, name: str) -> int:
    """The sum of metric ``name`` over the EMF blobs (one JSON object a line) that carry a version."""
    total = 0
    for line in printed.splitlines():
        with contextlib.suppress(ValueError):
            blob = json.loads(line)
            if isinstance(blob, dict) and "_aws" in blob and "version" in blob and name in blob:
                values = blob[name]
                total += sum(values) if isinstance(values, list) else values
    return int(total)
