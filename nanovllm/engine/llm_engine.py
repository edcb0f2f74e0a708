"""LLMEngine: requests in, one scheduled step at a time, outputs out.

::

    step():  Scheduler.schedule()                -> ScheduledBatch          (core/)
             prepare_inputs()                    -> StepInputs, host arrays (runner/inputs.py)
             executor.launch(), .collect()       -> SamplerOutput           (an Executor:
                                                                 ModelRunner, or the TP WorkerGroup)
             Scheduler.advance(batch)            its tokens computed, placeholders for the samples
             Scheduler.postprocess(batch, out)   tokens written, blocks cached, every finish decided
             StepRecord (+ scheduler.take_events()) -> returned, and handed to every observer

Overlap scheduling (``step_overlapped``, what ``LLM.generate`` uses when
``config.overlap_scheduling``) runs the same calls pipelined, so the host's work hides behind the
device's::

    call N+1:  schedule + prepare step N+1      (step N still running on the device; its sampled
               launch N+1                        tokens are placeholders on the host, and the
                                                 runner copies them into N+1's inputs on device)
               collect + postprocess step N     -> StepRecord of step N, to the observers
               advance step N+1                  -> N+1 is the step in flight

``_in_flight`` is the one place that holds the step launched and not yet finished. Every call of
``step()`` or ``step_overlapped()`` finishes exactly one step (``step_overlapped``'s first call
only launches), and every StepRecord carries its own step's tokens. ``step()`` never leaves a step
in flight: the workbench's Step and Run buttons use it, so what they show is the step just run.
A step is not overlapped with the next when collecting it would have to wait for the next (it
reads log-probabilities or expert counts back; the next step needs its tokens on the host for
penalties), or when no running sequence would still be scheduled.

Errors: an exception from preparing or launching a step (the engine's own: the model, a kernel, a
worker) abandons the step and is raised as ``StepError``, which ``LLM.generate`` retries. The
caller's code is never retried nor swallowed: an exception raised by a signal handler while a step
runs (a watchdog's TimeoutError) is raised as itself, and an observer's exception is raised once
the step is complete (the other observers still see the record); the engine stays usable.

The engine owns no decision of its own: the scheduler decides admissions, preemptions and finishes;
observers (metrics, the recorder, the workbench) only read StepRecords. All state lives on the
instance (sequence ids, cache, workers), so two engines in one process never collide. ``close()``
is idempotent and also runs on garbage collection and at exit.
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
from nanovllm.engine.core.batch import SamplerOutput, ScheduledBatch
from nanovllm.engine.core.block_manager import BlockManager
from nanovllm.engine.core.detokenizer import StopChecker
from nanovllm.engine.core.events import SequenceEvent, StepRecord, StepTiming
from nanovllm.engine.core.scheduler import Scheduler
from nanovllm.engine.core.sequence import FinishReason, Sequence, SequenceStatus
from nanovllm.engine.observe.metrics import MetricsCollector
from nanovllm.engine.observe.snapshot import EngineSnapshot, take_snapshot
from nanovllm.engine.requests import RequestTable, check_request, new_sequences, stamp_times
from nanovllm.engine.runner.executor import Executor, Launched, make_executor
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
    """A step launched and not yet finished, with what its StepRecord will carry from its launch:
    the events and added requests since the step before, and its host times so far."""

    batch: ScheduledBatch
    launched: Launched | None  # None: nothing was scheduled
    events: tuple[SequenceEvent, ...]
    added: list[int]
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
        self._added: list[int] = []
        self._in_flight: InFlightStep | None = None  # overlap scheduling's step on its way
        self._last_finish = 0.0  # time.perf_counter() when the last step finished
        self._observers: list[Observer] = []
        self._observer_error: Exception | None = None  # raised by _observed once the step is done
        self.metrics = MetricsCollector()
        self.subscribe(self.metrics.on_step)
        self.subscribe(functools.partial(stamp_times, self.sequences))

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
            self._added.append(seq.seq_id)
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
                seq.finish_time = time.perf_counter()

    def fail_request(self, request_id: int, error: str) -> None:
        """Finish a request as failed (reason "error"); ``LLM.generate`` does this to a request
        whose steps keep raising."""
        seq = self._get(request_id)
        if not seq.is_finished:
            seq.error = error
            self.scheduler.abort(seq, FinishReason.ERROR)
            seq.finish_time = time.perf_counter()

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
        prev, self._in_flight = self._in_flight, None
        record = None
        if prev is not None and not self._can_overlap(prev):
            record, prev = self._finish(prev), None  # the next step has to wait for this one
            if not self.scheduler.has_unfinished():
                return record
        step = self._launch()
        if prev is not None:
            record = self._finish(prev)
        if step.error is not None:
            self._raise_abandoned(step)
        self.scheduler.advance(step.batch)
        if prev is None and record is None and not step.batch.seqs:
            return self._finish(step)  # nothing to run: an idle step, as step() records it
        self._in_flight = step
        return record

    @_observed
    def drain(self) -> StepRecord | None:
        """Finish the step in flight, if any, and return its record."""
        self._check_open()
        prev, self._in_flight = self._in_flight, None
        return None if prev is None else self._finish(prev)

    def _can_overlap(self, step: InFlightStep) -> bool:
        """Whether the next step may be launched before ``step`` is finished: collecting ``step``
        will not wait for the next one, a running sequence still needs a token after its pending
        one, and no sampling row has penalties (the next step counts its tokens on the host)."""
        return (
            (step.launched is None or step.launched.overlappable)
            and self.scheduler.can_schedule_ahead()
            and not any(step.batch.seqs[i].params.has_penalties for i in step.batch.sample_rows)
        )

    def _launch(self) -> InFlightStep:
        """Schedule the next step and hand it to the executor, without waiting for its tokens.
        An exception from preparing or launching is kept in the step's ``error``."""
        t0 = time.perf_counter()
        batch = self.scheduler.schedule()
        t1 = time.perf_counter()
        events, added, self._added = self.scheduler.take_events(), self._added, []
        step = InFlightStep(batch, None, events, added, t1 - t0, 0.0, t0)
        if batch.seqs:
            try:
                inputs = prepare_inputs(batch, self.config.kvcache_block_size)
                step.prepare = time.perf_counter() - t1
                step.launched = self.executor.launch(inputs)
            except Exception as e:
                step.error = e
        return step

    def _finish(self, step: InFlightStep) -> StepRecord:
        """Collect a launched (and advanced) step's tokens, postprocess it, and hand its record
        to the observers."""
        out, run = None, None
        if step.launched is not None:
            out, run = self.executor.collect(step.launched)
        t1 = time.perf_counter()
        finished = self.scheduler.postprocess(step.batch, out) if out is not None else []
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
        return self._finish_step(
            step.batch, out, timing, finished, run and run.expert_tokens, step=step
        )

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
        self._finish_step(
            step.batch, None, StepTiming(schedule=step.schedule), error=error, step=step
        )
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
        return self._finish_step(self.scheduler.idle_batch(), None, StepTiming())

    def _finish_step(
        self,
        batch: ScheduledBatch,
        out: SamplerOutput | None,
        timing: StepTiming,
        finished: list[int] = (),
        expert_tokens=None,
        error: str | None = None,
        step: InFlightStep | None = None,
    ) -> StepRecord:
        """The step's record, handed to every observer. Its events and added requests: those
        ``step`` took at its launch, then those since (up to its finish)."""
        tokens: list[int | None] = [None] * len(batch.seqs)
        if out is not None:
            done = SequenceStatus.FINISHED
            for k, i in enumerate(batch.sample_rows):
                seq = batch.seqs[i]  # (a row of a sequence that finished before: no token)
                if seq.status is not done or seq.seq_id in finished:
                    tokens[i] = out.token_ids[k]
        bm = self.block_manager
        decode_tokens = batch.num_decode_tokens
        record = StepRecord(
            step=batch.step,
            seq_ids=tuple([s.seq_id for s in batch.seqs]),
            is_decode=tuple(batch.is_decode),
            num_new_tokens=tuple(batch.num_new_tokens),
            starts=tuple(batch.starts),
            reaches_end=tuple(batch.reaches_end),
            num_prefill_tokens=batch.num_tokens - decode_tokens,
            num_decode_tokens=decode_tokens,
            admitted_ids=tuple(batch.admitted_ids),
            preempted_ids=tuple(batch.preempted_ids),
            finished_ids=tuple(finished),
            added_ids=tuple((step.added if step else []) + self._added),
            finished_outputs=tuple((i, self.sequences[i].completion_token_ids) for i in finished),
            tokens=tuple(tokens),
            kv_blocks_used=bm.num_blocks - bm.num_free_blocks,
            kv_blocks_free=bm.num_free_blocks,
            kv_blocks_cached=bm.num_cached_free_blocks,
            kv_blocks_total=bm.num_blocks,
            prefix_hit_tokens=batch.prefix_hit_tokens,
            num_running=len(self.scheduler.running),
            num_waiting=len(self.scheduler.waiting),
            timing=timing,
            events=(step.events if step else ()) + self.scheduler.take_events(),
            error=error,
            time=time.perf_counter(),
            expert_tokens=expert_tokens,
        )
        self._added = []
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
