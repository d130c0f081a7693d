"""The host loop's order of things (``training.host_loop.run_loop``) on a toy task whose
state is a counter: what is evaluated, recorded and checkpointed, in which order."""

from __future__ import annotations

import numpy as np

from hrl_sarp_jax.training.host_loop import run_loop


class Ranked:
    """The two calls run_loop makes on ``RankedCheckpoints``."""

    def __init__(self, log: list) -> None:
        self.log = log

    def set_start(self, episodes: np.ndarray) -> None:
        self.log.append(("set_start", float(episodes[0, 0])))

    def finish(self) -> None:
        self.log.append(("finish",))


class CounterTask:
    """State = units done; a unit adds ``step``; validation every ``every`` units (by the
    progress it reaches) and at the limit; an evaluation's record is the state itself."""

    def __init__(self, log: list, step: int = 1, every: int = 1) -> None:
        self.log, self.step, self.every = log, step, every

    def progress(self, state: int) -> int:
        return state

    def train(self, state: int) -> tuple[int, str]:
        self.log.append(("train", state))
        return state + self.step, f"trained to {state + self.step}"

    def due(self, done: int, limit: int) -> bool:
        return done % self.every == 0 or done >= limit

    def evaluate(self, state: int) -> tuple[int, np.ndarray]:
        self.log.append(("evaluate", state))
        return state, np.full((1, 2), 10.0 + state)

    def record(self, state: int, done: int, trained, rec: int, episodes: np.ndarray) -> None:
        self.log.append(("record", done, trained, rec))


def run(state: int, limit: int, evaluate_start: bool, **task_kwargs) -> tuple[list, tuple]:
    log: list = []
    out = run_loop(CounterTask(log, **task_kwargs), Ranked(log), state, limit=limit,
                   evaluate_start=evaluate_start)
    return log, (out[0], out[1], out[2].tolist())


def test_a_fresh_run_records_its_start_then_every_due_unit():
    log, out = run(0, 4, True, every=2)
    assert log == [
        ("evaluate", 0), ("set_start", 10.0), ("record", 0, None, 0),
        ("train", 0), ("train", 1), ("evaluate", 2), ("record", 2, "trained to 2", 2),
        ("train", 2), ("train", 3), ("evaluate", 4), ("record", 4, "trained to 4", 4),
        ("finish",),
    ]
    assert out == (4, 4, [[14.0, 14.0]])


def test_the_last_unit_is_always_validated_and_units_may_overshoot_the_limit():
    log, out = run(0, 5, False, step=2, every=4)
    assert [e for e in log if e[0] != "train"] == [
        ("evaluate", 4), ("record", 4, "trained to 4", 4),
        ("evaluate", 6), ("record", 6, "trained to 6", 6), ("finish",)]
    assert out[0] == 6


def test_a_resume_keeps_the_saved_start_and_continues_from_its_progress():
    log, out = run(3, 5, False)
    assert log == [("train", 3), ("evaluate", 4), ("record", 4, "trained to 4", 4),
                   ("train", 4), ("evaluate", 5), ("record", 5, "trained to 5", 5),
                   ("finish",)]
    assert out == (5, 5, [[15.0, 15.0]])


def test_a_run_resumed_at_its_limit_trains_nothing_and_evaluates_the_restored_state():
    log, out = run(5, 5, False)
    assert log == [("finish",), ("evaluate", 5)]
    assert out == (5, 5, [[15.0, 15.0]])


def test_no_start_evaluation_when_there_is_nothing_to_train():
    log, out = run(0, 0, True)
    assert log == [("finish",), ("evaluate", 0)]
    assert out == (0, 0, [[10.0, 10.0]])
