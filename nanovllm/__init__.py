"""nanovllm: a compact, readable, fast LLM inference engine (nano-vllm design)."""

from nanovllm.errors import (
    ConfigError,
    EngineClosedError,
    KVCacheTooSmallError,
    ModelLoadError,
    ModelNotFoundError,
    NanoVLLMError,
    RequestError,
    StepError,
    UnknownRequestError,
    UnsupportedModelError,
    WorkerError,
)
from nanovllm.llm import LLM
from nanovllm.outputs import CompletionOutput, Logprob, RequestMetrics, RequestOutput
from nanovllm.sampling_params import SamplingParams

__all__ = [
    "LLM",
    "SamplingParams",
    "RequestOutput",
    "CompletionOutput",
    "Logprob",
    "RequestMetrics",
    "NanoVLLMError",
    "ConfigError",
    "KVCacheTooSmallError",
    "ModelLoadError",
    "ModelNotFoundError",
    "UnsupportedModelError",
    "RequestError",
    "UnknownRequestError",
    "EngineClosedError",
    "StepError",
    "WorkerError",
]
__version__ = "0.1.0"
