"""Stop strings, min_tokens, penalties, n and skip_special_tokens in the whole engine, checked
against Hugging Face ``generate`` with the same settings (greedy, float32 on CPU) where HF has
them, and against hand-computed expectations where it does not."""

from __future__ import annotations

import os
import random

import pytest
import torch

from nanovllm import LLM, SamplingParams

MAX_NEW = 16


def _triton_usable() -> bool:
    if torch.cuda.is_available():
        return True
    return os.environ.get("TRITON_INTERPRET") == "1"


try:
    import triton  # noqa: F401

    HAS_TRITON = True
except ImportError:
    HAS_TRITON = False

BACKENDS = [
    "torch_ref",
    pytest.param(
        "triton",
        marks=pytest.mark.skipif(
            not (HAS_TRITON and _triton_usable()),
            reason="needs triton (on CPU: TRITON_INTERPRET=1 before import)",
        ),
    ),
]


@pytest.fixture(scope="module")
def hf(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="module")
def llm(tiny_model):
    with LLM(tiny_model, kvcache_block_size=16, max_model_len=512, dtype="float32") as engine:
        yield engine


def prompts(n: int = 4, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, 448) for _ in range(k)] for k in (3, 9, 17, 30, 5, 12)[:n]]


def hf_generate(model, prompt: list[int], **kwargs) -> list[int]:
    kwargs.setdefault("max_new_tokens", MAX_NEW)
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), do_sample=False, pad_token_id=0, **kwargs)
    return out[0, len(prompt) :].tolist()


def run(llm, prompt, **params) -> object:
    params.setdefault("temperature", 0)
    params.setdefault("max_tokens", MAX_NEW)
    return llm.generate([prompt], SamplingParams(**params), use_tqdm=False)[0]


# ---- stop strings --------------------------------------------------------------------------------
def pick_stop(text: str, rng: random.Random) -> str:
    """A 3-character stop string of letters from the first two thirds of ``text`` (so it stops
    the completion early), first found there."""
    starts = [
        i
        for i in range(2, 2 * len(text) // 3)
        if text[i : i + 3].isascii()
        and text[i : i + 3].strip().isalpha()
        and "\ufffd" not in text[i : i + 5]  # a split character right after would hold it back
    ]
    for i in rng.sample(starts, len(starts)):
        if text.find(text[i : i + 3]) == i:
            return text[i : i + 3]
    raise AssertionError(f"no stop string candidate in {text!r}")


@pytest.mark.parametrize("include", [False, True])
def test_stop_strings_match_transformers(llm, hf, include):
    model, tok = hf
    rng = random.Random(1)
    checked = 0
    for prompt in prompts(4):
        free = run(llm, prompt, ignore_eos=False, max_tokens=24)
        text = free.outputs[0].text
        if free.outputs[0].finish_reason != "length":
            continue  # a 24-token completion to cut
        stop = pick_stop(text, rng)
        out = run(llm, prompt, max_tokens=24, stop=[stop], include_stop_str_in_output=include)
        ref = hf_generate(model, prompt, max_new_tokens=24, stop_strings=[stop], tokenizer=tok)
        c = out.outputs[0]
        assert c.token_ids == ref  # HF stops on the token that completes the stop string too
        assert len(c.token_ids) < 24 and c.finish_reason == "stop" and c.stop_reason == stop
        cut = text.index(stop) + (len(stop) if include else 0)
        assert c.text == text[:cut]
        checked += 1
    assert checked >= 2


# ---- min_tokens ----------------------------------------------------------------------------------
def test_min_tokens_matches_transformers_min_new_tokens(llm, hf):
    model, _ = hf
    checked = 0
    for prompt in prompts(6):
        free = run(llm, prompt).outputs[0].token_ids
        stopper = free[1]
        if stopper in free[:1]:
            continue
        early = run(llm, prompt, stop_token_ids=[stopper]).outputs[0]
        assert early.token_ids == free[:2] and early.stop_reason == stopper  # stops at once
        out = run(llm, prompt, stop_token_ids=[stopper], min_tokens=6).outputs[0]
        ref = hf_generate(model, prompt, eos_token_id=[0, stopper], min_new_tokens=6)
        assert out.token_ids == ref
        assert len(out.token_ids) > 6 and stopper not in out.token_ids[:6]
        checked += 1
    assert checked >= 2


# ---- penalties -----------------------------------------------------------------------------------
class OpenAIPenalties:
    """presence / frequency penalties as OpenAI documents them, over the generated tokens only:
    ``logit[t] -= frequency * count[t] + presence * (count[t] > 0)``. A HF logits processor."""

    def __init__(self, prompt_len: int, presence: float, frequency: float):
        self.prompt_len, self.presence, self.frequency = prompt_len, presence, frequency

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.clone()
        for b in range(scores.shape[0]):
            counts = torch.bincount(input_ids[b, self.prompt_len :], minlength=scores.shape[-1])
            counts = counts[: scores.shape[-1]].to(scores.dtype)
            scores[b] -= self.frequency * counts + self.presence * (counts > 0).to(scores.dtype)
        return scores


@pytest.mark.parametrize("backend", BACKENDS)
def test_penalties_match_transformers(tiny_model, hf, backend):
    from transformers import LogitsProcessorList

    model, _ = hf
    cases = [
        dict(repetition_penalty=1.8),
        dict(repetition_penalty=0.7),
        dict(presence_penalty=1.5),
        dict(frequency_penalty=1.2),
        dict(repetition_penalty=1.3, presence_penalty=0.5, frequency_penalty=0.8),
    ]
    changed = 0
    config = dict(kvcache_block_size=16, attention_backend=backend, dtype="float32")
    config.update(max_model_len=512, num_kvcache_blocks=64)  # no memory probe (see below)
    with LLM(tiny_model, enforce_eager=True, **config) as llm:
        for case in cases:
            for prompt in prompts(3, seed=2):
                out = run(llm, prompt, ignore_eos=True, **case).outputs[0].token_ids
                procs = LogitsProcessorList()
                if case.get("presence_penalty") or case.get("frequency_penalty"):
                    procs.append(
                        OpenAIPenalties(
                            len(prompt),
                            case.get("presence_penalty", 0.0),
                            case.get("frequency_penalty", 0.0),
                        )
                    )
                ref = hf_generate(
                    model,
                    prompt,
                    min_new_tokens=MAX_NEW,
                    repetition_penalty=case.get("repetition_penalty", 1.0),
                    logits_processor=procs,
                )
                assert out == ref, (case, prompt)
                plain = run(llm, prompt, ignore_eos=True).outputs[0].token_ids
                changed += out != plain
    assert changed >= len(cases)  # the penalties did change the outputs


# ---- n samples -----------------------------------------------------------------------------------
@pytest.mark.parametrize("chunk", [None, 16])
@pytest.mark.parametrize("overlap", [False, True])
def test_n_samples_compute_the_prompt_once(tiny_model, chunk, overlap):
    """n=4 samples of a 40-token prompt (blocks of 16): sample 0 computes all 40 tokens, the
    others find the two full blocks in the prefix cache and compute the last 8."""
    prompt = prompts(6, seed=3)[3][:30] + list(range(100, 110))
    assert len(prompt) == 40
    # a fixed cache: the GPU's memory probe would see what other tests' engines still hold
    config = dict(
        kvcache_block_size=16,
        dtype="float32",
        max_model_len=512,
        num_kvcache_blocks=64,
        overlap_scheduling=overlap,
    )
    if chunk:
        config["max_num_batched_tokens"] = chunk  # the leader's prefill takes 3 steps
    with LLM(tiny_model, **config) as llm:
        records = []
        llm.subscribe(records.append)
        params = SamplingParams(n=4, temperature=0.8, seed=11, max_tokens=6, ignore_eos=True)
        [out] = llm.generate([prompt], params, use_tqdm=False)
        prefill = sum(r.num_prefill_tokens for r in records)
        assert prefill == 40 + 3 * 8 == llm.get_metrics()["prefill_tokens"]
        assert [c.num_cached_tokens for c in out.outputs] == [0, 32, 32, 32]
        assert [c.index for c in out.outputs] == [0, 1, 2, 3]
        # sample i is the request with seed 11 + i, alone (a hand-checkable expectation)
        for i, c in enumerate(out.outputs):
            alone = SamplingParams(temperature=0.8, seed=11 + i, max_tokens=6, ignore_eos=True)
            assert c.token_ids == llm.generate([prompt], alone, use_tqdm=False)[0]["token_ids"]
        assert len({tuple(c.token_ids) for c in out.outputs}) > 1
        assert llm.check_integrity() == []


def test_n_greedy_samples_agree_and_abort_takes_them_all(llm):
    prompt = prompts(2)[1]
    [out] = llm.generate([prompt], SamplingParams(n=3, temperature=0, max_tokens=8), False)
    single = run(llm, prompt, max_tokens=8).outputs[0].token_ids
    assert [c.token_ids for c in out.outputs] == [single] * 3
    rid = llm.add_request(prompt, SamplingParams(n=3, max_tokens=50, ignore_eos=True))
    llm.step()
    llm.abort(rid)
    out = llm.get_output(rid)
    assert [c.finish_reason for c in out.outputs] == ["abort"] * 3
    assert not llm.has_unfinished() and llm.check_integrity() == []


# ---- special tokens in the text ------------------------------------------------------------------
def test_skip_special_tokens(llm):
    tok = llm.get_tokenizer()
    special = set(tok.all_special_ids)  # <|endoftext|>, <|im_start|>, <|im_end|>
    prompt, found = prompts(1)[0], None
    for seed in range(20):  # sampling reaches a special token now and then
        params = dict(temperature=1.5, seed=seed, max_tokens=120, ignore_eos=True)
        c = run(llm, prompt, **params).outputs[0]
        if special & set(c.token_ids):
            found = (prompt, params, c)
            break
    assert found, "no sampled completion held a special token"
    prompt, params, skipped = found
    kept = run(llm, prompt, skip_special_tokens=False, **params).outputs[0]
    assert kept.token_ids == skipped.token_ids
    names = [tok.decode([t]) for t in special]
    assert any(n in kept.text for n in names) and not any(n in skipped.text for n in names)
    assert kept.text == tok.decode(kept.token_ids)
    assert skipped.text == tok.decode(skipped.token_ids, skip_special_tokens=True)
