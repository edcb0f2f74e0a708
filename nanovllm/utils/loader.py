"""Load safetensors weights into a model, mapping HF names onto merged, sharded parameters.

A model may define ``map_weight_name(hf_name) -> (param name, shard id or None)``; without it the
class attribute ``packed_modules_mapping`` (fragment -> (merged name, shard id)) is used. A merged
parameter lists the shards it needs in ``param.shard_ids``; loading fails unless every parameter
(and every shard of a merged one) received a tensor.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from nanovllm.errors import ModelLoadError


def load_model(model: nn.Module, path: str | Path, load_format: str = "safetensors") -> None:
    """Copy every tensor of ``path/*.safetensors`` into ``model``; raise if any parameter is left
    unloaded. Each parameter's ``weight_loader`` takes its rank's shard (tensor parallelism).

    ``load_format="random"`` reads no file: every parameter is drawn at random where it lives
    (benchmarks of shapes whose checkpoint would not fit the disk; outputs are meaningless)."""
    if load_format == "random":
        init_random_weights(model)
        return
    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        raise ModelLoadError(
            f"no *.safetensors files in {str(path)!r}; convert the checkpoint first"
        )
    params = dict(model.named_parameters(remove_duplicate=False))
    mapper = getattr(model, "map_weight_name", None) or _mapping_mapper(model)
    loaded: set[str] = set()
    for file in files:
        with safe_open(str(file), "pt", "cpu") as f:
            for name in f.keys():
                target, shard_id = mapper(name)
                param = params.get(target)
                if param is None:
                    if name == "lm_head.weight" or "rotary_emb" in name:
                        continue  # tied head stored anyway, or a buffer we compute ourselves
                    raise ModelLoadError(f"checkpoint tensor {name!r} has no place in the model")
                loader = getattr(param, "weight_loader", None)
                tensor = f.get_tensor(name)
                if loader is None:
                    param.data.copy_(tensor)
                elif shard_id is None:
                    loader(param, tensor)
                else:
                    loader(param, tensor, shard_id)
                loaded.add(target if shard_id is None else f"{target}#{shard_id}")
    _check_complete(model, params, loaded)


def _mapping_mapper(model: nn.Module):
    mapping = getattr(model, "packed_modules_mapping", {})

    def map_name(name: str) -> tuple[str, object]:
        for fragment, (merged, shard_id) in mapping.items():
            if f".{fragment}." in name:
                return name.replace(fragment, merged), shard_id
        return name, None

    return map_name


def _check_complete(model: nn.Module, params: dict, loaded: set[str]) -> None:
    tied = getattr(getattr(model, "spec", None), "tie_word_embeddings", False)
    missing = []
    for name, param in params.items():
        if tied and name == "lm_head.weight":
            continue
        shards = getattr(param, "shard_ids", None)
        want = [name] if shards is None else [f"{name}#{s}" for s in shards]
        missing += [w for w in want if w not in loaded]
    if missing:
        raise ModelLoadError(f"checkpoint lacks {len(missing)} tensor(s), e.g. {missing[:3]}")


@torch.no_grad()
def init_random_weights(model: nn.Module, seed: int = 0, std: float = 0.02) -> None:
    """Norm weights ``1 + 0.1 N(0, 1)``, everything else ``std * N(0, 1)``, drawn on the
    parameter's device (as ``testing.random_model`` draws its checkpoints)."""
    for i, (name, param) in enumerate(sorted(model.named_parameters())):
        gen = torch.Generator(device=param.device).manual_seed(seed * 100003 + i)
        noise = torch.randn(param.shape, generator=gen, device=param.device, dtype=torch.float32)
        if name.endswith("norm.weight"):
            noise.mul_(0.1).add_(1.0)
        else:
            noise.mul_(std)
        param.data.copy_(noise)
        del noise
