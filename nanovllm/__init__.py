"""nanovllm: a compact, readable, fast LLM inference engine (nano-vllm design)."""

from nanovllm.errors import (
    ConfigError,
    EngineClosedError,
    KVCacheTooSmallError,
    ModelLoadError,
    NanoVLLMError,
    RequestError,
    StepError,
    UnknownRequestError,
    UnsupportedModelError,
    WorkerError,
)
from nanovllm.llm import LLM
from nanovllm.sampling_params import SamplingParams

__all__ = [
    "LLM",
    "SamplingParams",
    "NanoVLLMError",
    "ConfigError",
    "KVCacheTooSmallError",
    "ModelLoadError",
    "UnsupportedModelError",
    "RequestError",
    "UnknownRequestError",
    "EngineClosedError",
    "StepError",
    "WorkerError",
]
__version__ = "0.1.0"
