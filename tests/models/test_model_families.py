"""Every supported family against Hugging Face transformers on the same random weights (CPU, fp32).

Per family: greedy tokens of a batch of mixed-length prompts equal ``generate(do_sample=False)``
token for token, logprobs equal teacher-forced HF log-softmax within float32 tolerance, and two
tensor-parallel ranks (gloo) generate what one does. The tiny shapes (testing/families.py) use
GQA ratios other than Qwen3-0.6B's 2:1, untied heads, Llama 3 rope scaling, Qwen2's q/k/v
biases, and a dense layer among Qwen3-MoE's sparse ones.
"""

from __future__ import annotations

import pytest
import torch

from nanovllm import LLM, SamplingParams
from nanovllm.config import Config
from nanovllm.testing import tiny_model_path
from nanovllm.testing.hf_oracle import MAX_NEW_TOKENS, assert_matches_transformers, oracle_prompts

# name -> (family, overrides of the family's tiny config)
CASES = {
    "llama": ("llama", {}),  # GQA 4:1, untied, llama3 rope scaling
    "llama_tied_bias": (
        "llama",
        dict(tie_word_embeddings=True, attention_bias=True, mlp_bias=True),
    ),
    "qwen2": ("qwen2", {}),  # GQA 3:1, q/k/v bias
    "mistral": ("mistral", {}),  # MHA
    "qwen3_moe": ("qwen3_moe", {}),  # GQA 8:1, 8 experts top-2 renormalized, layer 1 dense
    "qwen3_moe_unnormed": (
        "qwen3_moe",
        dict(norm_topk_prob=False, decoder_sparse_step=2, mlp_only_layers=[]),
    ),
}
GREEDY = SamplingParams(temperature=0, max_tokens=MAX_NEW_TOKENS, ignore_eos=True, logprobs=3)


def case_path(name: str) -> str:
    family, overrides = CASES[name]
    return str(tiny_model_path(family=family, **overrides))


@pytest.mark.parametrize("name", list(CASES))
def test_greedy_tokens_and_logprobs_match_transformers(name):
    path = case_path(name)
    # max_num_batched_tokens=48: the 64-token prompt is prefilled in chunks
    model = assert_matches_transformers(path, kvcache_block_size=16, max_num_batched_tokens=48)
    assert type(model).__name__ == Config.from_model(path).spec.architecture


def test_tiny_configs_exercise_what_each_family_adds():
    specs = {name: Config.from_model(case_path(name)).spec for name in CASES}
    ratios = {n: s.num_attention_heads // s.num_key_value_heads for n, s in specs.items()}
    assert ratios == dict(
        llama=4, llama_tied_bias=4, qwen2=3, mistral=1, qwen3_moe=8, qwen3_moe_unnormed=8
    )
    assert specs["llama"].rope_scaling.rope_type == "llama3"
    assert not any(s.tie_word_embeddings for n, s in specs.items() if n != "llama_tied_bias")
    assert specs["llama_tied_bias"].tie_word_embeddings and specs["llama_tied_bias"].mlp_bias
    moe = specs["qwen3_moe"].moe
    assert [moe.is_sparse(i) for i in range(3)] == [True, False, True] and moe.norm_topk_prob
    unnormed = specs["qwen3_moe_unnormed"].moe
    assert [unnormed.is_sparse(i) for i in range(3)] == [False, True, False]


# ---- tensor parallelism ------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", ["llama", "qwen2", "mistral", "qwen3_moe"])
def test_two_ranks_generate_what_one_does(name):
    path = case_path(name)
    kw = dict(num_kvcache_blocks=64, kvcache_block_size=16, max_model_len=256)
    prompts = oracle_prompts(448)
    runs = {}
    for tp in (1, 2):
        with LLM(path, tensor_parallel_size=tp, max_num_batched_tokens=40, **kw) as llm:
            loads = _record_expert_tokens(llm)
            runs[tp] = llm.generate(prompts, GREEDY, use_tqdm=False), loads
    (one, loads1), (two, loads2) = runs[1], runs[2]
    assert [o["token_ids"] for o in two] == [o["token_ids"] for o in one]
    for a, b in zip(one, two, strict=True):
        assert b["logprobs"] == pytest.approx(a["logprobs"], abs=1e-4)
    assert len(loads1) == len(loads2)  # MoE: rank 0 reports the same routing as one rank
    assert all((c is not None) == (name == "qwen3_moe") for c in loads1 + loads2)
    for c1, c2 in zip(loads1, loads2):
        assert (c1 is None and c2 is None) or (c1 == c2).all()
    assert not torch.distributed.is_initialized()


def _record_expert_tokens(llm) -> list:
    """Wraps the executor's ``collect`` (one process or the worker group) to keep each step's
    ``RunTiming.expert_tokens``."""
    seen, collect = [], llm.executor.collect

    def wrapped(launched):
        out, timing = collect(launched)
        seen.append(timing.expert_tokens)
        return out, timing

    llm.executor.collect = wrapped
    return seen
