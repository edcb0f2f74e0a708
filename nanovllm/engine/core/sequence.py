"""Sequence: one request's tokens and progress. Pure Python, no torch.

::

    token_ids: [ p0 p1 p2 ... p(P-1) | g0 g1 ... ]      P = num_prompt_tokens
               |<--- num_computed_tokens --->|          KV of these is in the cache
               |<- num_cached ->|                       of those, found in the prefix cache

A sequence needs ``num_tokens - num_computed_tokens`` more tokens computed before it can sample:
more than one means a prefill (or a recompute after preemption), exactly one means a decode.

A token still being sampled by a step in flight (``Scheduler.advance`` ran, ``postprocess`` not
yet) holds a placeholder: ``pending_token(k) = -(k + 1)``, k being its row in that step's sampler
output. So the next step can be scheduled before this one's tokens reach the host, and the runner
fetches the real token on the device (overlap scheduling, engine/step_loop.py). Only the last
token of a sequence is ever pending, and no finished sequence holds one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from nanovllm.sampling_params import SamplingParams


def pending_token(row: int) -> int:
    """The placeholder of the token that sample row ``row`` of the step in flight will draw."""
    return -(row + 1)


def is_pending(token: int) -> bool:
    return token < 0


class SequenceStatus(str, Enum):
    WAITING = "WAITING"
    RUNNING = "RUNNING"
    PREEMPTED = "PREEMPTED"
    FINISHED = "FINISHED"


class FinishReason(str, Enum):
    STOP = "stop"  # an EOS or stop token
    LENGTH = "length"  # max_tokens or max_model_len reached
    ABORT = "abort"  # abort(request_id)
    ERROR = "error"  # the request failed inside a step


@dataclass(frozen=True)
class SequenceEvent:
    """``seq_id`` went from ``before`` (None when just added) to ``after`` during ``step``."""

    step: int
    seq_id: int
    before: SequenceStatus | None
    after: SequenceStatus
    reason: str
    time: float = 0.0  # time.perf_counter() when it happened
    # "added": the prompt's length; "scheduled" / "resumed": the tokens the sequence has then
    # (prompt + generated, of which the prefix cache may hold some); 0 for other events
    num_tokens: int = 0


class Sequence:
    __slots__ = (
        "seq_id",
        "token_ids",
        "num_prompt_tokens",
        "params",
        "status",
        "finish_reason",
        "num_computed_tokens",
        "max_num_tokens",
        "num_cached_tokens",
        "block_table",
        "block_hashes",
        "num_hashed_blocks",
        "logprobs",
        "top_logprobs",
        "num_preemptions",
        "error",
        # request-level extras (issue 16): filled by the engine, the scheduler and the detokenizer
        "index",
        "leader",
        "min_tokens_ban",
        "stop_reason",
        "detokenizer",
        "logprob_ranks",
        "arrival_time",
        "first_token_time",
        "finish_time",
    )

    def __init__(self, seq_id: int, prompt_token_ids: list[int], params: SamplingParams):
        assert prompt_token_ids, "the engine rejects empty prompts before building a Sequence"
        self.seq_id = seq_id
        self.token_ids: list[int] = list(prompt_token_ids)
        self.num_prompt_tokens = len(self.token_ids)
        self.params = params
        self.status = SequenceStatus.WAITING
        self.finish_reason: FinishReason | None = None
        self.num_computed_tokens = 0
        # prompt + max_tokens (the scheduler caps it at max_model_len): reaching it ends the request
        self.max_num_tokens = self.num_prompt_tokens + params.max_tokens
        self.num_cached_tokens = 0
        self.block_table: list[int] = []
        self.block_hashes: list[int] = []  # chained hash of each full block, filled lazily
        self.num_hashed_blocks = 0  # blocks of block_table registered in the prefix cache
        self.logprobs: list[float] = []
        self.top_logprobs: list[dict[int, float]] = []
        self.num_preemptions = 0
        self.error: str | None = None
        self.index = 0  # which of its request's n samples this is
        # n > 1: sample 0 of the same request; the scheduler admits this one once the leader has
        # computed the prompt's full blocks, so they are found in the prefix cache, not recomputed
        self.leader: Sequence | None = None
        self.min_tokens_ban: tuple[int, ...] = ()  # masked out until min_tokens: stop ids, EOS
        self.stop_reason: str | int | None = None  # the stop string or stop token id that hit
        self.detokenizer = None  # an IncrementalDetokenizer, when stop strings or a stream need one
        self.logprob_ranks: list[int] = []  # vocabulary rank of each sampled token (logprobs on)
        self.arrival_time: float | None = None  # time.perf_counter() clock, like StepRecord.time
        self.first_token_time: float | None = None
        self.finish_time: float | None = None

    def __len__(self) -> int:
        return len(self.token_ids)

    def __repr__(self) -> str:
        return (
            f"Sequence(id={self.seq_id}, {self.status.value}, tokens={self.num_tokens} "
            f"(prompt {self.num_prompt_tokens}), computed={self.num_computed_tokens}, "
            f"blocks={self.block_table})"
        )

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_completion_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def num_known_tokens(self) -> int:
        """The tokens known on the host: all but a pending last token (it counts in
        ``num_tokens``, which the scheduler and the sampler read)."""
        return len(self.token_ids) - is_pending(self.token_ids[-1])

    @property
    def completion_token_ids(self) -> list[int]:
        """The generated tokens known on the host (``num_known_tokens``)."""
        return self.token_ids[self.num_prompt_tokens : self.num_known_tokens]

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED
