"""The CPU decode kernel (attention/cpu_decode.c), built with the system's C compiler on first use.

Why a kernel: a decode row's attention is a few dot products per context position, and torch can
only reach the paged cache through a gather into a padded copy that SDPA then reads again (the
torch path of cpu_sdpa.py). The kernel reads each position once from the cache: measured on the
26M-parameter model's decode layer (batch 128, contexts 40-400), 4.3-5.1 ms against 11.2 ms.

``decode_kernel(...)`` returns a callable, or None where there is no C compiler (or the build
fails, or ``NANOVLLM_CPU_KERNEL=0``): cpu_sdpa.py then computes the same attention with torch ops,
which tests compare it with. One library per head size and group (compile-time constants, so the
loops unroll), cached under ``$NANOVLLM_CACHE`` (default ``~/.cache/nanovllm``) ``/kernels``,
keyed by the source, the flags and the machine (``-march=native``); a build takes under a second
and appears atomically, so concurrent processes never load half a file.

The kernel runs on the calling thread; ``ctypes`` releases the GIL during the call, so with
torch's intra-op threads (``Config.cpu_threads`` inside a step) above one, the sequences are
split between that many threads, by context length.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("cpu_decode.c")
# the parts of -ffast-math that let sums and exp vectorize; infinities and NaN keep their meaning
FLAGS = [
    "-O3",
    "-march=native",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-fassociative-math",
    "-fno-signed-zeros",
    "-freciprocal-math",
    "-shared",
    "-fPIC",
]
_I64, _F32, _PTR = ctypes.c_int64, ctypes.c_float, ctypes.c_void_p
_ARGS = [_PTR] * 4 + [_I64, _PTR, _PTR] + [_I64] * 4 + [_F32, _PTR]


@functools.cache
def _library(dim: int, group: int) -> ctypes.CDLL | None:
    """The kernel built for head size ``dim`` and ``group`` query heads per KV head."""
    if os.environ.get("NANOVLLM_CPU_KERNEL") == "0":
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        log.info("no C compiler: CPU decode attention runs on torch ops (cpu_sdpa)")
        return None
    flags = [*FLAGS, f"-DDIM={dim}", f"-DGROUP={group}"]
    try:
        source = SOURCE.read_bytes()
        key = repr((flags, platform.node(), compiler)).encode()
        key = hashlib.sha256(source + key).hexdigest()
        root = Path(os.environ.get("NANOVLLM_CACHE") or Path.home() / ".cache" / "nanovllm")
        path = root / "kernels" / f"cpu_decode-d{dim}-g{group}-{key[:16]}.so"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
                built = Path(tmp) / path.name
                cmd = [compiler, *flags, str(SOURCE), "-o", str(built), "-lm"]
                subprocess.run(cmd, check=True, capture_output=True, timeout=120)
                os.replace(built, path)
        lib = ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("building the CPU decode kernel failed (%s); using torch ops", e)
        return None
    lib.paged_decode.argtypes, lib.paged_decode.restype = _ARGS, ctypes.c_int
    return lib


class DecodeKernel:
    """``kernel(q, k_cache, v_cache, block_tables, seq_lens, rows, scale, out)``: each sequence's
    decode row ``rows[b]`` of ``out`` (see cpu_decode.c for the layouts; float32, contiguous), on
    as many threads as torch's intra-op setting (``Config.cpu_threads`` inside a step)."""

    def __init__(self, lib: ctypes.CDLL):
        self.fn = lib.paged_decode
        self.pool: ThreadPoolExecutor | None = None

    def __call__(self, q, k_cache, v_cache, block_tables, seq_lens, rows, scale, out) -> None:
        num_seqs, kv_heads = len(rows), k_cache.size(2)
        threads = torch.get_num_threads()
        args = [q, k_cache, v_cache, block_tables]
        ptrs = [t.data_ptr() for t in args]

        def run(first: int, last: int) -> None:
            status = self.fn(
                *ptrs,
                block_tables.size(1),
                seq_lens.data_ptr(),
                rows.data_ptr(),
                first,
                last,
                kv_heads,
                k_cache.size(1),
                scale,
                out.data_ptr(),
            )
            assert status == 0, "cpu_decode.c refused the shapes decode_kernel() accepted"

        if threads == 1 or num_seqs == 1:
            return run(0, num_seqs)
        # split the sequences by context, not by count: the rows are sorted by length
        work = np.cumsum(seq_lens.numpy().astype(np.int64))
        cuts = [0, *np.searchsorted(work, work[-1] * np.arange(1, threads) / threads), num_seqs]
        if self.pool is None or self.pool._max_workers < threads - 1:
            self.pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="nanovllm-decode")
        futures = [self.pool.submit(run, a, b) for a, b in zip(cuts[1:-1], cuts[2:])]
        run(cuts[0], cuts[1])
        for f in futures:
            f.result()


@functools.cache
def decode_kernel(dtype: torch.dtype, group: int, dim: int, block_size: int):
    """The kernel for these shapes, or None (torch ops then): float32 only, ``dim`` <= 512,
    ``block_size`` a multiple of 16 (the C side also needs at most 128 query heads)."""
    if dtype != torch.float32 or dim > 512 or block_size % 16:
        return None
    lib = _library(dim, group)
    return None if lib is None else DecodeKernel(lib)
