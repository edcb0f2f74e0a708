"""Scoring a teaching checkpoint on the held-out set, through this project's engine (greedy).

Contract:
- `continue_cases(llm, cases)` generates greedily for every case in one `generate` call, each with
  just enough tokens to show its checked words (and one more: an end of line, or punctuation
  glued to the last word), and returns each output's token ids and text.
- `evaluate(path)` builds an `LLM` on `path` (float32, the CPU reference attention) and returns
  the `held_out.Score` of `held_out_cases()`: what `python -m nanovllm.teaching` prints and the
  record of the shipped model holds.
"""

from __future__ import annotations

from pathlib import Path

from nanovllm.teaching.held_out import Case, Score, held_out_cases


def max_tokens(tokenizer, case: Case) -> int:
    return len(tokenizer.encode(" ".join(case.checked()), add_special_tokens=False)) + 1


def continue_cases(llm, cases: list[Case]) -> list[tuple[list[int], str]]:
    from nanovllm import SamplingParams

    params = [SamplingParams(temperature=0, max_tokens=max_tokens(llm.tokenizer, c)) for c in cases]
    outs = llm.generate([c.prompt for c in cases], params, use_tqdm=False)
    return [(list(o.outputs[0].token_ids), o.outputs[0].text) for o in outs]


def evaluate(path: str | Path, cases: list[Case] | None = None, **engine) -> Score:
    from nanovllm import LLM

    cases = held_out_cases() if cases is None else cases
    settings = dict(kvcache_block_size=16, attention_backend="torch_ref", dtype="float32")
    with LLM(str(path), **{**settings, **engine}) as llm:
        texts = [text for _, text in continue_cases(llm, cases)]
    return Score.of(cases, texts)
