"""The kernel's one Workbench: ``workbench(model, **config)`` and ``close_workbench()``.

``WORKBENCH_OPTIONS`` (options.py) are the keywords that configure the workbench, not the engine.

Re-running a cell with the same arguments gives back the same Workbench (and engine); other
arguments close the old engine first (workers joined, memory and shared memory freed), then build
the new one, so a kernel never holds two engines' memory at once.
"""

from __future__ import annotations

import os
from typing import Any

from .options import WORKBENCH_OPTIONS, Options
from .workbench import Workbench

# With no model: the teaching model (a tiny Qwen3 trained to count, recite and answer questions
# about the engine) and a cache of a few hundred blocks, the same on CPU and GPU (a count, not
# what the memory probe would allow): 256 blocks of 16 tokens, a 16 x 16 grid whose cells carry
# their owners' labels, and room for eight requests at max_model_len, so a dozen long ones preempt
# (12 copies of "1 2 3 4" with max tokens 480: the teaching model counts on; tests/widgets/
# test_kernel.py). Every key can be overridden.
TEACHING_DEFAULTS: dict[str, Any] = dict(
    kvcache_block_size=16,
    num_kvcache_blocks=256,
    max_model_len=512,
    max_num_batched_tokens=256,
)

_current: Workbench | None = None
_key: tuple | None = None


def default_model() -> str:
    """``$NANOVLLM_MODEL`` if set, else the teaching model (shipped with the package)."""
    if os.environ.get("NANOVLLM_MODEL"):
        return os.environ["NANOVLLM_MODEL"]
    from nanovllm.teaching import teaching_model_path

    return str(teaching_model_path())


def _resolve(model, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if model is None:
        return default_model(), {**TEACHING_DEFAULTS, **config}
    return str(model), dict(config)


def workbench(model: str | os.PathLike | None = None, **config: Any) -> Workbench:
    """The kernel's Workbench for ``model`` (default: the teaching model) and engine ``config``.

    The keywords in ``WORKBENCH_OPTIONS`` (``history_steps``, ``history_bytes``,
    ``redraw_interval``, ``window``, ``snapshot_every_step``) go to the ``Workbench``; every
    other keyword is an engine ``Config`` field (an unknown one raises ``ConfigError``). A bad
    option raises ``ConfigError`` before anything is closed or built."""
    global _current, _key
    options = {k: config.pop(k) for k in WORKBENCH_OPTIONS if k in config}
    Options(**options)  # checked before the kernel's workbench is touched
    path, cfg = _resolve(model, config)
    key = (path, *(tuple(sorted((k, repr(v)) for k, v in d.items())) for d in (cfg, options)))
    if _current is not None and _key == key and not _current.closed:
        return _current
    close_workbench()
    _current, _key = Workbench(path, cfg, **options), key
    return _current


def current_workbench() -> Workbench | None:
    return _current


def close_workbench() -> None:
    """Close the kernel's Workbench and its engine, if there is one."""
    global _current, _key
    wb, _current, _key = _current, None, None
    if wb is not None:
        wb.close()
