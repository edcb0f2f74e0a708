"""Tensor-parallel worker processes: spawn, one round trip per step, shutdown.

``WorkerGroup`` stands in for a ``ModelRunner`` when ``tensor_parallel_size > 1``. Every rank,
rank 0 included, runs in its own spawned process, so the user's process (often a Jupyter kernel)
never joins a process group, never touches the GPU, and survives a worker's death.

::

    main process: WorkerGroup                          worker r = 0 .. N-1: worker_main
      run(inputs)  -- ShmWriter.write(inputs) -->  "nanovllm_<pid>_<token>_<gen>"  (any size)
                   -- ("run", ticket)  pipe r -->  ShmReader.read(ticket)
                                                   ModelRunner(config, TensorParallel(r, N))
                   <-- ("ok", (SamplerOutput, RunTiming))   rank 0: forward + sample
                   <-- ("ok", None)                         other ranks: forward_logits only
                   <-- ("error", traceback)                 any rank that raised (then it exits)

Rendezvous: rank 0 opens a ``TCPStore`` on 127.0.0.1, port 0 (the OS picks a free one), and reports
the port; the main process forwards it to the other ranks. No fixed port, so engines never collide.
Backend: NCCL when the device is CUDA (rank r uses cuda:r), gloo on CPU.

Contract:
- ``num_kvcache_blocks`` is the minimum over ranks; ``run()`` returns rank 0's output.
- A typed user error while a worker starts (``ModelLoadError``, ``KVCacheTooSmallError``, ...)
  is raised as itself, as with one rank, with the ``WorkerError`` as its ``__cause__``.
- A worker that dies, raises, or does not answer within ``step_timeout`` (``config.step_timeout_s``,
  600 s: also the process group's timeout) makes ``run()`` raise ``WorkerError`` (carrying the
  worker's traceback when there is one); the survivors are terminated and every later ``run()``
  raises ``WorkerError`` at once.
- A hung worker (stopped with SIGSTOP, or frozen) is told from a slow one by its heartbeat
  (heartbeat.py): a wait for replies looks at every rank's counter each ``HEARTBEAT_CHECK_S``, and
  a rank silent for ``config.heartbeat_timeout_s`` (10 s) makes it raise ``WorkerError`` naming
  the rank. A slow step (a first Triton compile, a long prefill) keeps beating and gets the whole
  ``step_timeout``.
- A step interrupted in the main process (KeyboardInterrupt) is completed and its replies still
  owed are drained at the start of the next ``run()``, so the group stays in step with the engine.
  An interrupt inside the read of a reply (half a message may be left in the pipe) stops the
  group instead: the next ``run()`` raises ``WorkerError``.
- ``close()`` asks the workers to exit (each destroys its process group), joins them (terminating
  stragglers), closes the pipes and unlinks the shared memory. It is idempotent, and also runs on
  garbage collection and at interpreter exit (``weakref.finalize``).
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import signal
import time
import weakref
from multiprocessing.connection import Connection, wait

from nanovllm.config import Config
from nanovllm.engine.parallel.heartbeat import HeartbeatWatch, process_state
from nanovllm.engine.parallel.shm_channel import ShmWriter, Ticket
from nanovllm.engine.parallel.worker_main import worker_main
from nanovllm.engine.runner.inputs import StepInputs
from nanovllm.errors import EngineClosedError, NanoVLLMError, WorkerError

STARTUP_TIMEOUT_S = 1800.0  # loading a large checkpoint and capturing CUDA graphs takes a while
HEARTBEAT_CHECK_S = 1.0  # how often a wait for replies looks at the heartbeats
JOIN_TIMEOUT_S = 10.0  # a clean exit takes well under a second; then we terminate
DEATH_GRACE_S = 0.5  # when a rank raises, wait this long to see whether a peer died first


@dataclasses.dataclass
class _InFlight:
    """One step's round trip: the ranks not yet sent its ticket, and those not yet heard from."""

    ticket: Ticket
    unsent: set[int]
    unanswered: set[int]


