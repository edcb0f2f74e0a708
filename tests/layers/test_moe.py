"""Mixture of experts (layers/moe.py, models/qwen3_moe.py): the router and the reference experts
against Hugging Face's Qwen3-MoE modules, expert sharding, and the per-step expert-load fact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from nanovllm.attention import get_backend
from nanovllm.config import Config
from nanovllm.engine.runner.inputs import StepInputs
from nanovllm.engine.runner.model_runner import ModelRunner
from nanovllm.layers.moe import count_tokens, experts_torch, select_experts
from nanovllm.layers.parallel import TensorParallel
from nanovllm.layers.sampling_batch import SamplingBatch
from nanovllm.models import get_model_class
from nanovllm.testing import tiny_model_path
from nanovllm.utils.loader import load_model


@pytest.fixture(scope="module")
def moe_path() -> str:
    return str(tiny_model_path(family="qwen3_moe"))


def hf_block(norm_topk_prob: bool, experts=8, top_k=3, hidden=32, inter=24):
    from transformers import Qwen3MoeConfig
    from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock

    config = Qwen3MoeConfig(
        hidden_size=hidden,
        moe_intermediate_size=inter,
        num_experts=experts,
        num_experts_per_tok=top_k,
        norm_topk_prob=norm_topk_prob,
    )
    block = Qwen3MoeSparseMoeBlock(config).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape) * 0.3)
    return block


@pytest.mark.parametrize("norm_topk_prob", [True, False])
def test_router_and_reference_experts_equal_transformers(norm_topk_prob):
    torch.manual_seed(0)
    block = hf_block(norm_topk_prob)
    x = torch.randn(19, 32)
    _, hf_weights, hf_ids = block.gate(x)
    weights, ids = select_experts(x @ block.gate.weight.T, 3, norm_topk_prob)
    assert torch.equal(ids, hf_ids)
    torch.testing.assert_close(weights, hf_weights, rtol=0, atol=1e-7)
    if norm_topk_prob:
        torch.testing.assert_close(weights.sum(-1), torch.ones(19))
    w13, w2 = block.experts.gate_up_proj, block.experts.down_proj  # [E, 2I, H], [E, H, I]
    with torch.no_grad():
        want = block(x[None])[0]
        got = experts_torch(x, w13, w2, weights, ids)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_count_tokens_skips_invalid_rows():
    ids = torch.tensor([[0, 3], [3, 1], [2, 0], [1, 3]])
    out = torch.full((4,), 99, dtype=torch.int64)
    count_tokens(out, ids, torch.tensor([True, True, False, True]))
    assert out.tolist() == [1, 2, 0, 3]


@pytest.mark.parametrize("rank", [0, 1])
def test_each_rank_loads_its_slice_of_every_expert(moe_path, rank):
    config = Config.from_model(moe_path, device="cpu", dtype="float32", tensor_parallel_size=2)
    model = get_model_class(config.spec.architecture)(
        config.spec, get_backend("torch_ref"), TensorParallel(rank, 2)
    )
    load_model(model, moe_path)
    with safe_open(str(Path(moe_path) / "model.safetensors"), "pt", "cpu") as f:
        full = {name: f.get_tensor(name) for name in f.keys()}
    experts = model.model.layers[2].mlp.experts
    n = 16  # moe_intermediate_size 32 over 2 ranks
    for e in (0, 5, 7):
        p = f"model.layers.2.mlp.experts.{e}."
        rows = slice(rank * n, (rank + 1) * n)
        assert torch.equal(experts.w13_weight[e, :n], full[p + "gate_proj.weight"][rows])
        assert torch.equal(experts.w13_weight[e, n:], full[p + "up_proj.weight"][rows])
        assert torch.equal(experts.w2_weight[e], full[p + "down_proj.weight"][:, rows])
    router = model.model.layers[2].mlp.gate.weight
    assert torch.equal(router, full["model.layers.2.mlp.gate.weight"])  # replicated
    assert not hasattr(model.model.layers[1].mlp, "experts")  # mlp_only_layers=[1]


def test_missing_expert_tensor_is_a_load_error(moe_path, tmp_path):
    from safetensors.torch import save_file

    from nanovllm import ModelLoadError

    with safe_open(str(Path(moe_path) / "model.safetensors"), "pt", "cpu") as f:
        kept = {
            k: f.get_tensor(k)
            for k in f.keys()
            if k != "model.layers.0.mlp.experts.6.up_proj.weight"
        }
    save_file(kept, str(tmp_path / "model.safetensors"))
    config = Config.from_model(moe_path, device="cpu", dtype="float32")
    model = get_model_class(config.spec.architecture)(
        config.spec, get_backend("torch_ref"), TensorParallel()
    )
    with pytest.raises(ModelLoadError, match=r"experts\.w13_weight#\(6, 'up'\)"):
        load_model(model, tmp_path)


def _prefill(prompt: list[int], block_size: int = 16) -> StepInputs:
    n = len(prompt)
    blocks = -(-n // block_size)
    return StepInputs(
        input_ids=np.array(prompt, dtype=np.int64),
        positions=np.arange(n, dtype=np.int64),
        slot_mapping=np.arange(n, dtype=np.int64),
        cu_seqlens_q=np.array([0, n], dtype=np.int32),
        seq_lens=np.array([n], dtype=np.int32),
        block_tables=np.arange(blocks, dtype=np.int32)[None, :],
        logits_indices=np.array([n - 1], dtype=np.int64),
        sampling=SamplingBatch([0.0], [None], [1.0], [None], [0], [None]),
    )


def test_runner_reports_tokens_per_expert_as_hf_routes_them(moe_path):
    from transformers import AutoModelForCausalLM

    prompt = [(7 * i + 3) % 440 + 3 for i in range(29)]
    config = Config.from_model(moe_path, device="cpu", kvcache_block_size=16, max_model_len=256)
    runner = ModelRunner(config.with_num_blocks(16))
    try:
        _, timing = runner.run(_prefill(prompt))
    finally:
        runner.close()
    got = timing.expert_tokens
    assert got.shape == (2, 8) and got.dtype == np.int64  # layers 0 and 2 are sparse
    hf = AutoModelForCausalLM.from_pretrained(moe_path, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = hf(torch.tensor([prompt]), output_router_logits=True).router_logits
    for layer, router_logits in enumerate(logits):
        ids = router_logits.reshape(len(prompt), -1).softmax(-1).topk(2, dim=-1).indices
        want = torch.bincount(ids.flatten(), minlength=8).numpy()
        assert (got[layer] == want).all(), (layer, got[layer], want)
    assert (got.sum(axis=1) == 2 * len(prompt)).all()


def test_dense_models_report_no_expert_tokens(tiny_model):
    config = Config.from_model(tiny_model, device="cpu", kvcache_block_size=16, max_model_len=256)
    runner = ModelRunner(config.with_num_blocks(16))
    try:
        _, timing = runner.run(_prefill([5, 6, 7]))
    finally:
        runner.close()
    assert timing.expert_tokens is None


def test_step_records_carry_the_tokens_per_expert(moe_path, tiny_model):
    from nanovllm import LLM, SamplingParams

    params = SamplingParams(temperature=0, max_tokens=3, ignore_eos=True)
    with LLM(moe_path, kvcache_block_size=16, max_model_len=256) as llm:
        llm.add_request([5, 6, 7, 8, 9], params)
        llm.add_request([10, 11], params)
        prefill, decode = llm.step(), llm.step()
    for record in (prefill, decode):  # every computed token picks top_k = 2 experts per layer
        assert record.expert_tokens.shape == (2, 8)
        assert (record.expert_tokens.sum(axis=1) == 2 * record.num_tokens).all()
    with LLM(tiny_model, kvcache_block_size=16) as llm:
        llm.add_request([5, 6, 7], params)
        assert llm.step().expert_tokens is None
