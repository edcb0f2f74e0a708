"""Tensor parallelism: layers shard at load time, and 2 ranks generate what 1 rank does (CPU, gloo).

The sharding tests build a model per rank with an explicit ``TensorParallel(rank, 2)`` and no
process group (loading never communicates); the equivalence tests run real worker processes.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from nanovllm import LLM, ConfigError, SamplingParams
from nanovllm.attention import get_backend
from nanovllm.config import Config
from nanovllm.engine.runner.model_runner import ModelRunner
from nanovllm.layers.parallel import TensorParallel
from nanovllm.models import get_model_class
from nanovllm.testing import tiny_model_path
from nanovllm.testing.families import TINY_VARIANTS
from nanovllm.utils.loader import load_model

KW = dict(num_kvcache_blocks=32, kvcache_block_size=16, max_model_len=256)
LONG = "The KV cache is the largest consumer of memory. A naive engine reserves one region"
PROMPTS = ["Hello world", LONG, "A block table maps", LONG + " per request"]  # 33 tokens in common


@pytest.fixture(scope="module")
def heads6_model() -> str:
    return str(tiny_model_path(**TINY_VARIANTS["heads6"]))


def generate(model: str, tp: int, params: SamplingParams, **kw) -> list[dict]:
    with LLM(model, tensor_parallel_size=tp, **{**KW, **kw}) as llm:
        return llm.generate(PROMPTS, params, use_tqdm=False)


# ---- sharding at load time -----------------------------------------------------------------------
def _rank_model(path: str, rank: int, size: int):
    config = Config.from_model(path, device="cpu", dtype="float32", tensor_parallel_size=size)
    model = get_model_class(config.spec.architecture)(
        config.spec, get_backend("torch_ref"), TensorParallel(rank, size)
    )
    load_model(model, path)
    return model


def _checkpoint(path: str) -> dict[str, torch.Tensor]:
    with safe_open(str(Path(path) / "model.safetensors"), "pt", "cpu") as f:
        return {name: f.get_tensor(name) for name in f.keys()}


@pytest.mark.parametrize("rank", [0, 1])
def test_each_rank_loads_its_shard_of_the_same_checkpoint(heads6_model, rank):
    full, model = _checkpoint(heads6_model), _rank_model(heads6_model, rank, 2)
    params = dict(model.named_parameters())

    def rows(t: torch.Tensor, n: int = 2) -> torch.Tensor:
        size = -(-t.size(0) // n)
        return t[rank * size : (rank + 1) * size]

    def cols(t: torch.Tensor) -> torch.Tensor:
        return t.chunk(2, dim=1)[rank]

    p = "model.layers.1."
    qkv = torch.cat([rows(full[p + f"self_attn.{x}_proj.weight"]) for x in "qkv"])
    assert torch.equal(params[p + "self_attn.qkv_proj.weight"], qkv)
    assert params[p + "self_attn.qkv_proj.weight"].shape == (
        (3 + 2 * 1) * 16,
        64,
    )  # 3 q + 1 k + 1 v heads
    assert torch.equal(
        params[p + "self_attn.o_proj.weight"], cols(full[p + "self_attn.o_proj.weight"])
    )
    gate_up = torch.cat([rows(full[p + f"mlp.{x}_proj.weight"]) for x in ("gate", "up")])
    assert torch.equal(params[p + "mlp.gate_up_proj.weight"], gate_up)
    assert torch.equal(params[p + "mlp.down_proj.weight"], cols(full[p + "mlp.down_proj.weight"]))
    assert torch.equal(params["model.embed_tokens.weight"], rows(full["model.embed_tokens.weight"]))
    assert torch.equal(params["lm_head.weight"], rows(full["lm_head.weight"]))
    assert torch.equal(params[p + "input_layernorm.weight"], full[p + "input_layernorm.weight"])


def test_world_size_one_needs_no_process_or_group(tiny_model):
    with LLM(tiny_model, **KW) as llm:
        assert isinstance(llm.executor, ModelRunner)
        llm.generate(["hi"], SamplingParams(max_tokens=2), use_tqdm=False)
        assert mp.active_children() == []
        assert not torch.distributed.is_initialized()


# ---- equivalence ---------------------------------------------------------------------------------
GREEDY = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True, logprobs=2)


@pytest.mark.parametrize("which", ["tiny", "heads6", "odd_vocab"])
def test_two_ranks_generate_what_one_does(which, tiny_model, heads6_model):
    model = {"tiny": tiny_model, "heads6": heads6_model}.get(which) or str(
        tiny_model_path(**TINY_VARIANTS["odd_vocab"])
    )
    # a small token budget forces chunked prefill; the shared prefix hits the prefix cache
    kw = dict(max_num_batched_tokens=24)
    one, two = generate(model, 1, GREEDY, **kw), generate(model, 2, GREEDY, **kw)
    assert [o["token_ids"] for o in two] == [o["token_ids"] for o in one]
    assert [o["num_cached_tokens"] for o in two] == [o["num_cached_tokens"] for o in one]
    assert one[3]["num_cached_tokens"] >= 16
    for a, b in zip(one, two, strict=True):
        assert b["logprobs"] == pytest.approx(a["logprobs"], abs=1e-4)
        assert [list(t) for t in b["top_logprobs"]] == [list(t) for t in a["top_logprobs"]]
    assert not torch.distributed.is_initialized()  # the main process never joins a group


def test_four_ranks_on_six_heads_is_a_clear_config_error(heads6_model):
    with pytest.raises(ConfigError) as info:
        LLM(heads6_model, tensor_parallel_size=4, **KW)
    message = str(info.value)
    assert "tensor_parallel_size=4" in message and "num_attention_heads=6" in message
    assert "pass one of [1, 2, 3, 6]" in message
    assert mp.active_children() == []  # refused before any worker was spawned
