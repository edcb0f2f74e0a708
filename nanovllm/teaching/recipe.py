"""The teaching model's recipe: everything its weights depend on, besides the code and versions.

`Recipe()` is the recipe of the shipped model (its record, `model/teaching.json`, holds a copy, and
a test checks they agree). Pure data: nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from nanovllm.teaching.corpus import MIX

TEACHING_CONFIG: dict[str, Any] = {
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "intermediate_size": 384,
    "max_position_embeddings": 512,
    "rope_theta": 10000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The model config, the corpus mix, the optimizer's schedule and the shipped dtype."""

    config: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(TEACHING_CONFIG))
    mix: dict[str, float] = dataclasses.field(default_factory=lambda: dict(MIX))
    seed: int = 0
    steps: int = 2500
    batch_size: int = 8
    seq_len: int = 256
    lr: float = 3e-3
    warmup: int = 20
    # torch's intra-op threads while training. It fixes the sums' order (reproducibility); one,
    # because on a 2-core machine shared with other work two threads ran 8 to 14 times slower.
    threads: int = 1
    dtype: str = "bfloat16"  # of the saved weights (trained in float32)
