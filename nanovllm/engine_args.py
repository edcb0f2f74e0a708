"""vLLM's engine keywords: ``LLM(block_size=16, dtype="half", ...)`` and the ``EngineArgs`` of its
argparse examples, mapped onto this engine's ``Config`` fields.

::

    parser = argparse.ArgumentParser()
    EngineArgs.add_cli_args(parser)            # --model, --dtype, --block-size, -tp, ...
    llm = LLM(**vars(parser.parse_args()))     # or LLM(**asdict(EngineArgs.from_cli_args(args)))

``config_keywords`` is what ``Config.from_model`` runs first, so vLLM's spellings work everywhere a
config is given (``LLM``, ``LLMEngine``, ``widgets.workbench``):

- a keyword left at ``None`` means "the default" (vLLM's convention for engine arguments);
- vLLM's name for a feature this engine has becomes its field (``block_size`` ->
  ``kvcache_block_size``), vLLM's values become ours (``dtype="half"`` or ``torch.float16`` ->
  ``"float16"``, ``load_format="dummy"`` -> ``"random"``);
- ``trust_remote_code=False`` and ``disable_log_stats=True`` say what this engine always does, and
  are accepted; their opposites, and vLLM keywords for features this engine lacks, are a
  ``ConfigError`` that names the nearest thing it has.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from nanovllm.errors import ConfigError

RENAMED = {"block_size": "kvcache_block_size"}  # vLLM's name -> this engine's field
VALUES = {
    "dtype": {"half": "float16", "float": "float32"},
    "load_format": {"dummy": "random"},
}
ALWAYS = {  # vLLM keyword -> (the value that describes this engine, what the other value asks for)
    "trust_remote_code": (False, "runs only the architectures it implements (nanovllm.models)"),
    "disable_log_stats": (True, "never logs stats periodically; read llm.get_metrics()"),
}
_LOCAL = "models load from a local directory only; pass its path as model"
NEAREST = {  # vLLM keyword -> the nearest thing this engine has
    "tokenizer": "the tokenizer is read from the model directory",
    "tokenizer_mode": "the tokenizer is the model directory's (transformers' AutoTokenizer)",
    "skip_tokenizer_init": "the tokenizer is always loaded; pass prompts as token ids if you like",
    "revision": _LOCAL,
    "tokenizer_revision": _LOCAL,
    "download_dir": _LOCAL,
    "hf_token": _LOCAL,
    "hf_overrides": "edit the checkpoint's config.json",
    "quantization": "no quantization: weights are in dtype (float32, bfloat16 or float16)",
    "kv_cache_dtype": "the KV cache is in dtype (float32, bfloat16 or float16)",
    "num_gpu_blocks_override": "num_kvcache_blocks",
    "swap_space": "no CPU swap: a preempted request is recomputed; size the cache with "
    "num_kvcache_blocks or gpu_memory_utilization",
    "cpu_offload_gb": "no offload: size the cache with num_kvcache_blocks or "
    "gpu_memory_utilization",
    "enable_chunked_prefill": "prefill is always chunked to max_num_batched_tokens",
    "async_scheduling": "overlap_scheduling (on by default on CUDA with one rank)",
    "compilation_config": "enforce_eager (CUDA graphs off) and elementwise ('triton', "
    "'compile' or 'torch')",
    "max_seq_len_to_capture": "enforce_eager (CUDA graphs cover decode steps up to max_num_seqs)",
    "pipeline_parallel_size": "tensor_parallel_size",
    "data_parallel_size": "tensor_parallel_size",
    "distributed_executor_backend": "tensor_parallel_size (spawned processes, NCCL or gloo)",
    "enable_expert_parallel": "tensor_parallel_size (experts are split along their width)",
    "override_generation_config": "generation_config (a directory) or "
    "llm.get_default_sampling_params() changed before use",
    "max_logprobs": "SamplingParams(logprobs=k) takes any k",
    "enable_lora": "no LoRA: merge the adapter into the weights",
    "limit_mm_per_prompt": "text prompts only",
    "task": "text generation only",
    "runner": "text generation only",
    "enable_sleep_mode": "llm.close() frees the device memory; build a new LLM to wake up",
}


def config_keywords(kwargs: dict[str, Any]) -> dict[str, Any]:
    """vLLM's keywords and values -> this engine's ``Config`` keywords (see the module
    docstring). Keywords that are neither pass through, for ``Config.from_model`` to check."""
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        if value is None:
            continue  # vLLM's "the default"
        if key in NEAREST:
            raise ConfigError(
                f"{key}={value!r} is a vLLM keyword this engine does not support; nearest: "
                f"{NEAREST[key]}"
            )
        if key in ALWAYS:
            accepted, other = ALWAYS[key]
            if value != accepted:
                raise ConfigError(f"{key}={value!r}: this engine {other}; pass {key}={accepted}")
            continue
        if key in RENAMED:
            if RENAMED[key] in kwargs and kwargs[RENAMED[key]] is not None:
                raise ConfigError(f"pass {key} or {RENAMED[key]}, not both (they are one setting)")
            key = RENAMED[key]
        if key == "dtype" and not isinstance(value, str):
            value = str(value).removeprefix("torch.")  # torch.float16 -> "float16"
        out[key] = VALUES.get(key, {}).get(value, value) if isinstance(value, str) else value
    return out


@dataclass
class EngineArgs:
    """vLLM's ``EngineArgs``, for its argparse examples: the keywords this engine takes under
    vLLM's names; ``None`` leaves the engine's default."""

    model: str | None = None
    dtype: str | None = None
    seed: int | None = None
    max_model_len: int | None = None
    block_size: int | None = None
    gpu_memory_utilization: float | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    tensor_parallel_size: int | None = None
    enforce_eager: bool | None = None
    enable_prefix_caching: bool | None = None
    generation_config: str | None = None
    load_format: str | None = None
    trust_remote_code: bool | None = None
    disable_log_stats: bool | None = None
    speculative_config: dict | None = None  # on the command line, JSON as vLLM takes it

    @staticmethod
    def add_cli_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """Add ``--model``, ``--dtype``, ``--block-size``, ``--tensor-parallel-size`` / ``-tp``,
        ... (``--enforce-eager`` / ``--no-enforce-eager`` for the flags, ``--speculative-config``
        as JSON: ``'{"method": "ngram", "num_speculative_tokens": 3}'``); returns ``parser``."""
        for f in dataclasses.fields(EngineArgs):
            flags = ["--" + f.name.replace("_", "-")]
            if f.name == "tensor_parallel_size":
                flags.append("-tp")
            kind = f.type.split(" |")[0]  # "int | None" -> "int"
            if kind == "bool":
                parser.add_argument(*flags, action=argparse.BooleanOptionalAction, default=None)
            else:
                types = {"int": int, "float": float, "dict": json.loads}
                parser.add_argument(*flags, type=types.get(kind, str))
        return parser

    @classmethod
    def from_cli_args(cls, args: argparse.Namespace) -> EngineArgs:
        """The engine arguments among parsed ``args`` (others, such as sampling ones, are left)."""
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{name: getattr(args, name) for name in names if hasattr(args, name)})
