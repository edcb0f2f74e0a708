"""One row per request, as the requests panel shows it: state, token counts, latencies.

``request_rows(snap)`` reads only an ``EngineSnapshot``'s sequences (one row per sequence, newest
first); the texts are decoded by the view from the sequences' tokens::

    seq  state      prompt  completion  computed  cached  TTFT    inter-token  finish
    3    RUNNING    20      7           26        16      41 ms   12.5 ms      -
    2    FINISHED   20      32          51        16      38 ms   11.9 ms      length

TTFT: the first token's time minus the arrival time. Inter-token latency: the mean gap between
the sampled tokens after the first, up to the finish (or, while running, up to the snapshot).
"""

from __future__ import annotations

from dataclasses import dataclass

from nanovllm.engine.observe.snapshot import EngineSnapshot, SequenceSnapshot


@dataclass(frozen=True)
class RequestRow:
    seq_id: int
    status: str  # SequenceStatus value
    num_prompt_tokens: int
    num_completion_tokens: int
    num_computed_tokens: int
    num_cached_tokens: int  # found in the prefix cache at the last admission
    num_preemptions: int
    ttft: float | None  # seconds; None before the first token
    inter_token: float | None  # seconds; None before the second token
    finish_reason: str | None

    @property
    def finished(self) -> bool:
        return self.status == "FINISHED"


def request_row(seq: SequenceSnapshot, now: float | None) -> RequestRow:
    ttft = inter = None
    if seq.first_token_time is not None and seq.arrival_time is not None:
        ttft = seq.first_token_time - seq.arrival_time
    end = seq.finish_time if seq.finish_time is not None else now
    if seq.first_token_time is not None and end is not None and seq.num_completion_tokens > 1:
        inter = (end - seq.first_token_time) / (seq.num_completion_tokens - 1)
    return RequestRow(
        seq_id=seq.seq_id,
        status=seq.status,
        num_prompt_tokens=seq.num_prompt_tokens,
        num_completion_tokens=seq.num_completion_tokens,
        num_computed_tokens=seq.num_computed_tokens,
        num_cached_tokens=seq.num_cached_tokens,
        num_preemptions=seq.num_preemptions,
        ttft=ttft,
        inter_token=inter,
        finish_reason=seq.finish_reason,
    )


def request_rows(snap: EngineSnapshot) -> list[RequestRow]:
    """Every sequence of the snapshot, newest (highest id) first."""
    seqs = sorted(snap.sequences, key=lambda s: s.seq_id, reverse=True)
    return [request_row(s, snap.time) for s in seqs]
