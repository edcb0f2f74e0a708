"""CPU steps run on ``Config.cpu_threads`` torch threads, and only the steps do
(engine/runner/threads.py)."""

from __future__ import annotations

import pytest
import torch

from nanovllm import LLM, SamplingParams
from nanovllm.engine.runner.threads import default_cpu_threads, step_threads
from nanovllm.errors import ConfigError


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_step_threads_sets_then_restores(two_threads):
    with step_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with step_threads(None):
        assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), step_threads(1):
        raise RuntimeError("a step that fails still gives the threads back")
    assert torch.get_num_threads() == 2


def test_the_default_leaves_one_core(two_threads):
    assert default_cpu_threads() == 1
    torch.set_num_threads(1)
    assert default_cpu_threads() == 1


@pytest.mark.parametrize("configured, seen", [(None, 1), (3, 3)])
def test_the_forward_runs_on_the_configured_threads(tiny_model, two_threads, configured, seen):
    with LLM(tiny_model, cpu_threads=configured) as llm:
        threads = []
        llm.executor.model.register_forward_hook(lambda *_: threads.append(torch.get_num_threads()))
        llm.generate([[5, 6, 7]], SamplingParams(max_tokens=3), use_tqdm=False)
        assert threads and set(threads) == {seen}
        assert torch.get_num_threads() == 2  # the process's own setting, outside the steps


def test_cpu_threads_must_be_positive(tiny_model):
    with pytest.raises(ConfigError, match="cpu_threads=0"):
        LLM(tiny_model, cpu_threads=0)
