"""The one training loop every model kind runs.

A model kind supplies a step function (one optimisation step, returning its loss terms) and,
if it needs them, an `after_step` hook (validation grids, evaluation, checkpoints). The loop
owns what they all share: the step and wall-clock budgets, the progress bar, the logged
scalars, and SIGTERM or Ctrl-C, which end the loop cleanly (`interrupted`) so the caller can
save what it has instead of losing it.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

StepFn = Callable[[], dict[str, float]]


@dataclass
class LoopResult:
    steps: int                # the step count at the end (a resumed run counts its earlier steps)
    seconds: float            # wall-clock time of this loop
    last_losses: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False  # SIGTERM or Ctrl-C ended it

    def steps_per_second(self, start_step: int = 0) -> float:
        return (self.steps - start_step) / max(self.seconds, 1e-9)


class StepLoop:
    """Steps until `max_steps` (counting from `start_step`) or `max_minutes` of wall clock run out.

    `shown` names the loss terms on the progress bar (all when None); every term goes to
    `writer` (a TensorBoard SummaryWriter or anything with add_scalar) each `logging_steps`.
    `stop_everywhere(flag)` turns one process's wish to stop into the decision of all of them
    (distributed runs: every process must take the same number of steps).
    """

    def __init__(self, *, max_steps: int, max_minutes: float | None, name: str, progress: bool = True, logging_steps: int = 10,
                 start_step: int = 0, shown: tuple[str, ...] | None = None, writer=None,
                 stop_everywhere: Callable[[bool], bool] = bool) -> None:
        self.max_steps, self.name, self.progress = max_steps, name, progress
        self.budget = max_minutes * 60 if max_minutes else math.inf
        self.logging_steps, self.shown, self.writer = logging_steps, shown, writer or NullWriter()
        self.step = self.start_step = start_step
        self.stop_everywhere = stop_everywhere
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def fraction_done(self) -> float:
        """How much of the run is spent, by whichever budget runs out first (0 to 1): for schedules."""
        by_steps = (self.step - self.start_step) / max(1, self.max_steps - self.start_step)
        by_time = self.elapsed() / self.budget if math.isfinite(self.budget) else 0.0
        return min(1.0, max(by_steps, by_time))

    def run(self, step_fn: StepFn, *, after_step: Callable[[int], None] | None = None) -> LoopResult:
        """Run `step_fn` until a budget is spent; `after_step(step)` follows every step."""
        self.started = time.perf_counter()
        losses: dict[str, float] = {}
        interrupted = False
        description = self.name if self.budget == math.inf else f"{self.name} (max {self.budget / 60:g} min)"
        bar = tqdm(total=self.max_steps, initial=self.step, desc=description, disable=not self.progress, dynamic_ncols=True)
        with sigterm_as_interrupt():
            try:
                while self.step < self.max_steps and not self.stop_everywhere(self.elapsed() >= self.budget):
                    losses = step_fn()
                    self.step += 1
                    bar.update(1)
                    if self.step % self.logging_steps == 0:
                        self._log(bar, losses)
                    if after_step is not None:
                        after_step(self.step)
            except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see sigterm_as_interrupt)
                interrupted = True
            finally:
                bar.close()
        return LoopResult(self.step, self.elapsed(), losses, interrupted)

    def _log(self, bar, losses: dict[str, float]) -> None:
        rate = (self.step - self.start_step) / max(self.elapsed(), 1e-9)
        shown = {k: f"{v:.3f}" for k, v in losses.items() if self.shown is None or k in self.shown}
        bar.set_postfix(shown | {"steps/s": f"{rate:.2f}"})
        for name, value in losses.items():
            self.writer.add_scalar(f"train/{name}", value, self.step)
        self.writer.add_scalar("train/steps_per_second", rate, self.step)


def tensorboard_writer(folder: Path):
    """A SummaryWriter into `folder`, or a writer to nowhere when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional at run time
        return NullWriter()
    return SummaryWriter(str(folder))


class NullWriter:
    def add_scalar(self, *args, **kwargs) -> None: ...
    def add_image(self, *args, **kwargs) -> None: ...
    def close(self) -> None: ...


@contextmanager
def sigterm_as_interrupt():
    """While training, SIGTERM (a scheduler, `kill`, a container stop) acts like Ctrl-C: the loop
    ends and the caller saves what it has. Only the main thread can take signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
