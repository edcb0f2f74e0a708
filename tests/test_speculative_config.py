"""speculative_config: vLLM's dict accepted, bad input refused with typed errors that say what to
change (nanovllm/speculative_config.py, Config._check_speculative)."""

from __future__ import annotations

import pytest

from nanovllm import LLM
from nanovllm.config import Config
from nanovllm.errors import ConfigError
from nanovllm.speculative_config import SpeculativeConfig


def test_vllm_dict_becomes_a_typed_config(tiny_model):
    spec = {
        "method": "ngram",
        "num_speculative_tokens": 4,
        "prompt_lookup_min": 2,
        "prompt_lookup_max": 5,
    }
    cfg = Config.from_model(tiny_model, speculative_config=spec)
    assert cfg.speculative_config == SpeculativeConfig("ngram", 4, 2, 5)
    assert Config.from_model(tiny_model).speculative_config is None


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"method": "eagle", "num_speculative_tokens": 3}, r"method='eagle'.*\['ngram'\]"),
        ({"method": "ngram", "model": "x"}, r"keys \['model'\].*supported keys"),
        ({"num_speculative_tokens": 3}, "needs a method"),
        ({"method": "ngram", "num_speculative_tokens": 0}, "num_speculative_tokens=0 must be"),
        ({"method": "ngram", "num_speculative_tokens": -2}, "num_speculative_tokens=-2 must be"),
        ({"method": "ngram", "num_speculative_tokens": 2.5}, "must be a positive integer"),
        (
            {"method": "ngram", "prompt_lookup_min": 4, "prompt_lookup_max": 2},
            "prompt_lookup_min=4 exceeds prompt_lookup_max=2",
        ),
        ("ngram", "must be a dict"),
    ],
)
def test_bad_speculative_config(tiny_model, spec, match):
    with pytest.raises(ConfigError, match=match):
        Config.from_model(tiny_model, speculative_config=spec)


def test_draft_longer_than_the_model_length_allows(tiny_model):
    spec = {"method": "ngram", "num_speculative_tokens": 62}
    with pytest.raises(ConfigError, match=r"too large for max_model_len=64.*<=61"):
        Config.from_model(tiny_model, max_model_len=64, speculative_config=spec)
    Config.from_model(
        tiny_model,
        max_model_len=64,
        speculative_config={"method": "ngram", "num_speculative_tokens": 61},
    )


def test_draft_larger_than_the_token_budget(tiny_model):
    spec = {"method": "ngram", "num_speculative_tokens": 8}
    with pytest.raises(ConfigError, match=r"max_num_batched_tokens=8.*<=7"):
        Config.from_model(tiny_model, max_num_batched_tokens=8, speculative_config=spec)


def test_tensor_parallel_cannot_speculate(tiny_model):
    with pytest.raises(ConfigError, match="one rank only.*tensor_parallel_size=1"):
        Config.from_model(
            tiny_model, tensor_parallel_size=2, speculative_config={"method": "ngram"}
        )


def test_llm_refuses_before_building_anything(tiny_model):
    with pytest.raises(ConfigError, match="method='medusa'"):
        LLM(tiny_model, speculative_config={"method": "medusa"})
