"""Proposers: a request's token ids in, a draft of at most ``k`` next tokens out.

A proposer only guesses; the target model verifies every draft token (verify.py), so a bad guess
costs compute, never correctness. ``Proposer`` is the interface the scheduler calls; a draft-model
proposer would implement the same call (it would also have to report its draft distribution q for
sampled requests: see verify.py).

``NgramProposer`` is prompt lookup (vLLM's ``method="ngram"``)::

    tokens  ... 5 6 7 8 | 9 10 11 ... 5 6 7      suffix "5 6 7" (n = 3) occurred before
                          ^^^^^^^^^              draft: the k tokens that followed it

For n from ``max_n`` down to ``min_n``, the last n tokens are looked for earlier in the sequence
(prompt and output); the most recent earlier occurrence of the longest matching n wins.
"""

from __future__ import annotations

from typing import Protocol

from nanovllm.speculative_config import SpeculativeConfig


class Proposer(Protocol):
    def propose(self, token_ids: list[int], k: int) -> list[int]:
        """At most ``k`` draft tokens to follow ``token_ids`` (all known, none pending); [] when
        there is no guess."""
        ...


class NgramProposer:
    def __init__(self, min_n: int, max_n: int):
        assert 1 <= min_n <= max_n
        self.min_n, self.max_n = min_n, max_n

    def propose(self, token_ids: list[int], k: int) -> list[int]:
        length = len(token_ids)
        if k <= 0:
            return []
        for n in range(min(self.max_n, length - 1), self.min_n - 1, -1):
            suffix = token_ids[length - n :]
            first = suffix[0]
            # the most recent earlier start i of the suffix (i + n < length: not the suffix itself)
            for i in range(length - n - 1, -1, -1):
                if token_ids[i] == first and token_ids[i : i + n] == suffix:
                    return token_ids[i + n : i + n + k]
        return []


def make_proposer(config: SpeculativeConfig) -> Proposer:
    """The proposer ``config.method`` names (validated by ``SpeculativeConfig``)."""
    assert config.method == "ngram", config.method
    return NgramProposer(config.prompt_lookup_min, config.prompt_lookup_max)
