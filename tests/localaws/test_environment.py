"""Execution environments as processes: why the local server needs them, and that they hold."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest
from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from handler import config
from localaws.context import LocalContext
from localaws.environment import EnvironmentLost, FunctionProcess
from localaws.events import rest_event
from tests.support import CAT_CLASSES, PHOTOS


def test_two_resolvers_in_one_process_share_the_event_they_serve() -> None:
    """Why an environment is a process: Powertools keeps the event being resolved on a class
    attribute, so a resolver serving in one thread reads the event another resolver of the same
    process started on. If this ever fails, Powertools isolates resolvers and threads would do."""
    first, second = APIGatewayRestResolver(), APIGatewayRestResolver()
    seen: list[str] = []

    @second.get("/second")
    def second_route():
        return {}

    @first.get("/first")
    def first_route():
        second.resolve(rest_event("GET", "/second"), LocalContext())  # another "thread", meanwhile
        seen.append(first.current_event.path)
        return {}

    first.resolve(rest_event("GET", "/first"), LocalContext())
    assert seen == ["/second"]


def _photo_event(name: str) -> dict:
    body = (PHOTOS / name).read_bytes()
    return rest_event("POST", "/predict", body=body, headers={"Content-Type": "application/octet-stream"})


@pytest.mark.slow
def test_environments_are_processes_of_their_own_and_answer_their_own_requests() -> None:
    """Two environments serving at once, each its own photo, ten times over: every answer is the
    photo's own; each runs in a process that is neither this one nor the other's."""
    import json

    settings = config.read_settings()
    environments = [FunctionProcess(settings), FunctionProcess(settings)]
    try:
        assert len({os.getpid(), *(environment.pid for environment in environments)}) == 3

        def top1s(environment: FunctionProcess, name: str) -> list[tuple[str, str]]:
            answers = []
            for _ in range(10):
                answer = environment(_photo_event(name), LocalContext())
                assert answer["statusCode"] == 200, answer
                answers.append((name, json.loads(answer["body"])["predictions"][0]["label"]))
            return answers

        with ThreadPoolExecutor(2) as pool:  # each environment serving its own photo, both at once
            served = pool.map(top1s, environments, ["grace_hopper.jpg", "cat.bmp"])
            answers = [answer for answers in served for answer in answers]
        expected = {"grace_hopper.jpg": {"military_uniform"}, "cat.bmp": CAT_CLASSES}
        assert all(label in expected[name] for name, label in answers), answers

        environments[1].timeout_s = 0.001  # Lambda's timeout, reached: the environment is ended
        with pytest.raises(EnvironmentLost, match="timed out"):
            environments[1](_photo_event("cat.bmp"), LocalContext())
        environments[1]._process.join(5)
        assert not environments[1]._process.is_alive()

        os.kill(environments[0].pid, signal.SIGKILL)  # a crash, as Lambda would see it
        with pytest.raises(EnvironmentLost):
            environments[0](_photo_event("cat.bmp"), LocalContext())
    finally:
        for environment in environments:
            environment.close()
