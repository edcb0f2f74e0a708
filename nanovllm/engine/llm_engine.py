"""LLMEngine: requests in, one scheduled step at a time, outputs out.

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
                       _record: core/events.step_record   -> StepRecord, to every observer

Overlap scheduling (``step_overlapped``, what ``LLM.generate`` uses when
``config.overlap_scheduling``) runs the same calls pipelined, so the host's work hides behind the
device's. Its core is ``_overlap_loop(last) -> ongoing``, in mini-sglang's shape::

    schedule + launch the next step N+1    (step N still running on the device; its sampled
                                            tokens are placeholders on the host, and the runner
                                            copies them into N+1's inputs on the device)
    finish the last step N                 -> StepRecord of step N, to the observers
    advance N+1, return it as ongoing      -> N+1 is the step in flight

``_in_flight`` is the one place that holds the step launched and not yet finished. Every call of
``step()`` or ``step_overlapped()`` finishes exactly one step (``step_overlapped``'s first call
only launches), and every StepRecord carries its own step's tokens. ``step()`` never leaves a step
in flight: the workbench's Step and Run buttons use it, so what they show is the step just run.
The cases where a step cannot overlap the next are named in one place, ``_must_finish_first``.

Errors: an exception from preparing or launching a step (the engine's own: the model, a kernel, a
worker) abandons the step and is raised as ``StepError``, which ``LLM.generate`` retries. The
caller's code is never retried nor swallowed: an exception raised by a signal handler while a step
runs (a watchdog's TimeoutError) is raised as itself, and an observer's exception is raised once
the step is complete (the other observers still see the record); the engine stays usable.

The engine owns no decision of its own: the scheduler decides admissions, preemptions and finishes
and writes each fact once (tokens, events, first-token and finish times); observers (metrics, the
recorder, the workbench) only read StepRecords. All state lives on the instance (sequence ids,
cache, workers), so two engines in one process never collide. ``close()`` is idempotent and also
runs on garbage collection and at exit.
"""

from __future__ import annotations

import functools
import signal
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanovllm.config import Config
from nanovllm.engine.core.batch import ScheduledBatch, StepOutcome
from nanovllm.engine.core.block_manager import BlockManager
from nanovllm.engine.core.detokenizer import StopChecker
from nanovllm.engine.core.events import StepRecord, StepTiming, step_record
from nanovllm.engine.core.scheduler import Scheduler
from nanovllm.engine.core.sequence import FinishReason, Sequence, SequenceStatus
from nanovllm.engine.observe import html  # noqa: F401  (attaches core's notebook tables)
from nanovllm.engine.observe.metrics import MetricsCollector
from nanovllm.engine.observe.snapshot import EngineSnapshot, take_snapshot
from nanovllm.engine.requests import RequestTable, check_request, new_sequences
from nanovllm.engine.runner.executor import Executor, Launched
from nanovllm.engine.runner.inputs import prepare_inputs
from nanovllm.errors import (
    EngineClosedError,
    ModelLoadError,
    StepError,
    UnknownRequestError,
)
from nanovllm.models import check_supported
from nanovllm.outputs import RequestOutput
from nanovllm.sampling_params import SamplingParams

Prompt = (
    str | list[int] | dict[str, Any]
)  # text, token ids, {"prompt": ...} / {"prompt_token_ids": ...}
Observer = Callable[[StepRecord], None]


Record = StepRecord | None  # a call's record; None when it finished no step


