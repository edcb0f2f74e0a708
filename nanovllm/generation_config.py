"""A checkpoint's default sampling parameters, read from its ``generation_config.json`` as vLLM
reads them (``LLM(generation_config=...)``, ``llm.get_default_sampling_params()``).

::

    generation_config="auto"   the model directory's generation_config.json (vLLM's default)
                    ="vllm"    none: SamplingParams()'s own defaults
                    =<dir>     that directory's generation_config.json

Only the sampling keys vLLM takes are read: ``temperature``, ``top_k``, ``top_p``,
``repetition_penalty``, ``presence_penalty``, ``frequency_penalty``, and ``max_new_tokens`` (as
``max_tokens``); ``do_sample`` and the token ids are ignored, as in vLLM. A key this engine has no
sampler for (``min_p`` other than 0) is left out with a warning. Config.from_model calls this
(file I/O happens there, never in the Config dataclass).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from nanovllm.errors import ConfigError, RequestError
from nanovllm.sampling_params import SamplingParams

log = logging.getLogger(__name__)

FILE = "generation_config.json"
SAMPLING_KEYS = (
    "repetition_penalty",
    "presence_penalty",
    "frequency_penalty",
    "temperature",
    "top_k",
    "top_p",
    "max_new_tokens",
)
UNSUPPORTED_KEYS = {"min_p": 0.0}  # key -> the value that means "off" (then it is dropped quietly)


def generation_config_dir(model: Path, source: str) -> Path | None:
    """The directory to read ``generation_config.json`` from, or None for ``"vllm"``."""
    if not isinstance(source, (str, Path)):
        raise ConfigError(
            f"generation_config={source!r} must be 'auto', 'vllm' or a directory's path"
        )
    if source == "vllm":
        return None
    if source == "auto":
        return model
    path = Path(source).expanduser()
    if not (path / FILE).is_file():
        raise ConfigError(
            f"generation_config={source!r}: no {FILE} there; pass 'auto' (the model's own), "
            f"'vllm' (none: SamplingParams' defaults) or a directory holding a {FILE}"
        )
    return path


def read_sampling_defaults(model: Path, source: str) -> dict[str, Any]:
    """The SamplingParams keywords the checkpoint sets (``{}`` when it sets none, or without a
    file under ``"auto"``)."""
    folder = generation_config_dir(model, source)
    if folder is None or not (folder / FILE).is_file():
        return {}
    try:
        raw = json.loads((folder / FILE).read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"cannot read {folder / FILE}: {e}; pass generation_config='vllm'") from e
    defaults = {k: raw[k] for k in SAMPLING_KEYS if raw.get(k) is not None}
    if "max_new_tokens" in defaults:
        defaults["max_tokens"] = defaults.pop("max_new_tokens")
    ignored = {k: raw[k] for k, off in UNSUPPORTED_KEYS.items() if raw.get(k) not in (None, off)}
    if ignored:
        log.warning(
            "%s sets %s, which this engine does not implement; it is ignored",
            folder / FILE,
            ignored,
        )
    try:
        SamplingParams(**defaults)
    except RequestError as e:
        raise ConfigError(f"{folder / FILE}: {e}; pass generation_config='vllm'") from e
    if defaults:
        log.info("default sampling parameters from %s: %s", folder / FILE, defaults)
    return defaults
