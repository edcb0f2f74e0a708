"""Speculative decoding's decisions, in pure Python (no torch, no numpy, nothing of the engine):
what a request's draft is and which of its tokens the target model accepts.

::

    Proposer             the interface: token ids -> a draft of at most k tokens (proposer.py)
    NgramProposer        prompt lookup: the tokens that followed the suffix's last occurrence
    accepted_tokens      draft + what the target drew at each position -> the tokens to append

The scheduler (engine/core) calls a proposer for each decoding request it schedules and applies
``accepted_tokens`` once the step is done; the runner only computes the target's token at each
position of the draft. Nothing here knows what a Sequence or a tensor is.
"""

from nanovllm.engine.spec.proposer import NgramProposer, Proposer, make_proposer
from nanovllm.engine.spec.verify import accepted_tokens

__all__ = [
    "NgramProposer",
    "Proposer",
    "accepted_tokens",
    "make_proposer",
]