class WorkerGroup:  # an Executor (runner/executor.py) over spawned ranks
    def __init__(
        self,
        config: Config,
        *,
        startup_timeout: float = STARTUP_TIMEOUT_S,
    ):
        self.size = config.tensor_parallel_size
        self.step_timeout = config.step_timeout_s
        self.heartbeat_timeout = config.heartbeat_timeout_s
        self.channel = ShmWriter()
        self.port: int | None = None
        self._procs: list[mp.process.BaseProcess] = []
        self._conns: list[Connection] = []
        self._broken: WorkerError | None = None
        self._in_flight: _InFlight | None = None  # the step sent or being sent, not fully answered
        self._starting = True
        self._finalizer = weakref.finalize(self, _shutdown, self._procs, self._conns, self.channel)
        try:
            self._spawn(config)
            self.port = self._collect("port", startup_timeout, ranks=[0])[0]
            for rank in range(1, self.size):
                self._send(rank, ("port", self.port))
            self.num_kvcache_blocks: int = min(self._collect("ready", startup_timeout))
            self._starting = False
        except BaseException:
            self.close()
            raise

    def _spawn(self, config: Config) -> None:
        ctx = mp.get_context("spawn")  # fork would copy the caller's threads, CUDA state and locks
        self._beats = ctx.RawArray("Q", self.size)  # each rank's heartbeat counter
        if config.device.startswith("cuda"):
            config = dataclasses.replace(config, device="cuda")  # rank r runs on cuda:r
        for rank in range(self.size):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=worker_main,
                args=(config, rank, child, self._beats),
                name=f"nanovllm-tp{rank}",
                daemon=True,
            )
            try:
                proc.start()
            finally:
                child.close()  # keep only the worker's copy, so its death reads as EOF here
            self._procs.append(proc)
            self._conns.append(parent)

    # ---- the executor interface -----------------------------------------------------------------
    def run(self, inputs: StepInputs):
        """Broadcast ``inputs`` to every rank; return rank 0's ``(SamplerOutput, RunTiming)``.
        The time spent on pickling and the round trip is counted as ``prepare``."""
        self._check_usable()
        t0 = time.perf_counter()
        if self._in_flight is not None:
            self._finish_interrupted_step()
        step = _InFlight(self.channel.write(inputs), set(range(self.size)), set(range(self.size)))
        self._in_flight = step
        self._send_ticket()
        out, timing = self._collect("ok", self.step_timeout, unanswered=step.unanswered)[0]
        self._in_flight = None
        wall = time.perf_counter() - t0
        timing.prepare += max(0.0, wall - timing.prepare - timing.forward - timing.sample)
        return out, timing

    def launch(self, inputs: StepInputs) -> _Ran:
        """No overlap across processes (the ranks would need the pending tokens): runs now."""
        return _Ran(self.run(inputs))

    def collect(self, launched: _Ran):
        return launched.result

    def close(self) -> None:
        """Stop the workers and free the shared memory. Safe to call more than once."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    @property
    def shm_prefix(self) -> str:
        return self.channel.prefix

    # ---- sending and receiving ------------------------------------------------------------------
    def _check_usable(self) -> None:
        if self.closed:
            raise EngineClosedError("the tensor-parallel workers were closed; create a new LLM")
        if self._broken is not None:
            reason = str(self._broken).splitlines()[0]
            raise WorkerError(
                f"the tensor-parallel workers failed earlier and were stopped ({reason}); "
                "close this engine and create a new one",
                rank=self._broken.rank,
            )

    def _send_ticket(self) -> None:
        step = self._in_flight
        for rank in sorted(step.unsent):
            self._send(rank, ("run", step.ticket))
            step.unsent.discard(rank)

    def _finish_interrupted_step(self) -> None:
        """A KeyboardInterrupt left a step half sent or some of its replies unread: send the rest,
        read the replies not read yet (a rank that already answered sends nothing more), drop it."""
        step = self._in_flight
        self._send_ticket()
        self._collect("ok", self.step_timeout, unanswered=step.unanswered)
        self._in_flight = None

    def _send(self, rank: int, msg: tuple) -> None:
        try:
            self._conns[rank].send(msg)
        except OSError:  # BrokenPipeError and friends: the worker is gone
            self._fail(self._death_error(rank))

    def _collect(
        self,
        tag: str,
        timeout: float,
        ranks: list[int] | None = None,
        unanswered: set[int] | None = None,
    ) -> list:
        """Wait for one ``(tag, payload)`` reply from each of ``ranks``; return the payloads.
        With ``unanswered`` (and no ``ranks``), wait for the ranks in it, and remove each one as
        soon as its reply is read, so that a KeyboardInterrupt between two replies leaves a true
        account of what is still owed.
        Raises ``WorkerError`` as soon as any worker raises or dies, or at the timeout."""
        if ranks is None:
            ranks = sorted(unanswered) if unanswered is not None else list(range(self.size))
        waiting = {self._conns[r]: r for r in ranks}
        sentinels = {p.sentinel: r for r, p in enumerate(self._procs)}
        replies: dict[int, object] = {}
        deadline = time.monotonic() + timeout
        heartbeats = HeartbeatWatch(self._beats, self.heartbeat_timeout)
        while waiting:
            if (silent := heartbeats.silent()) is not None:
                self._fail(self._hung_error(*silent))
            left = deadline - time.monotonic()
            if left <= 0:
                self._fail(
                    WorkerError(
                        f"no reply from tensor-parallel worker rank(s) {sorted(waiting.values())} "
                        f"within {timeout:.0f} s",
                        rank=min(waiting.values()),
                    )
                )
            ready = wait([*waiting, *sentinels], timeout=min(left, HEARTBEAT_CHECK_S))
            for conn in [c for c in ready if c in waiting]:
                rank = waiting.pop(conn)
                replies[rank] = self._receive(conn, rank, tag)
                if unanswered is not None:
                    unanswered.discard(rank)
            for sentinel in [s for s in ready if s in sentinels]:
                rank = sentinels[sentinel]
                if self._conns[rank].poll():  # its last words, e.g. a traceback, come first
                    self._receive(self._conns[rank], rank, tag)
                self._fail(self._death_error(rank))
        return [replies[r] for r in ranks]

    def _hung_error(self, rank: int, silent_s: float) -> WorkerError:
        pid = self._procs[rank].pid
        return WorkerError(
            f"tensor-parallel worker rank {rank} (pid {pid}) is hung: no heartbeat for "
            f"{silent_s:.0f} s (heartbeat_timeout_s={self.heartbeat_timeout:g})"
            f"{process_state(pid)}",
            rank=rank,
        )

    def _receive(self, conn: Connection, rank: int, tag: str):
        try:
            got, payload = conn.recv()
        except (EOFError, OSError):
            self._fail(self._death_error(rank))
        except KeyboardInterrupt:
            # Ctrl-C inside recv() may leave half a message in the pipe, and nothing can read
            # that pipe in step again. Stop the group (the next run() says why), then go on
            # with the interrupt.
            self._stop(
                WorkerError(
                    f"interrupted while reading tensor-parallel worker rank {rank}'s reply",
                    rank=rank,
                )
            )
            raise
        if got == "error":
            self._raise_worker_error(rank, *payload, starting=tag in ("port", "ready"))
        assert got == tag, f"worker rank {rank} answered {got!r}, expected {tag!r}"
        return payload

    def _raise_worker_error(
        self, rank: int, trace: str, typed: NanoVLLMError | None, starting: bool
    ):
        dead = self._first_dead(DEATH_GRACE_S, rank)  # a dead peer often makes this rank raise
        if dead is not None:
            self._fail(self._death_error(dead, also=f"rank {rank} raised too:\n{trace}"))
        error = WorkerError(
            f"tensor-parallel worker rank {rank} raised", rank=rank, worker_traceback=trace
        )
        self._fail(error, typed if starting else None)

    def _first_dead(self, grace: float, raised: int) -> int | None:
        """A peer of rank ``raised`` that died abnormally within ``grace`` seconds, if any. (A rank
        that raised exits cleanly, with code 0, after sending its traceback.)"""
        sentinels = {p.sentinel: r for r, p in enumerate(self._procs) if r != raised}
        deadline = time.monotonic() + grace
        while sentinels:
            ready = wait(list(sentinels), timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            for s in ready:
                proc = self._procs[sentinels.pop(s)]
                proc.join(timeout=1.0)
                if proc.exitcode:
                    return self._procs.index(proc)
        return None

    def _death_error(self, rank: int, also: str = "") -> WorkerError:
        proc = self._procs[rank]
        proc.join(timeout=1.0)  # reap it, so the exit code is known
        code = proc.exitcode
        if code is None:
            how = "closed its pipe"
        elif code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with code {code}"
        if self._starting and code is not None:
            how += (
                " while starting; its stderr says why. (In a script, create the LLM under "
                "`if __name__ == '__main__':`, since spawned workers import the main module.)"
            )
        return WorkerError(
            f"tensor-parallel worker rank {rank} (pid {proc.pid}) {how}",
            rank=rank,
            worker_traceback=also,
        )

    def _stop(self, error: WorkerError) -> None:
        """Mark the group unusable (later calls raise ``error``'s reason) and stop every worker
        now: survivors may be stuck in a collective waiting for a dead one. ``close()`` still
        joins the workers and unlinks the shared memory."""
        self._broken = error
        for proc in self._procs:
            if proc.exitcode is None:
                proc.terminate()
                _resume(proc)  # a stopped process receives its SIGTERM only once resumed

    def _fail(self, error: WorkerError, typed: BaseException | None = None):
        """``_stop(error)``, then raise ``error`` (or ``typed``, caused by it)."""
        self._stop(error)
        if typed is not None:
            raise typed from error
        raise error


def _resume(proc: mp.process.BaseProcess) -> None:
    try:
        os.kill(proc.pid, signal.SIGCONT)
    except (OSError, AttributeError):  # gone already; or no SIGCONT (not POSIX)
        pass


def _shutdown(procs: list, conns: list[Connection], channel: ShmWriter) -> None:
    """Everything ``close()`` does; a plain function so that the finalizer holds no ``self``."""
    for conn in conns:
        try:
            conn.send(("close", None))
        except OSError:
            pass
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    for proc in procs:
        proc.join(timeout=max(0.0, deadline - time.monotonic()))
    for proc in procs:
        if proc.exitcode is None:
            proc.terminate()
            _resume(proc)
            proc.join(timeout=2.0)
        if proc.exitcode is None:
            proc.kill()
            proc.join()
        proc.close()
    for conn in conns:
        conn.close()
    channel.close()


@dataclasses.dataclass
class _Ran:
    """A step ``launch`` already ran to the end."""

    result: tuple
    overlappable: bool = False
