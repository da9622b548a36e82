"""The shared training loop: budgets, hooks, logging, and interruptions that end it cleanly."""

import os
import signal
import time

import pytest

from limner.training.loop import StepLoop


class RecordingWriter:
    def __init__(self):
        self.scalars = []

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, step))


def test_runs_to_the_step_budget_and_calls_the_hook_after_each_step():
    seen = []
    loop = StepLoop(max_steps=5, max_minutes=None, name="t", progress=False)
    result = loop.run(lambda: {"loss": float(loop.step)}, after_step=seen.append)
    assert (result.steps, result.interrupted) == (5, False)
    assert seen == [1, 2, 3, 4, 5]
    assert result.last_losses == {"loss": 4.0}  # the loss of the fifth step, taken at step count 4


def test_a_resumed_loop_counts_on_from_its_start_step():
    loop = StepLoop(max_steps=5, max_minutes=None, name="t", progress=False, start_step=3)
    assert loop.run(lambda: {}).steps == 5


def test_the_time_budget_stops_it():
    loop = StepLoop(max_steps=10**9, max_minutes=0.1 / 60, name="t", progress=False)  # 100 ms
    result = loop.run(lambda: time.sleep(0.01) or {})
    assert 3 <= result.steps <= 11 and 0.1 <= result.seconds < 0.5  # about ten 10 ms steps, then the budget ends it


def test_fraction_done_follows_whichever_budget_runs_out_first():
    loop = StepLoop(max_steps=10, max_minutes=None, name="t", progress=False)
    fractions = []
    loop.run(lambda: fractions.append(loop.fraction_done()) or {})
    assert fractions == pytest.approx([i / 10 for i in range(10)])
    timed = StepLoop(max_steps=10**9, max_minutes=1e-6, name="t", progress=False)
    timed.run(lambda: {})
    assert timed.fraction_done() == 1.0


def test_losses_are_logged_every_logging_steps():
    writer = RecordingWriter()
    StepLoop(max_steps=6, max_minutes=None, name="t", progress=False, logging_steps=3, writer=writer).run(lambda: {"loss": 1.0})
    assert ("train/loss", 3) in writer.scalars and ("train/loss", 6) in writer.scalars
    assert not any(step in (1, 2, 4, 5) for _, step in writer.scalars)


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_an_interruption_ends_the_loop_cleanly(how):
    loop = StepLoop(max_steps=100, max_minutes=None, name="t", progress=False)
    handler_before = signal.getsignal(signal.SIGTERM)

    def step():
        if loop.step == 4:
            if how == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
            else:
                raise KeyboardInterrupt
        return {"loss": 0.5}

    result = loop.run(step)
    assert result.interrupted and result.steps == 4
    assert signal.getsignal(signal.SIGTERM) == handler_before  # the loop's own handler is gone again


def test_every_process_stops_together():
    asked = []

    def stop_everywhere(flag):
        asked.append(flag)
        return len(asked) > 2  # another process has run out of time

    result = StepLoop(max_steps=100, max_minutes=None, name="t", progress=False, stop_everywhere=stop_everywhere).run(lambda: {})
    assert result.steps == 2
