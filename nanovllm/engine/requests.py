"""Requests <-> sequences: prompt forms in, one ``Sequence`` per sample, ``RequestOutput`` out.

A request with ``n`` samples becomes ``n`` Sequences with the same prompt and consecutive ids;
the first is the request's id and the others' ``leader`` (the scheduler admits them once the
leader has computed the prompt's full blocks, so they are computed once and found in the prefix
cache by the rest). With a seed, sample ``i`` samples with ``seed + i``.

Prompt forms (vLLM's): a string, a list of token ids, ``{"prompt": str}`` (``TextPrompt``) or
``{"prompt_token_ids": [...]}`` (``TokensPrompt``).

``check_request`` is the engine's gate (vLLM's rules): a prompt of ``max_model_len`` tokens or more
is a ``RequestError``; a prompt + ``max_tokens`` beyond it runs up to ``max_model_len`` and
finishes with reason "length" (the scheduler caps it); ``max_tokens=None`` is the room left.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from nanovllm.config import Config
from nanovllm.engine.core.detokenizer import final_text
from nanovllm.engine.core.sequence import Sequence
from nanovllm.errors import RequestError, UnknownRequestError
from nanovllm.outputs import CompletionOutput, Logprob, RequestMetrics, RequestOutput
from nanovllm.sampling_params import SamplingParams

PROMPT_KEYS = ("prompt", "prompt_token_ids")


def parse_prompt(prompt: Any, tokenizer) -> tuple[list[int], str | None]:
    """(token ids, prompt text or None). Raises ``RequestError`` for anything else."""
    if isinstance(prompt, dict):
        unknown = sorted(set(prompt) - set(PROMPT_KEYS))
        if unknown or len(prompt) != 1:
            raise RequestError(
                f"a prompt dict takes exactly one of {list(PROMPT_KEYS)}, got keys "
                f"{sorted(prompt)}; multi-modal and other vLLM prompt fields are not supported"
            )
        [(key, value)] = prompt.items()
        if (key == "prompt") != isinstance(value, str):
            kind = "a str" if key == "prompt" else "a list of token ids"
            raise RequestError(f"{{{key!r}: ...}} takes {kind}, got {type(value).__name__}")
        prompt = value
    if isinstance(prompt, str):
        return tokenizer.encode(prompt), prompt
    if isinstance(prompt, (list, tuple)) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in prompt
    ):
        return list(prompt), None
    raise RequestError(
        "a prompt must be a str, a list of token ids, {'prompt': str} or "
        f"{{'prompt_token_ids': [...]}}, got {type(prompt).__name__}"
    )


def check_request(
    prompt: Any, params: Any, tokenizer, config: Config
) -> tuple[list[int], SamplingParams, str | None]:
    """(token ids, the request's own validated copy of ``params``, prompt text or None); raises
    ``RequestError`` for anything the engine cannot run."""
    if not isinstance(params, SamplingParams):
        raise params_type_error(params, "sampling params must be a SamplingParams")
    params = params.clone()  # validated now: the caller may have changed it since it was built
    token_ids, text = parse_prompt(prompt, tokenizer)
    if not token_ids:
        raise RequestError("the prompt is empty; pass at least one token")
    vocab = config.spec.vocab_size
    bad = [t for t in token_ids if not 0 <= t < vocab]
    if bad:
        raise RequestError(f"token id(s) {bad[:5]} are outside the vocabulary [0, {vocab})")
    room = config.max_model_len - len(token_ids)
    if room < 1:
        raise RequestError(
            f"the prompt has {len(token_ids)} tokens, and max_model_len={config.max_model_len} "
            f"leaves no room for an output token; pass a prompt of at most "
            f"{config.max_model_len - 1} tokens or a larger max_model_len"
        )
    if params.n > config.max_num_seqs:
        raise RequestError(
            f"n={params.n} samples cannot run at once with max_num_seqs={config.max_num_seqs}; "
            f"pass n<={config.max_num_seqs}, or LLM(..., max_num_seqs={params.n})"
        )
    if params.max_tokens is None:
        params.max_tokens = room
        if params.min_tokens > room:
            raise RequestError(
                f"min_tokens={params.min_tokens} exceeds the {room} tokens max_model_len="
                f"{config.max_model_len} leaves after the prompt; lower min_tokens"
            )
    return token_ids, params, text


def params_type_error(params: Any, expected: str) -> RequestError:
    """The error for sampling params that are not a SamplingParams (a dict: how to build one)."""
    hint = "; build one from a dict with SamplingParams(**d)" if isinstance(params, dict) else ""
    return RequestError(f"{expected}, got {type(params).__name__}{hint}")


def new_sequences(
    first_id: int, token_ids: list[int], params: SamplingParams, eos_token_ids: tuple[int, ...]
) -> list[Sequence]:
    """The ``params.n`` Sequences of one request, ids ``first_id, first_id + 1, ...``."""
    seqs: list[Sequence] = []
    for i in range(params.n):
        p = params
        if params.n > 1:
            seed = None if params.seed is None else params.seed + i
            p = dataclasses.replace(params, n=1, seed=seed)
        seq = Sequence(first_id + i, token_ids, p)
        seq.index, seq.leader = i, seqs[0] if seqs else None
        if p.min_tokens:
            eos = () if p.ignore_eos else tuple(eos_token_ids)
            seq.min_tokens_ban = tuple(dict.fromkeys(p.stop_token_ids + eos))
        seqs.append(seq)
    return seqs


class RequestTable:
    """Request id -> (prompt text, its sequences); the id is sample 0's sequence id. Shares the
    engine's ``sequences`` dict (seq id -> Sequence, what the scheduler and the views know), and
    drops a request's sequences from it when its output is collected."""

    def __init__(self, sequences: dict[int, Sequence]):
        self.sequences = sequences
        self._requests: dict[int, tuple[str | None, list[Sequence]]] = {}

    def add(self, prompt: str | None, seqs: list[Sequence]) -> int:
        for seq in seqs:
            self.sequences[seq.seq_id] = seq
        self._requests[seqs[0].seq_id] = (prompt, seqs)
        return seqs[0].seq_id

    def sequences_of(self, request_id: int) -> list[Sequence]:
        """A request's sequences (a sample's sequence id gives that one alone)."""
        request = self._requests.get(request_id)
        if request is not None:
            return list(request[1])
        if request_id in self.sequences:
            return [self.sequences[request_id]]
        raise UnknownRequestError(
            f"no request with id {request_id!r} (finished ones are forgotten once their output "
            "is collected)"
        )

    def collect(self, request_id: int, tokenizer, pop: bool = True) -> RequestOutput:
        """The output of a finished request (by default forgetting it)."""
        request = self._requests.get(request_id)
        if request is None:
            [seq] = self.sequences_of(request_id)  # unknown: raises
            raise UnknownRequestError(
                f"{request_id} is sample {seq.index} of request {seq.leader.seq_id}; "
                f"get_output({seq.leader.seq_id}) returns all its samples"
            )
        prompt, seqs = request
        if not all(s.is_finished for s in seqs):
            status = [s.status.value for s in seqs]
            raise RequestError(f"request {request_id} has not finished yet ({status})")
        if pop:
            self.drop(request_id)
        return build_output(request_id, prompt, seqs, tokenizer)

    def drop(self, request_id: int) -> None:
        for seq in self._requests.pop(request_id, (None, []))[1]:
            self.sequences.pop(seq.seq_id, None)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._requests


def build_output(
    request_id: int, prompt: str | None, seqs: list[Sequence], tokenizer
) -> RequestOutput:
    """The ``RequestOutput`` of a request whose sequences have all finished."""
    decoded: dict[int, str] = {}

    def token_text(t: int) -> str:
        if t not in decoded:
            decoded[t] = tokenizer.decode([t])
        return decoded[t]

    outputs = [_completion(seq, tokenizer, token_text) for seq in seqs]
    firsts = [s.first_token_time for s in seqs if s.first_token_time is not None]
    ends = [s.finish_time for s in seqs if s.finish_time is not None]
    metrics = RequestMetrics(
        arrival_time=seqs[0].arrival_time,
        first_token_time=min(firsts) if firsts else None,
        finished_time=max(ends) if len(ends) == len(seqs) else None,
    )
    first = seqs[0]
    tops = list(first.top_logprobs) if first.params.logprobs else None
    return RequestOutput(
        request_id,
        prompt,
        first.token_ids[: first.num_prompt_tokens],
        outputs,
        finished=all(s.is_finished for s in seqs),
        metrics=metrics,
        top_logprobs=tops,
    )


def _completion(seq: Sequence, tokenizer, token_text) -> CompletionOutput:
    params, token_ids = seq.params, seq.completion_token_ids
    logprobs = cumulative = None
    if params.logprobs is not None:
        logprobs = []
        ranks = seq.logprob_ranks or [None] * len(seq.logprobs)
        tops = seq.top_logprobs or [{}] * len(seq.logprobs)
        for token, lp, rank, top in zip(token_ids, seq.logprobs, ranks, tops):
            position = {token: Logprob(lp, rank, token_text(token))}
            for r, (t, v) in enumerate(top.items(), start=1):
                position.setdefault(t, Logprob(v, r, token_text(t)))
            logprobs.append(position)
        cumulative = float(sum(seq.logprobs))
    return CompletionOutput(
        index=seq.index,
        text=final_text(seq, tokenizer),
        token_ids=token_ids,
        cumulative_logprob=cumulative,
        logprobs=logprobs,
        finish_reason=seq.finish_reason.value if seq.finish_reason else None,
        stop_reason=_stop_reason(seq),
        num_cached_tokens=seq.num_cached_tokens,
        error=seq.error,
    )


def _stop_reason(seq: Sequence) -> int | str | None:
    """vLLM's: the stop string, or the stop token id (None when EOS or no stop ended it)."""
    if seq.stop_reason is not None or seq.finish_reason is None:
        return seq.stop_reason
    if seq.finish_reason.value == "stop" and seq.num_completion_tokens:
        last = seq.token_ids[-1]
        if last in seq.params.stop_token_ids:
            return last
    return None
