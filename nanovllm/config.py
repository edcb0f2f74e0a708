"""Engine configuration: a frozen, validated dataclass.

``Config.from_model(path, **overrides)`` does the file I/O (reads the checkpoint's config.json) and
resolves the ``"auto"`` values, after mapping vLLM's keyword spellings onto the fields
(``engine_args.config_keywords``); ``__post_init__`` only validates, so a ``Config`` in hand is
always consistent. Every error names the bad value and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanovllm.engine_args import config_keywords
from nanovllm.errors import (
    ConfigError,
    KVCacheTooSmallError,
    ModelLoadError,
    ModelNotFoundError,
    UnsupportedModelError,
)
from nanovllm.generation_config import read_sampling_defaults
from nanovllm.model_spec import ModelSpec, MoESpec, RopeScaling
from nanovllm.speculative_config import SpeculativeConfig

__all__ = ["Config", "ModelSpec", "MoESpec", "RopeScaling", "resolve_device", "resolve_dtype"]

DTYPES = (
    "float32",
    "bfloat16",
    "float16",
)  # torch's own names: the runner takes getattr(torch, name)
ELEMENTWISE = ("triton", "compile", "torch")  # how norms, rotary and SiLU-and-mul run
LOAD_FORMATS = ("safetensors", "random")  # random: no weight files (benchmarks of huge shapes)
CPU_KVCACHE_BYTES = 512 * 2**20  # default KV-cache budget on CPU, where there is no memory probe
# default token budget of a step on CPU: a prefill's activations stay small enough to be reused
# from the allocator's heap (fresh 100+ MB tensors cost their page faults); a 26M-parameter model
# ran issue 29's workload in 21.0 s instead of 22.6 s with the GPU's 16384
CPU_MAX_BATCHED_TOKENS = 2048


@dataclass(frozen=True)
class Config:
    """Everything that shapes one engine. Build it with ``Config.from_model``."""

    model: str
    spec: ModelSpec
    max_num_batched_tokens: int = 16384  # "auto" (from_model): this on CUDA, else 2048
    max_num_seqs: int = 512
    max_model_len: int = 4096
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1
    enforce_eager: bool = False
    kvcache_block_size: int = 256
    num_kvcache_blocks: int | None = None
    device: str = "cpu"
    dtype: str = "float32"
    enable_prefix_caching: bool = True
    attention_backend: str = "auto"
    seed: int = 0
    load_format: str = "safetensors"
    # schedule step N+1 while step N runs (LLM.generate; "auto": on for CUDA with one rank)
    overlap_scheduling: bool = False
    # norms, rotary, SiLU-and-mul: "triton" (layers/elementwise_kernels.py), "compile"
    # (torch.compile fuses the torch code), "torch" (eager); "auto": triton on CUDA unless
    # enforce_eager, else torch. "triton" on CPU only under TRITON_INTERPRET=1 (tests)
    elementwise: str = "torch"
    # decode GEMMs of <= 16 rows: at start-up, time layers/skinny_gemm.py's kernel against cuBLAS
    # for each weight shape and graph bucket and keep the faster (CUDA graphs only; False: cuBLAS).
    # Off by default until it has run on a GPU (benchmarks/gpu_kernels_check.py): it was written
    # and tested under the Triton interpreter in a session whose device was not lent
    skinny_gemm: bool = False
    # elementwise="triton" with the triton attention backend: attention's prologue kernel also
    # writes each token's K/V to its cache slot, saving the backend's store launch per layer
    # (layers/fusion.py:kv_store_op); False: the separate store (an A/B switch for benchmarks)
    fused_kv_store: bool = True
    # the automatic KV-cache size keeps at most this many blocks beyond what the running sequences
    # can use (max_num_seqs x max_blocks_per_seq), for prefix-cache hits; None: as many again
    prefix_cache_blocks: int | None = None
    # where get_default_sampling_params() reads the checkpoint's defaults: "auto" (the model's
    # generation_config.json), "vllm" (none) or a directory (nanovllm/generation_config.py)
    generation_config: str = "auto"
    # tensor parallelism: the longest one step may take (also the process group's timeout; a
    # first Triton compile or a 16k-token prefill fits), and how long a worker may go without a
    # heartbeat (a stopped or frozen process) before it counts as hung
    step_timeout_s: float = 600.0
    heartbeat_timeout_s: float = 10.0
    # derived by from_model, not a keyword: the SamplingParams keywords generation_config sets
    sampling_defaults: tuple[tuple[str, Any], ...] = ()
    # CPU: the torch threads each step runs on (engine/runner/threads.py); None: all the cores
    # torch would use but one, at least one, as vLLM's CPU worker does
    cpu_threads: int | None = None
    # speculative decoding (vLLM's dict, validated by from_model): n-gram drafts verified by the
    # model in each decode step (nanovllm/speculative_config.py, engine/spec/); None: off
    speculative_config: SpeculativeConfig | None = None

    def __post_init__(self) -> None:
        self._check_positive("max_num_batched_tokens", "max_num_seqs", "max_model_len")
        if (
            not isinstance(self.seed, int)
            or isinstance(self.seed, bool)
            or not 0 <= self.seed < 2**32
        ):
            raise ConfigError(f"seed={self.seed!r} must be an integer in [0, 2**32)")
        for name in ("step_timeout_s", "heartbeat_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name}={value!r} must be a number of seconds > 0")
        self._check_positive("tensor_parallel_size")
        bs = self.kvcache_block_size
        if bs < 16 or bs & (bs - 1):
            raise ConfigError(
                f"kvcache_block_size={bs} must be a power of two >= 16; pass 16, 32, 64, 128 or 256"
            )
        if self.max_model_len > self.spec.max_position_embeddings:
            raise ConfigError(
                f"max_model_len={self.max_model_len} exceeds the model's max_position_embeddings="
                f"{self.spec.max_position_embeddings}; pass "
                f"max_model_len<={self.spec.max_position_embeddings}"
            )
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ConfigError(
                f"gpu_memory_utilization={self.gpu_memory_utilization} must be in (0, 1], e.g. 0.9"
            )
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype={self.dtype!r} is not one of {DTYPES} (or 'auto')")
        from nanovllm.attention import backend_names  # the registry (imports torch: only here)

        if self.attention_backend not in backend_names():
            raise ConfigError(
                f"attention_backend={self.attention_backend!r} is not one of {backend_names()}"
            )
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"device={self.device!r} must be 'auto', 'cpu' or 'cuda[:N]'")
        if self.load_format not in LOAD_FORMATS:
            raise ConfigError(f"load_format={self.load_format!r} is not one of {LOAD_FORMATS}")
        if self.elementwise not in ELEMENTWISE:
            raise ConfigError(
                f"elementwise={self.elementwise!r}; choose one of {ELEMENTWISE} or 'auto'"
            )
        interpreted = self.elementwise == "triton" and os.environ.get("TRITON_INTERPRET") == "1"
        if self.elementwise != "torch" and not self.device.startswith("cuda") and not interpreted:
            raise ConfigError(
                f"elementwise={self.elementwise!r} needs a CUDA device (device={self.device!r}); "
                "pass elementwise='torch'"
            )
        if not isinstance(self.overlap_scheduling, bool):
            raise ConfigError(
                f"overlap_scheduling={self.overlap_scheduling!r} must be True, False or 'auto'"
            )
        if self.overlap_scheduling and self.tensor_parallel_size > 1:
            raise ConfigError(
                "overlap_scheduling=True needs tensor_parallel_size=1 (the worker ranks would need "
                "each step's tokens before the next is launched); pass overlap_scheduling=False"
            )
        for name in ("skinny_gemm", "fused_kv_store"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r} must be True or False")
        if self.prefix_cache_blocks is not None and (
            not isinstance(self.prefix_cache_blocks, int) or self.prefix_cache_blocks < 0
        ):
            raise ConfigError(
                f"prefix_cache_blocks={self.prefix_cache_blocks!r} must be an integer >= 0 "
                "(or None: as many blocks as the running sequences can use)"
            )
        if self.cpu_threads is not None:
            self._check_positive("cpu_threads")
        self._check_tensor_parallel()
        self._check_sliding_window()
        self._check_speculative()
        if self.num_kvcache_blocks is not None:
            self._check_kv_cache_fits(self.num_kvcache_blocks)

    def _check_positive(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name}={value!r} must be a positive integer")

    def _check_tensor_parallel(self) -> None:
        tp, spec = self.tensor_parallel_size, self.spec
        sizes = [
            ("num_attention_heads", spec.num_attention_heads),
            ("num_key_value_heads", spec.num_key_value_heads),
            ("intermediate_size", spec.intermediate_size),
        ]
        if spec.moe is not None:  # experts are split along their intermediate dimension
            sizes.append(("moe_intermediate_size", spec.moe.moe_intermediate_size))
        for what, n in sizes:
            if n % tp:
                divisors = [d for d in range(1, min(n, 64) + 1) if n % d == 0]
                raise ConfigError(
                    f"tensor_parallel_size={tp} does not divide the model's {what}={n}; "
                    f"pass one of {divisors}"
                )

    def _check_speculative(self) -> None:
        spec = self.speculative_config
        if spec is None:
            return
        if not isinstance(spec, SpeculativeConfig):
            raise ConfigError(
                f"speculative_config={spec!r} must be a dict (LLM(..., speculative_config="
                '{"method": "ngram", "num_speculative_tokens": 3})) or a SpeculativeConfig'
            )
        k = spec.num_speculative_tokens
        # the shortest sequence that decodes has 2 tokens (1 prompt + 1 generated) and a draft
        # must end before max_model_len: k <= max_model_len - 3
        if k > self.max_model_len - 3:
            raise ConfigError(
                f"speculative_config num_speculative_tokens={k} is too large for max_model_len="
                f"{self.max_model_len} (no sequence could hold a draft that long); pass "
                f"num_speculative_tokens<={max(1, self.max_model_len - 3)} or a larger "
                "max_model_len"
            )
        if k + 1 > self.max_num_batched_tokens:
            raise ConfigError(
                f"speculative_config num_speculative_tokens={k}: a decode with its draft computes "
                f"{k + 1} tokens, more than max_num_batched_tokens={self.max_num_batched_tokens}; "
                f"pass num_speculative_tokens<={self.max_num_batched_tokens - 1}"
            )
        if self.tensor_parallel_size > 1:
            raise ConfigError(
                "speculative decoding runs on one rank only (its verification samples on rank "
                f"0's runner); with tensor_parallel_size={self.tensor_parallel_size} pass "
                "tensor_parallel_size=1, or leave speculative_config out"
            )

    def _check_sliding_window(self) -> None:
        window = self.spec.sliding_window
        if window is not None and window < self.max_model_len:
            raise UnsupportedModelError(
                f"{self.spec.architecture} asks for sliding-window attention (sliding_window="
                f"{window}), which is not implemented; with max_model_len={self.max_model_len} "
                f"tokens could fall outside the window. Pass max_model_len<={window} (then full "
                f"attention is exact), or use a checkpoint without a window (e.g. Mistral v0.3)"
            )

    def _check_kv_cache_fits(self, num_blocks: int) -> None:
        if num_blocks < self.max_blocks_per_seq:
            raise KVCacheTooSmallError(
                f"num_kvcache_blocks={num_blocks} x kvcache_block_size={self.kvcache_block_size} "
                f"= {num_blocks * self.kvcache_block_size} tokens cannot hold one sequence of "
                f"max_model_len={self.max_model_len}; pass num_kvcache_blocks>="
                f"{self.max_blocks_per_seq}, a smaller max_model_len, or more memory"
            )

    @property
    def max_blocks_per_seq(self) -> int:
        return math.ceil(self.max_model_len / self.kvcache_block_size)

    @property
    def dtype_bytes(self) -> int:
        return 4 if self.dtype == "float32" else 2

    @property
    def kv_bytes_per_block(self) -> int:
        per_token = self.spec.kv_bytes_per_token(self.dtype_bytes, self.tensor_parallel_size)
        return per_token * self.kvcache_block_size

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        return self.spec.eos_token_id

    def with_num_blocks(self, num_blocks: int) -> Config:
        """The same config with the KV-cache size decided (after a memory probe)."""
        return dataclasses.replace(self, num_kvcache_blocks=num_blocks)

    @property
    def max_useful_blocks(self) -> int:
        """The most KV blocks this configuration can use: every running sequence at its longest
        (``max_num_seqs x max_blocks_per_seq``), plus ``prefix_cache_blocks`` kept for hits."""
        working_set = self.max_num_seqs * self.max_blocks_per_seq
        cached = working_set if self.prefix_cache_blocks is None else self.prefix_cache_blocks
        return working_set + cached

    def auto_num_blocks(self, budget_bytes: int) -> tuple[int, int | None]:
        """The automatic KV-cache size for ``budget_bytes`` of memory (the probe's on CUDA,
        ``CPU_KVCACHE_BYTES`` on CPU): ``(num_blocks, cap)``, where ``cap`` is
        ``max_useful_blocks`` when it was the smaller (the caller logs it) and else None.

        A tiny model on a big GPU would otherwise get millions of blocks (the teaching model on an
        H200: ~120 GiB / 8 KiB per block), each a Python object in the block manager."""
        by_budget = max(0, budget_bytes) // self.kv_bytes_per_block
        cap = self.max_useful_blocks
        if by_budget > cap:
            return cap, cap
        return by_budget, None

    @classmethod
    def from_model(cls, model: str | Path, **overrides: Any) -> Config:
        """Read ``model``'s config.json, resolve ``"auto"`` values and validate."""
        path = Path(model).expanduser()
        if not path.is_dir():
            raise ModelNotFoundError(
                f"model directory {str(model)!r} does not exist; pass the path of a local Hugging "
                f"Face checkpoint, or use nanovllm.testing.make_tiny_model(dir) to build one"
            )
        config_file = path / "config.json"
        if not config_file.is_file():
            raise ModelNotFoundError(
                f"{str(path)!r} has no config.json, so it is not a Hugging Face model directory"
            )
        try:
            raw = json.loads(config_file.read_text())
            spec = ModelSpec.from_dict(raw)
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ModelLoadError(f"cannot read {config_file}: {e!r}") from e
        overrides = config_keywords(overrides)
        _check_keywords(overrides)
        if "speculative_config" in overrides:
            overrides["speculative_config"] = SpeculativeConfig.from_value(
                overrides["speculative_config"]
            )
        source = overrides.get("generation_config", "auto")
        overrides["sampling_defaults"] = tuple(read_sampling_defaults(path, source).items())
        overrides["device"] = resolve_device(overrides.get("device", "auto"))
        overrides["dtype"] = resolve_dtype(overrides.get("dtype", "auto"), overrides["device"])
        on_gpu = overrides["device"].startswith("cuda")
        if overrides.get("max_num_batched_tokens", "auto") == "auto":
            overrides["max_num_batched_tokens"] = 16384 if on_gpu else CPU_MAX_BATCHED_TOKENS
        if overrides.get("overlap_scheduling", "auto") == "auto":
            one_rank = overrides.get("tensor_parallel_size", 1) == 1
            overrides["overlap_scheduling"] = on_gpu and one_rank
        if overrides.get("elementwise", "auto") == "auto":
            overrides["elementwise"] = (
                "triton" if on_gpu and not overrides.get("enforce_eager") else "torch"
            )
        if overrides.get("max_model_len") is None:
            overrides["max_model_len"] = min(4096, spec.max_position_embeddings)
        return cls(model=str(path), spec=spec, **overrides)


def _check_keywords(overrides: dict[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(Config)} - {"model", "spec", "sampling_defaults"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        near = {k: m[0] for k in unknown if (m := difflib.get_close_matches(k, known, 1, 0.75))}
        hint = f" (did you mean {near}?)" if near else ""
        raise ConfigError(
            f"unknown config keyword(s) {unknown}{hint}; valid keywords are {sorted(known)}"
        )


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str) -> str:
    if dtype != "auto":
        return {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}.get(dtype, dtype)
    return "bfloat16" if device.startswith("cuda") else "float32"
