"""Load safetensors weights into a model, mapping HF names onto merged, sharded parameters."""

from __future__ import annotations

from pathlib import Path

from safetensors import safe_open
from torch import nn

from nanovllm.errors import ModelLoadError


def load_model(model: nn.Module, path: str | Path) -> None:
    """Copy every tensor of ``path/*.safetensors`` into ``model``; raise if any parameter is left
    unloaded. Each parameter's ``weight_loader`` takes its rank's shard (tensor parallelism)."""
    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        raise ModelLoadError(
            f"no *.safetensors files in {str(path)!r}; convert the checkpoint first"
        )
    params = dict(model.named_parameters(remove_duplicate=False))
    mapping = getattr(model, "packed_modules_mapping", {})
    loaded: set[str] = set()
    for file in files:
        with safe_open(str(file), "pt", "cpu") as f:
            for name in f.keys():
                target, shard_id = _map_name(name, mapping)
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
    _check_complete(model, params, mapping, loaded)


def _map_name(name: str, mapping: dict) -> tuple[str, object]:
    for fragment, (merged, shard_id) in mapping.items():
        if f".{fragment}." in name:
            return name.replace(fragment, merged), shard_id
    return name, None


def _check_complete(model: nn.Module, params: dict, mapping: dict, loaded: set[str]) -> None:
    tied = getattr(getattr(model, "spec", None), "tie_word_embeddings", False)
    shards_of: dict[str, list] = {}
    for merged, shard_id in mapping.values():
        shards_of.setdefault(merged, []).append(shard_id)
    missing = []
    for name in params:
        if tied and name == "lm_head.weight":
            continue
        merged = next((m for m in shards_of if f".{m}." in name), None)
        want = [name] if merged is None else [f"{name}#{s}" for s in shards_of[merged]]
        missing += [w for w in want if w not in loaded]
    if missing:
        raise ModelLoadError(f"checkpoint lacks {len(missing)} tensor(s), e.g. {missing[:3]}")
