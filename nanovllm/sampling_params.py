"""SamplingParams: how one request picks its next tokens, validated on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass

from nanovllm.errors import RequestError


@dataclass(frozen=True)
class SamplingParams:
    """vLLM-style sampling parameters.

    ``temperature=0`` is greedy. ``top_k=None`` and ``top_p=1.0`` switch those filters off. A ``seed``
    makes this request's samples reproducible whatever else shares the batch. ``logprobs=None``
    returns no log-probabilities; ``logprobs=0`` returns the sampled token's; ``logprobs=n`` also
    returns the ``n`` most likely tokens at each step.
    """

    temperature: float = 1.0
    max_tokens: int = 64
    ignore_eos: bool = False
    top_k: int | None = None
    top_p: float = 1.0
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = ()
    logprobs: int | None = None

    def __post_init__(self) -> None:
        t = self.temperature
        if not isinstance(t, (int, float)) or math.isnan(t) or t < 0 or math.isinf(t):
            raise RequestError(f"temperature={t!r} must be a finite number >= 0 (0 means greedy)")
        if not _is_int(self.max_tokens) or self.max_tokens < 1:
            raise RequestError(f"max_tokens={self.max_tokens!r} must be an integer >= 1")
        if self.top_k is not None and (not _is_int(self.top_k) or self.top_k < 1):
            raise RequestError(f"top_k={self.top_k!r} must be None (off) or an integer >= 1")
        p = self.top_p
        if not isinstance(p, (int, float)) or math.isnan(p) or not 0.0 < p <= 1.0:
            raise RequestError(f"top_p={p!r} must be in (0, 1]; 1.0 switches it off")
        if self.seed is not None and not _is_int(self.seed):
            raise RequestError(f"seed={self.seed!r} must be None or an integer")
        if self.logprobs is not None and (not _is_int(self.logprobs) or self.logprobs < 0):
            raise RequestError(f"logprobs={self.logprobs!r} must be None or an integer >= 0")
        stops = tuple(self.stop_token_ids)
        if any(not _is_int(s) or s < 0 for s in stops):
            raise RequestError(f"stop_token_ids={self.stop_token_ids!r} must be token ids >= 0")
        object.__setattr__(self, "stop_token_ids", stops)


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)
