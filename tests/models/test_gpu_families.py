"""GPU checks per model family (skipped without CUDA): the Triton backend (attention, and for
Qwen3-MoE the fused experts), eager and with CUDA graphs, against the torch reference backend,
in float32 on small random models."""

from __future__ import annotations

import random

import pytest
import torch

from nanovllm import LLM, SamplingParams
from nanovllm.testing import tiny_model_path

pytestmark = pytest.mark.gpu

WIDER = dict(hidden_size=256, head_dim=64, intermediate_size=512, num_hidden_layers=4)
CONFIGS = {  # MoE first: its torch_ref run (a loop over experts) is the slowest
    "qwen3_moe": dict(WIDER, num_experts=16, num_experts_per_tok=4, moe_intermediate_size=128),
    "llama": dict(WIDER),
    "qwen2": dict(WIDER, hidden_size=384),  # 6 heads x 64
    "mistral": dict(WIDER),
    "qwen3": dict(WIDER),
}
GREEDY = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True, logprobs=0)


def mixed_prompts():
    rng = random.Random(0)
    shared = [rng.randrange(3, 448) for _ in range(300)]  # > one 256-token block: prefix hits
    prompts = [[rng.randrange(3, 448) for _ in range(n)] for n in (1, 7, 100, 255, 256, 257, 700)]
    return prompts + [shared + [1, 2, 3], shared + [4, 5]]


def generate(path, backend: str, eager: bool, **config):
    with LLM(
        path,
        max_model_len=2048,
        gpu_memory_utilization=0.3,
        dtype="float32",
        attention_backend=backend,
        enforce_eager=eager,
        **config,
    ) as llm:
        steps = _expert_load_sums(llm)
        outs = llm.generate(mixed_prompts(), GREEDY, use_tqdm=False)
        assert llm.check_integrity() == []
        return outs, steps


def _expert_load_sums(llm) -> list:
    """Per step: (tokens in the step, tokens counted over every expert of each sparse layer)."""
    seen, launch, collect, sizes = [], llm.executor.launch, llm.executor.collect, []

    def launched(inputs):
        sizes.append(inputs.num_tokens)
        return launch(inputs)

    def collected(handle):
        out, timing = collect(handle)
        num_tokens = sizes.pop(0)
        if timing.expert_tokens is not None:
            seen.append((num_tokens, timing.expert_tokens.sum(axis=1).tolist()))
        return out, timing

    llm.executor.launch, llm.executor.collect = launched, collected
    return seen


@pytest.mark.parametrize("family", list(CONFIGS))
def test_triton_equals_torch_ref_in_float32_with_graphs(family):
    path = str(tiny_model_path(family=family, **CONFIGS[family]))
    ref, _ = generate(path, "torch_ref", eager=True)
    for eager in (True, False):
        outs, steps = generate(path, "triton", eager, max_num_batched_tokens=512, max_num_seqs=4)
        assert [o["token_ids"] for o in outs] == [o["token_ids"] for o in ref], (family, eager)
        for a, b in zip(outs, ref):
            torch.testing.assert_close(
                torch.tensor(a["logprobs"]), torch.tensor(b["logprobs"]), atol=2e-3, rtol=0
            )
        if family == "qwen3_moe":  # graph padding rows are not counted as routed tokens
            k = CONFIGS[family]["num_experts_per_tok"]
            assert steps and all(sums == [n * k] * len(sums) for n, sums in steps)
