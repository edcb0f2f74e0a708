"""Writing a step's samples into its sequences, for ``Scheduler.postprocess``. Pure Python.

Sample row k (batch row ``batch.sample_rows[k]``) writes ``out.token_ids[k]`` where ``advance``
left its placeholder, with its logprobs and the sequence's first-token time. A decode row that
verified a draft (speculative decoding, core/drafts.py) appends the accepted tokens instead, one
at a time (engine/spec/verify.py), then gives back the lookahead blocks past the tokens kept::

    placeholder  p                      row from ``start``: last known token, then d drafts
    accepted     y_0 d_1 ... y_a        the draft's agreeing prefix and the target's own token
    written      token_ids[start + 1] = y_0, then appended one at a time, each checked

Every token written goes to ``finish(seq, token)``: the scheduler's decision (this module never
finishes a sequence itself), True when it finished ``seq``; a speculative row stops at the token
that finished it. Rows of sequences already finished (aborted, or stopped in the step before: a
wasted row) are skipped.
"""

from __future__ import annotations

from collections.abc import Callable

from nanovllm.engine.core.batch import SamplerOutput, ScheduledBatch
from nanovllm.engine.core.block_manager import BlockManager
from nanovllm.engine.core.drafts import rejected_slots
from nanovllm.engine.core.sequence import Sequence, SequenceStatus
from nanovllm.engine.spec.verify import accepted_tokens

Finish = Callable[[Sequence, int], bool]  # the scheduler's: finish seq after token? (True: did)


class SpecOutcome:
    """Per batch row: draft tokens accepted, and the KV slots of the rejected ones."""

    __slots__ = ("accepted", "slots")

    def __init__(self, num_rows: int):
        self.accepted: list[int] = [0] * num_rows
        self.slots: list[tuple[int, ...]] = [()] * num_rows


def write_samples(
    batch: ScheduledBatch,
    out: SamplerOutput,
    now: float,
    bm: BlockManager,
    finish: Finish,
) -> tuple[list[tuple[int, ...]], SpecOutcome | None]:
    """Each sample row's token in place of its placeholder, its logprobs, the sequence's
    first-token time, then its finish, if any. Returns the tokens each batch row wrote and, for
    a batch with drafts, what the drafts kept."""
    new_tokens: list[tuple[int, ...]] = [()] * len(batch.seqs)
    spec = SpecOutcome(len(batch.seqs)) if batch.has_drafts else None
    done = SequenceStatus.FINISHED
    for k, i in enumerate(batch.sample_rows):
        seq = batch.seqs[i]
        if seq.status is done:
            continue
        if seq.first_token_time is None:
            seq.first_token_time = now
        end = batch.starts[i] + batch.num_new_tokens[i]  # the placeholder's position
        if spec is not None and i in batch.drafts:
            if seq.status is SequenceStatus.RUNNING:
                new_tokens[i] = _write_verified(batch, i, out.targets[k], bm, finish, spec)
                continue
            end -= len(batch.drafts[i])  # preempted meanwhile: its first token only
        # running, or preempted while the step ran (when the next one was scheduled)
        token = out.token_ids[k]
        seq.token_ids[end] = token
        new_tokens[i] = (token,)
        if seq.params.logprobs is not None:
            seq.logprobs.append(out.logprobs[k])
            seq.logprob_ranks.append(out.ranks[k] if out.ranks else None)
            if seq.params.logprobs > 0:
                seq.top_logprobs.append(out.top_logprobs[k])
        finish(seq, token)
    return new_tokens, spec


def _write_verified(
    batch: ScheduledBatch,
    i: int,
    targets: tuple[int, ...],
    bm: BlockManager,
    finish: Finish,
    spec: SpecOutcome,
) -> tuple[int, ...]:
    """Running row i verified its draft: the accepted tokens are appended one at a time, each
    accepted draft token's KV now counting as computed and each token checked for a finish as
    a plain decode's is; then the lookahead blocks past the tokens kept go back, and blocks
    the accepted drafts filled enter the prefix cache. Returns the tokens written."""
    seq, draft, start = batch.seqs[i], batch.drafts[i], batch.starts[i]
    tokens = accepted_tokens(draft, targets)
    spec.accepted[i] = accepted = len(tokens) - 1
    spec.slots[i] = rejected_slots(seq.block_table, bm.block_size, start, len(draft), accepted)
    for j, token in enumerate(tokens):
        if j == 0:
            seq.token_ids[start + 1] = token  # its placeholder
        else:
            seq.token_ids.append(token)
            seq.num_computed_tokens += 1  # the accepted draft token before it
        if finish(seq, token):
            return tokens[: j + 1]
    bm.rollback(seq, seq.num_tokens)
    bm.commit(seq)
    return tokens
