"""StepLoop: how one step is launched, finished and recorded, one at a time or overlapped.

::

    step():  _launch   Scheduler.schedule()               -> ScheduledBatch (+ its events)
                       prepare_inputs()                   -> StepInputs, host arrays (runner/)
                       executor.launch()                  (an Executor: ModelRunner, or the TP
                                                           WorkerGroup)
             Scheduler.advance(batch)                     its tokens computed, placeholders for
                                                          the samples
             _finish   executor.collect()                  -> SamplerOutput
                       Scheduler.postprocess(batch, out)  -> StepOutcome: tokens written, blocks
                                                          cached, every finish decided, times
                       _record: core/events.step_record   -> StepRecord, to ``notify``

Overlap scheduling (``step_overlapped``) runs the same calls pipelined, so the host's work hides
behind the device's. Its core is ``_overlap_loop(last) -> ongoing``, in mini-sglang's shape::

    schedule + launch the next step N+1    (step N still running on the device; its sampled
                                            tokens are placeholders on the host, and the runner
                                            copies them into N+1's inputs on the device)
    finish the last step N                 -> StepRecord of step N, to the observers
    advance N+1, return it as ongoing      -> N+1 is the step in flight

``in_flight`` is the one place that holds the step launched and not yet finished. Every call of
``step()`` or ``step_overlapped()`` finishes exactly one step (``step_overlapped``'s first call
only launches), and every StepRecord carries its own step's tokens. ``step()`` never leaves a step
in flight. The cases where a step cannot overlap the next are named in one place,
``must_finish_first``.

Errors: an exception from preparing or launching a step abandons it (its record still reaches
the observers; no sequence advances) and is raised as ``StepError``, unless a signal handler
raised it (the caller's code: raised as itself). The loop decides nothing: the scheduler does.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from nanovllm.engine.core.batch import ScheduledBatch, StepOutcome
from nanovllm.engine.core.block_manager import BlockManager
from nanovllm.engine.core.events import StepRecord, StepTiming, step_record
from nanovllm.engine.core.scheduler import Scheduler
from nanovllm.engine.runner.executor import Executor, Launched
from nanovllm.engine.runner.inputs import prepare_inputs
from nanovllm.errors import StepError

Record = StepRecord | None  # a call's record; None when it finished no step


@dataclass
class InFlightStep:
    """A step launched and not yet finished (its batch holds the events it will record), with
    its host times so far."""

    batch: ScheduledBatch
    launched: Launched | None  # None: nothing was scheduled
    schedule: float
    prepare: float
    started: float  # time.perf_counter() when its call began
    error: Exception | None = None  # preparing or launching it raised


class StepLoop:
    """Runs the scheduler's steps on ``executor``; hands each StepRecord to ``notify``."""

    def __init__(
        self,
        scheduler: Scheduler,
        executor: Executor,
        block_manager: BlockManager,
        block_size: int,
        notify: Callable[[StepRecord], None],
    ):
        self.scheduler, self.executor, self.block_manager = scheduler, executor, block_manager
        self.block_size = block_size
        self.notify = notify
        self.in_flight: InFlightStep | None = None  # overlap scheduling's step on its way
        self._last_finish = 0.0  # time.perf_counter() when the last step finished

    def step(self) -> StepRecord:
        """Finish the step in flight, if any; else schedule, run and finish one step."""
        if self.in_flight is not None:
            return self.drain()
        step = self._launch()
        if step.error is not None:
            self._raise_abandoned(step)
        self.scheduler.advance(step.batch)
        return self._finish(step)

    def step_overlapped(self) -> Record:
        """Launch the next step, finish the one in flight and return its record (None: the call
        finished nothing)."""
        last, self.in_flight = self.in_flight, None
        self.in_flight, record = self._overlap_loop(last)
        return record

    def drain(self) -> Record:
        """Finish the step in flight, if any, and return its record."""
        last, self.in_flight = self.in_flight, None
        return None if last is None else self._finish(last)

    def flush_events(self) -> Record:
        """An idle record of the events since the last step; None when there were none."""
        if not self.scheduler.has_pending_events():
            return None
        batch = self.scheduler.idle_batch()
        return self._record(batch, self.scheduler.postprocess(batch, None), StepTiming())

    def _overlap_loop(self, last: InFlightStep | None) -> tuple[InFlightStep | None, Record]:
        """One turn of the overlap loop (mini-sglang's ``overlap_loop(last) -> ongoing``): schedule
        the next step and launch it, finish the last one while the next runs, and return the one
        now in flight with the last one's record (None: nothing finished)."""
        record = None
        if last is not None and self.must_finish_first(last):
            record, last = self._finish(last), None
            if not self.scheduler.has_unfinished():
                return None, record
        ongoing = self._launch()  # schedule next, launch next
        if last is not None:
            record = self._finish(last)  # finish last
        if ongoing.error is not None:
            self._raise_abandoned(ongoing)
        self.scheduler.advance(ongoing.batch)
        if record is None and not ongoing.batch.seqs:
            return None, self._finish(ongoing)  # nothing to run: an idle step, as step() records
        return ongoing, record  # return ongoing

    def must_finish_first(self, step: InFlightStep) -> str | None:
        """Why ``step`` has to be finished before the next step is scheduled, or None when the next
        may run behind it. The cases that cannot overlap, all of them:

        - "blocking collect": collecting ``step`` would wait for the next step too (it reads
          log-probabilities or MoE expert counts back with blocking copies; a tensor-parallel
          WorkerGroup runs each step to the end at launch);
        - "nothing ahead": no running sequence needs a token after its pending one (the next step
          would compute nothing; a finish on max_tokens is known already);
        - "penalties": a sample row has penalties, and the next step counts its tokens on the host;
        - "speculation": speculative decoding is on, and the next step's drafts are proposed from
          this step's tokens (so speculation runs without overlap: each step is finished, then
          the next scheduled).

        Besides these, the first call only launches (nothing is in flight), a step that schedules
        nothing is finished at once, and with ``overlap_scheduling`` off every call is ``step()``.
        """
        if step.launched is not None and not step.launched.overlappable:
            return "blocking collect"
        if not self.scheduler.can_schedule_ahead():
            return "nothing ahead"
        if any(step.batch.seqs[i].params.has_penalties for i in step.batch.sample_rows):
            return "penalties"
        if self.scheduler.drafter is not None:
            return "speculation"
        return None

    def _launch(self) -> InFlightStep:
        """Schedule the next step and hand it to the executor, without waiting for its tokens.
        An exception from preparing or launching is kept in the step's ``error``."""
        t0 = time.perf_counter()
        batch = self.scheduler.schedule()
        t1 = time.perf_counter()
        step = InFlightStep(batch, None, t1 - t0, 0.0, t0)
        if batch.seqs:
            try:
                inputs = prepare_inputs(batch, self.block_size)
                step.prepare = time.perf_counter() - t1
                step.launched = self.executor.launch(inputs)
            except Exception as e:
                step.error = e
        return step

    def _finish(self, step: InFlightStep) -> StepRecord:
        """Collect a launched (and advanced) step's tokens, postprocess it, and record it."""
        out, run = (None, None) if step.launched is None else self.executor.collect(step.launched)
        t1 = time.perf_counter()
        outcome = self.scheduler.postprocess(step.batch, out)
        t2 = time.perf_counter()
        timing = StepTiming(
            schedule=step.schedule,
            prepare=step.prepare + (run.prepare if run else 0.0),
            forward=run.forward if run else 0.0,
            sample=run.sample if run else 0.0,
            postprocess=t2 - t1,
            # an overlapped step: the time since the step before it finished
            total=t2 - max(step.started, self._last_finish),
        )
        return self._record(step.batch, outcome, timing, expert_tokens=run and run.expert_tokens)

    def _raise_abandoned(self, step: InFlightStep):
        """Record a step whose preparation or launch raised (no sequence advanced), and raise:
        a ``StepError`` for the engine's own error, the caller's exception as itself."""
        error = self._abandon(step)
        if _raised_by_signal_handler(step.error):
            raise step.error
        raise error from step.error

    def _abandon(self, step: InFlightStep) -> StepError:
        """Record a step whose preparation or launch raised (no sequence advanced); returns the
        StepError to raise."""
        error = f"{type(step.error).__name__}: {step.error}"
        outcome = self.scheduler.postprocess(step.batch, None)  # nothing sampled: events only
        self._record(step.batch, outcome, StepTiming(schedule=step.schedule), error=error)
        batch, ids = step.batch, [s.seq_id for s in step.batch.seqs]
        return StepError(
            f"step {batch.step} ({batch.phase.value}, requests {ids}) failed: {error}; the "
            "step was abandoned (no request advanced; the next step computes the same tokens)",
            step=batch.step,
            request_ids=ids,
            phase=batch.phase.value,
        )

    def _record(
        self,
        batch: ScheduledBatch,
        outcome: StepOutcome,
        timing: StepTiming,
        *,
        error: str | None = None,
        expert_tokens=None,
    ) -> StepRecord:
        """The step's record (``core/events.py:step_record``), handed to ``notify``."""
        record = step_record(
            batch,
            outcome,
            self.block_manager.usage(),
            timing,
            error=error,
            expert_tokens=expert_tokens,
        )
        self._last_finish = record.time
        self.notify(record)
        return record


def _raised_by_signal_handler(error: BaseException) -> bool:
    """Whether a Python signal handler raised ``error`` (the caller's code: a watchdog's
    TimeoutError, say) while it interrupted the engine: its frame is in the traceback."""
    handlers = set()
    for signum in signal.valid_signals():
        try:
            handler = signal.getsignal(signum)
        except (OSError, ValueError):
            continue
        code = getattr(getattr(handler, "__func__", handler), "__code__", None)
        if code is not None:
            handlers.add(code)
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in handlers:
            return True
        tb = tb.tb_next
    return False
