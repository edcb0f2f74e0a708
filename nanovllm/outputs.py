"""What ``generate``, ``chat`` and ``get_output`` return: vLLM's ``RequestOutput`` shape, which
also answers nano-vllm's dict keys.

::

    out = llm.generate(["Hello"], SamplingParams(n=2, logprobs=1))[0]
    out.outputs[0].text, out.outputs[1].token_ids     # vLLM: one CompletionOutput per sample
    out.outputs[0].logprobs[3][tok].logprob           # vLLM: {token_id: Logprob} per position
    out["text"], out["token_ids"]                     # nano-vllm: sample 0, as a read-only dict

The dict view (``RequestOutput`` is a ``Mapping``) has exactly the keys outputs had before they
were objects: ``request_id``, ``text``, ``token_ids``, ``finish_reason``, ``num_cached_tokens``;
``logprobs`` (the sampled tokens' log-probabilities, a float list) and ``top_logprobs`` (a
``{token_id: logprob}`` dict per position) when logprobs were asked for; ``error`` when the request
failed. So ``pd.DataFrame(outputs)`` and ``out.get("error")`` work as they did.

Times in ``RequestMetrics`` are ``time.perf_counter()`` seconds, the clock of ``StepRecord.time``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Logprob:
    """One token's log-probability at one position, as vLLM reports it. ``rank`` 1 is the most
    likely token; ``decoded_token`` is the token's own text."""

    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:
    """One sample of a request (vLLM's fields, then this engine's extras)."""

    index: int
    text: str  # what the sample adds to the decoded prompt (vLLM's): prompt + text reads right
    token_ids: list[int]
    cumulative_logprob: float | None  # None unless logprobs were asked for
    logprobs: list[dict[int, Logprob]] | None  # per position: sampled token first, then the top
    finish_reason: str | None = None  # "stop", "length", "abort" or "error"
    stop_reason: int | str | None = None  # the stop token id or stop string; None for EOS
    num_cached_tokens: int = 0  # prompt tokens this sample found in the prefix cache
    error: str | None = None  # why it failed (finish_reason "error")

    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass(frozen=True)
class RequestMetrics:
    """When the request arrived, got its first token (over all samples) and finished (all)."""

    arrival_time: float | None
    first_token_time: float | None
    finished_time: float | None

    @property
    def time_to_first_token(self) -> float | None:
        if self.arrival_time is None or self.first_token_time is None:
            return None
        return self.first_token_time - self.arrival_time

    @property
    def latency(self) -> float | None:
        if self.arrival_time is None or self.finished_time is None:
            return None
        return self.finished_time - self.arrival_time


class RequestOutput(Mapping):
    """One request's result: vLLM's attributes, and nano-vllm's keys (see the module docstring).

    ``prompt`` is the prompt's text (None when it was given as token ids). ``num_cached_tokens``
    and ``error`` are sample 0's (each ``CompletionOutput`` has its own).
    """

    __slots__ = (
        "request_id",
        "prompt",
        "prompt_token_ids",
        "prompt_logprobs",
        "outputs",
        "finished",
        "metrics",
        "num_cached_tokens",
        "_dict",
    )

    def __init__(
        self,
        request_id: int,
        prompt: str | None,
        prompt_token_ids: list[int],
        outputs: list[CompletionOutput],
        finished: bool = True,
        metrics: RequestMetrics | None = None,
        *,
        top_logprobs: list[dict[int, float]] | None = None,
    ):
        """``top_logprobs``: sample 0's top-k ``{token_id: logprob}`` per position, for the dict
        view (the ``Logprob`` dicts also hold the sampled token, which may be outside the top)."""
        self.request_id = request_id
        self.prompt = prompt
        self.prompt_token_ids = prompt_token_ids
        self.prompt_logprobs = None  # not computed here (vLLM's field, kept for code that reads it)
        self.outputs = outputs
        self.finished = finished
        self.metrics = metrics
        self.num_cached_tokens = outputs[0].num_cached_tokens if outputs else 0
        self._dict = _dict_view(request_id, outputs[0], top_logprobs) if outputs else {}

    @property
    def error(self) -> str | None:
        return self.outputs[0].error if self.outputs else None

    # ---- the nano-vllm dict view -----------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self._dict[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict)

    def __len__(self) -> int:
        return len(self._dict)

    def __repr__(self) -> str:
        return (
            f"RequestOutput(request_id={self.request_id!r}, prompt={self.prompt!r}, "
            f"prompt_token_ids={self.prompt_token_ids!r}, outputs={self.outputs!r}, "
            f"finished={self.finished!r}, metrics={self.metrics!r}, "
            f"num_cached_tokens={self.num_cached_tokens!r})"
        )


def _dict_view(
    request_id: int, first: CompletionOutput, top_logprobs: list[dict[int, float]] | None
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "request_id": request_id,
        "text": first.text,
        "token_ids": first.token_ids,
        "finish_reason": first.finish_reason,
        "num_cached_tokens": first.num_cached_tokens,
    }
    if first.logprobs is not None:
        view["logprobs"] = [pos[t].logprob for pos, t in zip(first.logprobs, first.token_ids)]
        if top_logprobs is not None:
            view["top_logprobs"] = top_logprobs
    if first.error is not None:
        view["error"] = first.error
    return view
