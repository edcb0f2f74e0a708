"""The child-process side of tensor parallelism: one rank, from spawn to exit.

``worker_main`` is the target ``WorkerGroup`` spawns once per rank. It rendezvouses (rank 0 opens a
``TCPStore`` on a port the OS picks and reports it; the others connect), joins the process group
(NCCL on CUDA, gloo on CPU), builds its ``ModelRunner``, answers ``("ready", num_kvcache_blocks)``,
then serves one ``("run", ticket)`` message per step until ``("close", None)``. From its first
line it also beats (heartbeat.py), so the main process can tell a slow step from a hung process.

Contract: every reply is ``("ok", payload)`` or ``("error", (traceback, typed_error_or_None))``;
after an error the worker exits. Ctrl-C is ignored here (the main process handles it), and cleanup
is best effort so the exit code never reads as a crash.
"""

from __future__ import annotations

import os
import pickle
import signal
import traceback
from datetime import timedelta
from multiprocessing.connection import Connection

from nanovllm.config import Config
from nanovllm.engine.parallel.heartbeat import start_beating
from nanovllm.engine.parallel.shm_channel import ShmReader
from nanovllm.errors import NanoVLLMError


def worker_main(config: Config, rank: int, conn: Connection, beats) -> None:
    """One rank: rendezvous, build its ModelRunner, then serve steps until told to close.
    ``beats`` is the group's shared array of heartbeat counters (one per rank)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    start_beating(beats, rank)
    timeout_s = config.step_timeout_s
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    import torch
    import torch.distributed as dist

    size, is_cuda = config.tensor_parallel_size, config.device.startswith("cuda")
    runner, reader = None, ShmReader()
    try:
        if is_cuda:
            torch.cuda.set_device(rank)
        else:  # share the cores instead of oversubscribing them
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // size))
        store = _rendezvous(rank, size, conn, timedelta(seconds=timeout_s))
        dist.init_process_group(
            "nccl" if is_cuda else "gloo",
            store=store,
            rank=rank,
            world_size=size,
            timeout=timedelta(seconds=timeout_s),
        )
        from nanovllm.engine.runner.model_runner import ModelRunner
        from nanovllm.layers.parallel import TensorParallel

        runner = ModelRunner(config, TensorParallel(rank, size))
        conn.send(("ready", runner.num_kvcache_blocks))
        _serve(runner, reader, conn, rank)
    except (EOFError, BrokenPipeError):
        pass  # the main process went away: nobody to answer
    except BaseException as e:
        try:
            conn.send(("error", (traceback.format_exc(), _typed(e))))
        except OSError:
            pass
    finally:  # best effort, and never a non-zero exit code: that would read as a crash
        _quietly(reader.close)
        if runner is not None:
            _quietly(runner.close)
        if dist.is_initialized():
            _quietly(dist.destroy_process_group)
        _quietly(conn.close)


def _quietly(cleanup) -> None:
    try:
        cleanup()
    except Exception:
        pass


def _typed(error: BaseException) -> NanoVLLMError | None:
    """``error`` if the main process should re-raise it as is (a user-facing error it can
    unpickle)."""
    if not isinstance(error, NanoVLLMError):
        return None
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return None
    return error


def _rendezvous(rank: int, size: int, conn: Connection, timeout: timedelta):
    import torch.distributed as dist

    if rank == 0:  # port 0: the OS picks a free port, so two engines never collide
        store = dist.TCPStore(
            "127.0.0.1", 0, size, is_master=True, wait_for_workers=False, timeout=timeout
        )
        conn.send(("port", store.port))
        return store
    tag, port = conn.recv()
    assert tag == "port", tag
    return dist.TCPStore("127.0.0.1", port, size, is_master=False, timeout=timeout)


def _serve(runner, reader: ShmReader, conn: Connection, rank: int) -> None:
    while True:
        tag, ticket = conn.recv()
        if tag == "close":
            return
        inputs = reader.read(ticket)
        if rank == 0:
            conn.send(("ok", runner.run(inputs)))
        else:  # the LM head gathers the logits on rank 0, which samples
            runner.forward_logits(inputs)
            conn.send(("ok", None))
