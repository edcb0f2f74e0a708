"""LLMEngine: requests in, one scheduled step at a time, outputs out.

::

    add_request(prompt, params)  -> request id    prompts validated and queued (requests.py)
    step()                       -> StepRecord    one step: schedule, run, postprocess, record
                                                  (step_loop.py; overlapped: step_overlapped)
    get_output(request id)       -> RequestOutput once the request has finished
    subscribe(callback)                           every StepRecord to ``callback`` (observers.py)

The engine ties its collaborators together and decides nothing itself: the scheduler decides
admissions, preemptions and finishes and writes each fact once (tokens, events, first-token and
finish times); ``StepLoop`` (step_loop.py) runs the scheduler's steps on the executor, one at a
time or overlapped (``step_overlapped``, what ``LLM.generate`` uses when
``config.overlap_scheduling``); observers (metrics, the recorder, the workbench) only read
StepRecords. ``step()`` never leaves a step in flight: the workbench's Step and Run buttons use it,
so what they show is the step just run.

Errors: an exception from preparing or launching a step (the engine's own: the model, a kernel, a
worker) abandons the step and is raised as ``StepError``, which ``LLM.generate`` retries. The
caller's code is never retried nor swallowed: an exception raised by a signal handler while a step
runs (a watchdog's TimeoutError) is raised as itself, and the engine stays usable.

An observer's exception loses nothing, and is never swallowed (observers.py):

    step(), step_overlapped(), drain(), flush_events()
        the step completes, every observer sees its record, then the first observer exception
        is raised as itself; the record is not returned, but its tokens and finishes are in the
        requests (``get_output``) and the records the other observers kept.
    LLM.generate(), LLM.stream() / astream()
        the call's requests run to their end (every observer seeing every step), then
        ``ObserverError`` is raised with the call's outputs (``.outputs``: generate's in
        submission order, a stream's one after all its deltas), the steps whose observers raised
        (``.steps``) and the first exception as ``__cause__``. Requests added by others go on.

All state lives on the instance (sequence ids, cache, workers), so two engines in one process
never collide. ``close()`` is idempotent and also runs on garbage collection and at exit.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nanovllm.config import Config
from nanovllm.engine.core.block_manager import BlockManager
from nanovllm.engine.core.detokenizer import StopChecker
from nanovllm.engine.core.drafts import Drafter
from nanovllm.engine.core.events import StepRecord
from nanovllm.engine.core.scheduler import Scheduler
from nanovllm.engine.core.sequence import FinishReason, Sequence, SequenceStatus
from nanovllm.engine.observe import html  # noqa: F401  (attaches core's notebook tables)
from nanovllm.engine.observe.metrics import MetricsCollector
from nanovllm.engine.observe.snapshot import EngineSnapshot, take_snapshot
from nanovllm.engine.observers import Observer, Observers, observed
from nanovllm.engine.requests import RequestTable, check_request, new_sequences
from nanovllm.engine.runner.executor import Executor
from nanovllm.engine.spec import make_proposer
from nanovllm.engine.step_loop import StepLoop
from nanovllm.errors import (
    EngineClosedError,
    ModelLoadError,
    UnknownRequestError,
)
from nanovllm.models import check_supported
from nanovllm.outputs import RequestOutput
from nanovllm.sampling_params import SamplingParams

Prompt = (
    str | list[int] | dict[str, Any]
)  # text, token ids, {"prompt": ...} / {"prompt_token_ids": ...}


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
            drafter=_drafter(cfg),
        )
        self.sequences: dict[int, Sequence] = {}  # unfinished, and finished but not yet collected
        self.requests = RequestTable(self.sequences)  # request id -> its samples' sequences
        self._next_id = 0
        self.observers = Observers()
        self.step_loop = StepLoop(
            self.scheduler,
            self.executor,
            self.block_manager,
            cfg.kvcache_block_size,
            self.observers.notify,
        )
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
        return self.observers.subscribe(callback)

    # ---- stepping (engine/step_loop.py) ----------------------------------------------------------
    @observed
    def step(self) -> StepRecord:
        """Schedule and run one step, and return its record; nothing is left in flight (a step
        still in flight from ``step_overlapped`` is finished instead, and its record returned).

        If the forward raises, the step is abandoned: no sequence advances (the same tokens are
        computed again next step), and the scheduler's decisions stand (admissions, preemptions,
        the blocks it allocated), so the cache stays consistent. ``StepError`` is raised with the
        step's context, after the failed step's record reached the observers."""
        self._check_open()
        return self.step_loop.step()

    @observed
    def step_overlapped(self) -> StepRecord | None:
        """Launch the next step, then finish the step in flight (see the module docstring) and
        return its record; None when the call finished nothing (the first one launches only).
        With ``config.overlap_scheduling`` off this is ``step()``. ``drain()`` (or ``step()``)
        finishes the last step in flight."""
        self._check_open()
        if not self.config.overlap_scheduling:
            return self.step()
        return self.step_loop.step_overlapped()

    @observed
    def drain(self) -> StepRecord | None:
        """Finish the step in flight, if any, and return its record."""
        self._check_open()
        return self.step_loop.drain()

    @observed
    def flush_events(self) -> StepRecord | None:
        """Hand the events since the last step (requests added or aborted) to the observers now,
        in an idle record that schedules nothing; None when there were none."""
        self._check_open()
        return self.step_loop.flush_events()

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


def _drafter(config: Config) -> Drafter | None:
    """Speculative decoding's draft source for the scheduler, or None when it is off."""
    spec = config.speculative_config
    if spec is None:
        return None
    return Drafter(make_proposer(spec), spec.num_speculative_tokens)


def _load_tokenizer(path: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as e:
        raise ModelLoadError(f"cannot load a tokenizer from {path!r}: {e}") from e


__all__ = ["LLMEngine", "SequenceStatus"]
