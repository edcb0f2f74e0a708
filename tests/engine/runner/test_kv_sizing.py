"""The automatic KV-cache size (Config.auto_num_blocks, runner/memory.kv_budget): what memory
allows, capped at what the configuration can use, so a tiny model on a big GPU gets a sane count.

An H200 is simulated on CPU: the probe's arithmetic is fed the free memory such a GPU reports."""

from __future__ import annotations

import logging

import pytest

from nanovllm import ConfigError
from nanovllm.config import Config
from nanovllm.engine.runner.memory import kv_budget

GiB = 2**30
H200_TOTAL = 143_771 * 2**20  # what torch.cuda.mem_get_info() reports on an H200 (140.4 GiB)


def h200_budget(weights_gib: float = 0.01, activation_gib: float = 0.05) -> int:
    """The probe's budget on an idle H200 with a tiny model loaded and its largest step run."""
    current = int(weights_gib * GiB)
    peak = current + int(activation_gib * GiB)
    free = H200_TOTAL - current - 500 * 2**20  # the CUDA context and allocator slack
    budget, report = kv_budget(H200_TOTAL, free, peak, current, utilization=0.9)
    assert report["kv_budget_gib"] == pytest.approx(budget / GiB)
    return budget


def test_kv_budget_is_utilization_of_total_less_used_and_the_activation_peak():
    budget, report = kv_budget(100 * GiB, 90 * GiB, peak=3 * GiB, current=2 * GiB, utilization=0.9)
    assert budget == 90 * GiB - 10 * GiB - 1 * GiB
    assert report["weights_gib"] == 2 and report["activation_peak_gib"] == 1
    assert kv_budget(10 * GiB, 1 * GiB, 0, 0, 0.5)[0] == 0  # over-committed: nothing, not negative


def test_a_tiny_model_on_an_h200_budget_is_capped_at_what_the_scheduler_can_use(tiny_model):
    # 16-token blocks: the configuration of the tests that the uncapped probe gave ~15.7M blocks
    cfg = Config.from_model(tiny_model, device="cpu", kvcache_block_size=16, max_model_len=256)
    budget = h200_budget()
    assert budget // cfg.kv_bytes_per_block > 10_000_000  # what the memory alone would allow
    num_blocks, cap = cfg.auto_num_blocks(budget)
    working_set = cfg.max_num_seqs * cfg.max_blocks_per_seq  # 512 sequences x 16 blocks
    assert cap == num_blocks == 2 * working_set == 16_384
    # the prefix cache's share is a config field
    small = Config.from_model(
        tiny_model, device="cpu", kvcache_block_size=16, max_model_len=256, prefix_cache_blocks=100
    )
    assert small.auto_num_blocks(budget) == (working_set + 100, working_set + 100)


def test_a_budget_below_the_cap_is_used_as_it_is(tiny_model):
    cfg = Config.from_model(tiny_model, device="cpu", kvcache_block_size=16, max_model_len=256)
    budget = 1000 * cfg.kv_bytes_per_block + 7
    assert cfg.auto_num_blocks(budget) == (1000, None)


def test_the_qwen3_0_6b_bench_keeps_its_memory_sized_cache():
    """BENCH.md's model on an H200 got 4,381 blocks of 256 tokens from the probe: under the cap."""
    from nanovllm.config import ModelSpec
    from nanovllm.testing.random_model import QWEN3_0_6B

    spec = ModelSpec.from_dict({**QWEN3_0_6B, "architectures": ["Qwen3ForCausalLM"]})
    cfg = Config(model="random", spec=spec, dtype="bfloat16", max_model_len=4096)
    num_blocks, cap = cfg.auto_num_blocks(4381 * cfg.kv_bytes_per_block)
    assert (num_blocks, cap) == (4381, None)


def test_prefix_cache_blocks_is_validated(tiny_model):
    with pytest.raises(ConfigError, match="prefix_cache_blocks=-1"):
        Config.from_model(tiny_model, device="cpu", prefix_cache_blocks=-1)


def test_start_up_builds_only_the_capped_count(tiny_model, monkeypatch, caplog):
    """An engine whose memory budget is an H200's builds the capped number of blocks (the KV
    tensor and the block manager's Python objects), and logs the cap."""
    from nanovllm import LLM
    from nanovllm.engine.runner import model_runner

    monkeypatch.setattr(model_runner, "CPU_KVCACHE_BYTES", h200_budget())
    caplog.set_level(logging.INFO, logger="nanovllm")
    with LLM(tiny_model, kvcache_block_size=16, max_model_len=256, max_num_seqs=8) as llm:
        cfg = llm.config
        assert cfg.num_kvcache_blocks == 2 * 8 * 16
        assert len(llm.block_manager.blocks) == cfg.num_kvcache_blocks
        runner = llm.executor
        assert runner.kv_cache.shape[2] == cfg.num_kvcache_blocks
        assert runner.memory_report["capped_at"] == cfg.num_kvcache_blocks
    assert "capped at what max_num_seqs=8" in caplog.text
