"""The scheduler's side of speculative decoding. Pure Python, no torch.

A decode row with a draft computes its last token and the ``d`` draft tokens after it in one step,
so it costs ``1 + d`` tokens of the step's budget and KV slots for ``1 + d`` positions (lookahead
slots; the block manager grows its table to cover them)::

    positions   N-1   N    N+1  N+2         N tokens known; draft d_1 d_2 d_3 (d = 3)
    input       t     d_1  d_2  d_3         each writes its KV slot
    accepted    a = 1: d_1 kept, then the target's y_1
    kept KV     N-1   N                     computed: N + a tokens
    rolled back            N+1  N+2         the rejected drafts' slots: rewritten next step; the
                                            blocks past the kept tokens go (BlockManager.rollback)

A request drafts only when the rest is unchanged by it: its last token is known (not pending),
its draft ends before ``max_num_tokens``, and it asks for neither penalties nor log-probabilities
(both read one token at a time; such a request decodes one token per step).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nanovllm.engine.core.sequence import Sequence, is_pending

if TYPE_CHECKING:
    from nanovllm.engine.spec.proposer import Proposer


class Drafter:
    """Asks ``proposer`` for at most ``k`` draft tokens per decoding request and step."""

    def __init__(self, proposer: Proposer, k: int):
        assert k >= 1
        self.proposer, self.k = proposer, k

    def draft(self, seq: Sequence, room: int) -> tuple[int, ...]:
        """The draft of decoding ``seq`` in a step with ``room`` tokens of budget left after its
        own; () when it should decode one token."""
        tokens, params = seq.token_ids, seq.params
        k = min(self.k, room, seq.max_num_tokens - len(tokens) - 1)
        if k <= 0 or params.logprobs is not None or params.has_penalties or is_pending(tokens[-1]):
            return ()
        return tuple(self.proposer.propose(tokens, k))


def rejected_slots(
    block_table: list[int], block_size: int, start: int, num_drafted: int, num_accepted: int
) -> tuple[int, ...]:
    """The KV slots a row from position ``start`` wrote for its rejected draft tokens: positions
    ``start + 1 + num_accepted .. start + num_drafted``."""
    positions = range(start + 1 + num_accepted, start + 1 + num_drafted)
    return tuple(block_table[p // block_size] * block_size + p % block_size for p in positions)
