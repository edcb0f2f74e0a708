"""The on-disk cache of generated checkpoints: built once per machine, one build at a time.

Contract:
- `build_cached(name, build)` returns `cache_root() / name`, running `build(tmp_dir)` first when
  no complete copy is there. The cache root is `$NANOVLLM_CACHE` if set, else
  `~/.cache/nanovllm`.
- One build at a time: the build runs under a file lock (`<root>/.<name>.lock`, `filelock`), so a
  second process asking for the same name waits for the first and then returns its result
  instead of building its own copy. The operating system drops the lock of a process that dies.
- A directory is trusted only when complete: `build` writes into `<root>/.tmp-<name>`, the
  `COMPLETE` marker is written last, and the directory is renamed into place (atomic). A build
  that dies (killed, out of disk) leaves at most that temp directory, which the next build
  removes; a directory without the marker is removed and built again.

The writers of the files themselves are in `nanovllm.teaching.hf_format`. Used by `tiny.py`
(random weights); the engine never imports it.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

COMPLETE = ".complete"  # written last into a finished build; its presence is what is trusted
WAIT_NOTICE_S = 2.0  # after this long waiting for another process's build, say so on stderr


def cache_root() -> Path:
    return Path(os.environ.get("NANOVLLM_CACHE") or Path.home() / ".cache" / "nanovllm")


def is_complete(path: Path) -> bool:
    return (path / COMPLETE).is_file()


def build_cached(name: str, build: Callable[[Path], Any]) -> Path:
    """`cache_root() / name`, built by `build(tmp_dir)` on first use (see the module docstring)."""
    from filelock import FileLock, Timeout

    root = cache_root()
    final = root / name
    if is_complete(final):
        return final
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(root / f".{name}.lock")
    try:
        lock.acquire(timeout=WAIT_NOTICE_S)
    except Timeout:
        print(f"nanovllm: waiting for another process to build {final}", file=sys.stderr)
        lock.acquire()
    try:
        if not is_complete(final):  # else another process built it while this one waited
            _build_into(final, build)
    finally:
        lock.release()
    return final


def _build_into(final: Path, build: Callable[[Path], Any]) -> None:
    """Build in a temp directory and rename it to `final`; the caller holds the lock."""
    tmp = final.with_name(f".tmp-{final.name}")
    for leftover in (tmp, final):  # a dead build's temp dir; a final dir without the marker
        if leftover.exists():
            shutil.rmtree(leftover)
    tmp.mkdir()
    try:
        build(tmp)
        (tmp / COMPLETE).write_text("")
        for path in (tmp, *tmp.iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)  # the cache may be shared
        os.rename(tmp, final)  # atomic: `final` appears whole or not at all
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
