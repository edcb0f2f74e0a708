"""SamplingParams: how one request picks its next tokens and when it stops. Field names, defaults
and meanings follow vLLM's ``SamplingParams`` (a subset; any other keyword is a ``TypeError``).

Like vLLM's, it is mutable: ``sp = llm.get_default_sampling_params(); sp.temperature = 0.5`` is the
idiom. It is validated when built and again when used: the engine takes ``sp.clone()`` (a validated
copy, ``RequestError`` on a bad value), so changing ``sp`` later never reaches a queued request."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from nanovllm.errors import RequestError


@dataclass
class SamplingParams:
    """vLLM-style sampling parameters.

    Picking a token: ``temperature=0`` is greedy. ``top_k=None`` (or vLLM's ``0`` / ``-1``) and
    ``top_p=1.0`` switch those filters off. A ``seed`` makes this request's samples reproducible
    whatever else shares the batch. Penalties, applied to the logits on the device before
    temperature (vLLM's and OpenAI's formulas): ``repetition_penalty`` divides the positive logits
    (multiplies the negative ones) of every token seen in the prompt or the output;
    ``frequency_penalty`` subtracts ``count * penalty`` for each token's count in the output;
    ``presence_penalty`` subtracts the penalty once for each token present in the output.

    Stopping: EOS (unless ``ignore_eos``), any of ``stop_token_ids``, any of the ``stop`` strings
    (found in the detokenized text, and cut from ``text`` unless ``include_stop_str_in_output``),
    or ``max_tokens`` (vLLM's default, 16; ``None``: up to ``max_model_len``, and a request whose
    prompt + ``max_tokens`` exceeds it stops there with reason "length"). Before ``min_tokens``
    tokens exist none of these stops apply, and EOS and the stop tokens cannot be sampled.

    Output: ``n`` samples of the same prompt (sharing its KV blocks through the prefix cache; with
    a ``seed``, sample ``i`` uses ``seed + i``). ``logprobs=None`` returns no log-probabilities;
    ``logprobs=0`` the sampled token's; ``logprobs=k`` also the ``k`` most likely tokens at each
    step (of the raw logits, before penalties and temperature, as in vLLM).
    ``skip_special_tokens`` drops special tokens from ``text``.
    """

    temperature: float = 1.0
    max_tokens: int | None = 16
    ignore_eos: bool = False
    top_k: int | None = None
    top_p: float = 1.0
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = ()
    logprobs: int | None = None
    n: int = 1
    stop: tuple[str, ...] = ()
    include_stop_str_in_output: bool = False
    min_tokens: int = 0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    skip_special_tokens: bool = True

    def __post_init__(self) -> None:
        t = self.temperature
        if not _is_finite(t) or t < 0:
            raise RequestError(f"temperature={t!r} must be a finite number >= 0 (0 means greedy)")
        if self.max_tokens is not None and (not _is_int(self.max_tokens) or self.max_tokens < 1):
            raise RequestError(
                f"max_tokens={self.max_tokens!r} must be an integer >= 1, or None (up to "
                "max_model_len)"
            )
        self._check_top_k()
        p = self.top_p
        if not _is_finite(p) or not 0.0 < p <= 1.0:
            raise RequestError(f"top_p={p!r} must be in (0, 1]; 1.0 switches it off")
        if self.seed is not None and not _is_int(self.seed):
            raise RequestError(f"seed={self.seed!r} must be None or an integer")
        if self.logprobs is not None and (not _is_int(self.logprobs) or self.logprobs < 0):
            raise RequestError(f"logprobs={self.logprobs!r} must be None or an integer >= 0")
        stops = _as_tuple(self.stop_token_ids, "stop_token_ids", "a list of token ids")
        if any(not _is_int(s) or s < 0 for s in stops):
            raise RequestError(f"stop_token_ids={self.stop_token_ids!r} must be token ids >= 0")
        self.stop_token_ids = stops
        self._check_output_options()
        self._check_penalties()

    def clone(self) -> SamplingParams:
        """A validated copy (vLLM's name): what the engine keeps of a request's parameters, so a
        caller may change this object between requests. Raises ``RequestError`` for a value that
        was set to something invalid after construction."""
        return dataclasses.replace(self)

    @property
    def has_logits_processing(self) -> bool:
        """The sampler must change this request's logits (penalties, or a min_tokens ban)."""
        return self.has_penalties or self.min_tokens > 0

    @property
    def has_penalties(self) -> bool:
        """Repetition, presence or frequency penalties: they count the generated tokens."""
        return (
            self.repetition_penalty != 1.0
            or self.presence_penalty != 0.0
            or self.frequency_penalty != 0.0
        )

    def _check_top_k(self) -> None:
        k = self.top_k
        if k is not None and (not _is_int(k) or k < -1):
            raise RequestError(f"top_k={k!r} must be None, 0 or -1 (off), or an integer >= 1")
        if k in (0, -1):
            self.top_k = None  # vLLM's spellings of "off"

    def _check_output_options(self) -> None:
        if not _is_int(self.n) or self.n < 1:
            raise RequestError(f"n={self.n!r} must be an integer >= 1 (samples per prompt)")
        stop = self.stop
        stop = (
            (stop,)
            if isinstance(stop, str)
            else _as_tuple(stop, "stop", "a string or a list of strings")
        )
        if any(not isinstance(s, str) or not s for s in stop):
            raise RequestError(f"stop={self.stop!r} must be a non-empty string or a list of them")
        self.stop = stop
        m, most = self.min_tokens, self.max_tokens
        if not _is_int(m) or m < 0 or (most is not None and m > most):
            raise RequestError(f"min_tokens={m!r} must be an integer in [0, max_tokens={most}]")
        for name in ("ignore_eos", "include_stop_str_in_output", "skip_special_tokens"):
            if not isinstance(getattr(self, name), bool):
                raise RequestError(f"{name}={getattr(self, name)!r} must be True or False")

    def _check_penalties(self) -> None:
        r = self.repetition_penalty
        if not _is_finite(r) or r <= 0:
            raise RequestError(f"repetition_penalty={r!r} must be > 0 (1.0 switches it off)")
        for name in ("presence_penalty", "frequency_penalty"):
            v = getattr(self, name)
            if not _is_finite(v) or not -2.0 <= v <= 2.0:
                raise RequestError(f"{name}={v!r} must be in [-2, 2] (0 switches it off)")


def _as_tuple(value: object, name: str, kind: str) -> tuple:
    """``value`` (None, or a list, tuple or set) as a tuple; anything else is a RequestError."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise RequestError(f"{name}={value!r} must be {kind}, got {type(value).__name__}")
    return tuple(value)


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