def _observed(method):
    """An engine method that hands records to the observers: an observer's exception (the
    caller's code) is raised when the method returns, with its step complete."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        finally:
            error, self._observer_error = self._observer_error, None
            if error is not None:
                raise error

    return wrapper


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


class LLMEngine:
    def __init__(self, model: str | Path, **config: Any):
        cfg = Config.from_model(model, **config)
        check_supported(cfg.spec.architecture)
        # The tokenizer loads on a thread while the executor builds the model: transformers'
        # imports and the tokenizer's files are seconds of file-system work, which the weights'
        # load and the kernels' compile leave time for.
        with ThreadPoolExecutor(1, thread_name_prefix="nanovllm-tokenizer") as pool:
            tokenizer = pool.submit(_load_tokenizer, cfg.model)
            self.executor: Executor = make_executor(cfg)
        self._finalizer = weakref.finalize(self, self.executor.close)
        try:
            self.tokenizer = tokenizer.result()
            cfg = cfg.with_num_blocks(self.executor.num_kvcache_blocks)
        except Exception:
            self._finalizer()
            raise
        self.config = cfg
        self.block_manager = BlockManager(
            cfg.num_kvcache_blocks, cfg.kvcache_block_size, cfg.enable_prefix_caching
        )
        self.scheduler = Scheduler(
            self.block_manager,
            max_num_seqs=cfg.max_num_seqs,
            max_num_batched_tokens=cfg.max_num_batched_tokens,
            max_model_len=cfg.max_model_len,
            eos_token_ids=cfg.eos_token_ids,
            stop_checker=StopChecker(self.tokenizer),
        )
        self.sequences: dict[int, Sequence] = {}  # unfinished, and finished but not yet collected
        self.requests = RequestTable(self.sequences)  # request id -> its samples' sequences
        self._next_id = 0
        self._in_flight: InFlightStep | None = None  # overlap scheduling's step on its way
        self._last_finish = 0.0  # time.perf_counter() when the last step finished
        self._observers: list[Observer] = []
        self._observer_error: Exception | None = None  # raised by _observed once the step is done
        self.metrics = MetricsCollector()
        self.subscribe(self.metrics.on_step)

    # ---- lifecycle -------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        """Free workers, device memory and shared memory. Safe to call more than once."""
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_open(self) -> None:
        if self.closed:
            raise EngineClosedError("this engine was closed; create a new LLM to go on")

    # ---- requests --------------------------------------------------------------------------------
    def add_request(self, prompt: Prompt, params: SamplingParams | None = None) -> int:
        """Queue one request; returns its id (that of its first sample). Raises ``RequestError``
        for bad input (nothing queued)."""
        self._check_open()
        return self._enqueue(*self._validate(prompt, params))

    def _enqueue(
        self, token_ids: list[int], params: SamplingParams, prompt: str | None = None
    ) -> int:
        """Queue a validated request: ``params.n`` sequences (see engine/requests.py)."""
        seqs = new_sequences(self._next_id, token_ids, params, self.config.eos_token_ids)
        self._next_id += len(seqs)
        now = time.perf_counter()
        request_id = self.requests.add(prompt, seqs)
        for seq in seqs:
            seq.arrival_time = now
            self.scheduler.add(seq)
        return request_id

    def _validate(
        self, prompt: Prompt, params: SamplingParams | None
    ) -> tuple[list[int], SamplingParams, str | None]:
        params = self.get_default_sampling_params() if params is None else params
        return check_request(prompt, params, self.tokenizer, self.config)

    def get_default_sampling_params(self) -> SamplingParams:
        """vLLM's: a new ``SamplingParams`` with the checkpoint's defaults (``generation_config``:
        its generation_config.json's temperature, top_k, top_p, penalties, max_new_tokens), for
        the caller to change before use; what a request without sampling params gets."""
        return SamplingParams(**dict(self.config.sampling_defaults))

    def abort(self, request_id: int) -> None:
        """Stop a request (all its samples; or one sample, by its sequence id) now; its blocks are
        freed and it finishes with reason "abort"."""
        for seq in self.requests.sequences_of(request_id):
            if not seq.is_finished:
                self.scheduler.abort(seq, FinishReason.ABORT)

    def fail_request(self, request_id: int, error: str) -> None:
        """Finish a request as failed (reason "error"); ``LLM.generate`` does this to a request
        whose steps keep raising."""
        seq = self._get(request_id)
        if not seq.is_finished:
            seq.error = error
            self.scheduler.abort(seq, FinishReason.ERROR)

    def _get(self, request_id: int) -> Sequence:
        try:
            return self.sequences[request_id]
        except KeyError:
            raise UnknownRequestError(
                f"no request with id {request_id!r} (finished ones are "
                "forgotten once their output is collected)"
            ) from None

    def has_unfinished(self) -> bool:
        return self.scheduler.has_unfinished()

    def get_output(self, request_id: int, *, pop: bool = True) -> RequestOutput:
        """The ``RequestOutput`` of a finished request (by default, forgetting it)."""
        return self.requests.collect(request_id, self.tokenizer, pop)

    def is_request_finished(self, request_id: int) -> bool:
        """Whether every sample of the request has finished."""
        return all(s.is_finished for s in self.requests.sequences_of(request_id))

    def request_sequences(self, request_id: int) -> list[Sequence]:
        """The sequences of a request: one per sample."""
        return self.requests.sequences_of(request_id)

    def forget(self, request_id: int) -> None:
        """Abort what is unfinished of a request and drop it, output and all (no-op if unknown)."""
        if request_id in self.requests:
            self.abort(request_id)
            self.requests.drop(request_id)

    # ---- observers -------------------------------------------------------------------------------
    def subscribe(self, callback: Observer) -> Callable[[], None]:
        """Call ``callback(record)`` after every step; returns a function that unsubscribes."""
        self._observers.append(callback)
        return lambda: self._observers.remove(callback) if callback in self._observers else None

    def _notify(self, record: StepRecord) -> None:
        for callback in list(self._observers):
            try:
                callback(record)
            except Exception as e:  # every observer sees the record; the first error is raised
                if self._observer_error is None:
                    self._observer_error = e

    # ---- stepping --------------------------------------------------------------------------------
    @_observed
    def step(self) -> StepRecord:
        """Schedule and run one step, and return its record; nothing is left in flight (a step
        still in flight from ``step_overlapped`` is finished instead, and its record returned).

        If the forward raises, the step is abandoned: no sequence advances (the same tokens are
        computed again next step), and the scheduler's decisions stand (admissions, preemptions,
        the blocks it allocated), so the cache stays consistent. ``StepError`` is raised with the
        step's context, after the failed step's record reached the observers."""
        self._check_open()
        if self._in_flight is not None:
            return self.drain()
        step = self._launch()
        if step.error is not None:
            self._raise_abandoned(step)
        self.scheduler.advance(step.batch)
        return self._finish(step)

    @_observed
    def step_overlapped(self) -> StepRecord | None:
        """Launch the next step, then finish the step in flight (see the module docstring) and
        return its record; None when the call finished nothing (the first one launches only).
        With ``config.overlap_scheduling`` off this is ``step()``. ``drain()`` (or ``step()``)
        finishes the last step in flight."""
        self._check_open()
        if not self.config.overlap_scheduling:
            return self.step()
        last, self._in_flight = self._in_flight, None
        self._in_flight, record = self._overlap_loop(last)
        return record

    def _overlap_loop(self, last: InFlightStep | None) -> tuple[InFlightStep | None, Record]:
        """One turn of the overlap loop (mini-sglang's ``overlap_loop(last) -> ongoing``): schedule
        the next step and launch it, finish the last one while the next runs, and return the one
        now in flight with the last one's record (None: nothing finished)."""
        record = None
        if last is not None and self._must_finish_first(last):
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

    def _must_finish_first(self, step: InFlightStep) -> str | None:
        """Why ``step`` has to be finished before the next step is scheduled, or None when the next
        may run behind it. The cases that cannot overlap, all of them:

        - "blocking collect": collecting ``step`` would wait for the next step too (it reads
          log-probabilities or MoE expert counts back with blocking copies; a tensor-parallel
          WorkerGroup runs each step to the end at launch);
        - "nothing ahead": no running sequence needs a token after its pending one (the next step
          would compute nothing; a finish on max_tokens is known already);
        - "penalties": a sample row has penalties, and the next step counts its tokens on the host.

        Besides these, the first call only launches (nothing is in flight), a step that schedules
        nothing is finished at once, and with ``overlap_scheduling`` off every call is ``step()``.
        """
        if step.launched is not None and not step.launched.overlappable:
            return "blocking collect"
        if not self.scheduler.can_schedule_ahead():
            return "nothing ahead"
        if any(step.batch.seqs[i].params.has_penalties for i in step.batch.sample_rows):
            return "penalties"
        return None

    @_observed
    def drain(self) -> StepRecord | None:
        """Finish the step in flight, if any, and return its record."""
        self._check_open()
        last, self._in_flight = self._in_flight, None
        return None if last is None else self._finish(last)

    def _launch(self) -> InFlightStep:
        """Schedule the next step and hand it to the executor, without waiting for its tokens.
        An exception from preparing or launching is kept in the step's ``error``."""
        t0 = time.perf_counter()
        batch = self.scheduler.schedule()
        t1 = time.perf_counter()
        step = InFlightStep(batch, None, t1 - t0, 0.0, t0)
        if batch.seqs:
            try:
                inputs = prepare_inputs(batch, self.config.kvcache_block_size)
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

    @_observed
    def flush_events(self) -> StepRecord | None:
        """Hand the events since the last step (requests added or aborted) to the observers now,
        in an idle record that schedules nothing; None when there were none."""
        self._check_open()
        if not self.scheduler.has_pending_events():
            return None
        batch = self.scheduler.idle_batch()
        return self._record(batch, self.scheduler.postprocess(batch, None), StepTiming())

    def _record(
        self,
        batch: ScheduledBatch,
        outcome: StepOutcome,
        timing: StepTiming,
        *,
        error: str | None = None,
        expert_tokens=None,
    ) -> StepRecord:
        """The step's record (``core/events.py:step_record``), handed to every observer."""
        record = step_record(
            batch,
            outcome,
            self.block_manager.usage(),
            timing,
            error=error,
            expert_tokens=expert_tokens,
        )
        self._last_finish = record.time
        self._notify(record)
        return record

    def reset_prefix_cache(self) -> int:
        """Evict every cached prefix block not in use (e.g. between benchmark runs)."""
        return self.block_manager.reset_prefix_cache()

    def check_integrity(self) -> list[str]:
        """Every violated cache/scheduler invariant, as readable strings (empty when healthy)."""
        return self.scheduler.check_integrity()

    def snapshot(self, check: bool = False) -> EngineSnapshot:
        """Blocks and sequences right now, as arrays; ``check=True`` adds check_integrity()'s
        result."""
        return take_snapshot(self, check)

    def get_metrics(self) -> dict[str, Any]:
        return self.metrics.summary()

    def reset_metrics(self) -> None:
        self.metrics.reset()


def make_executor(config: Config) -> Executor:
    """The executor for ``config``: a ModelRunner in this process for one rank, else a WorkerGroup
    of spawned ranks. Chosen here, above runner/ and parallel/ (runner never imports parallel)."""
    if config.tensor_parallel_size == 1:
        from nanovllm.engine.runner.model_runner import ModelRunner

        return ModelRunner(config)
    from nanovllm.engine.parallel.worker_group import WorkerGroup

    return WorkerGroup(config)


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


def _load_tokenizer(path: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as e:
        raise ModelLoadError(f"cannot load a tokenizer from {path!r}: {e}") from e


__all__ = ["LLMEngine", "SequenceStatus"]
