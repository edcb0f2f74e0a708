"""``speculative_config``: vLLM's dictionary, validated into a frozen ``SpeculativeConfig``.

::

    LLM(model, speculative_config={"method": "ngram", "num_speculative_tokens": 3,
                                   "prompt_lookup_min": 1, "prompt_lookup_max": 3})

Only what this engine implements is accepted: an unknown method or key is a ``ConfigError`` that
names what is supported. The engine's side lives in nanovllm/engine/spec/ (the proposers, the
acceptance rule). Checks that need the rest of the engine's configuration (the draft
against ``max_model_len``, the tensor-parallel size) are ``Config``'s (nanovllm/config.py).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from nanovllm.errors import ConfigError

SPECULATIVE_METHODS = ("ngram",)  # prompt lookup; a draft-model proposer would add its name here


@dataclass(frozen=True)
class SpeculativeConfig:
    """k draft tokens per decoding request and step, proposed by prompt lookup: the tokens that
    followed the last earlier occurrence of the sequence's final n tokens, for the longest n in
    ``[prompt_lookup_min, prompt_lookup_max]`` that occurs."""

    method: str = "ngram"
    num_speculative_tokens: int = 3
    prompt_lookup_min: int = 1
    prompt_lookup_max: int = 3

    def __post_init__(self) -> None:
        if self.method not in SPECULATIVE_METHODS:
            raise ConfigError(
                f"speculative_config method={self.method!r} is not supported; this engine "
                f"implements {list(SPECULATIVE_METHODS)} (prompt lookup, no draft model)"
            )
        for name in ("num_speculative_tokens", "prompt_lookup_min", "prompt_lookup_max"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(
                    f"speculative_config {name}={value!r} must be a positive integer "
                    f"(e.g. {name}=3); leave speculative_config out to decode one token per step"
                )
        if self.prompt_lookup_min > self.prompt_lookup_max:
            raise ConfigError(
                f"speculative_config prompt_lookup_min={self.prompt_lookup_min} exceeds "
                f"prompt_lookup_max={self.prompt_lookup_max}; pass prompt_lookup_min<="
                f"{self.prompt_lookup_max}"
            )

    @classmethod
    def from_value(cls, value: Any) -> SpeculativeConfig | None:
        """A ``SpeculativeConfig`` from vLLM's dictionary (or one already built; None: off)."""
        if value is None or isinstance(value, SpeculativeConfig):
            return value
        if not isinstance(value, dict):
            raise ConfigError(
                f"speculative_config={value!r} must be a dict such as "
                '{"method": "ngram", "num_speculative_tokens": 3}'
            )
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ConfigError(
                f"speculative_config keys {unknown} are not supported; the supported keys are "
                f"{known}"
            )
        if "method" not in value:
            raise ConfigError(
                f"speculative_config={value!r} needs a method; pass "
                f'"method": one of {list(SPECULATIVE_METHODS)}'
            )
        return cls(**value)
