"""Tensor-parallel workers: lifecycle, failure handling and the shared-memory channel (CPU, gloo).

What must hold: every engine spawns its own workers, rendezvous port and shared-memory segment;
``close()`` (explicit, ``with``, garbage collection, interpreter exit) leaves no process, segment or
listening port behind; a worker that dies or raises surfaces as ``WorkerError`` within seconds;
a KeyboardInterrupt in the middle of ``generate`` leaves the engine usable and closable.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from multiprocessing import resource_tracker, shared_memory

import numpy as np
import pytest

from nanovllm import LLM, SamplingParams
from nanovllm.engine.parallel import shm_channel, worker_group
from nanovllm.engine.parallel.heartbeat import HeartbeatWatch, start_beating
from nanovllm.engine.parallel.shm_channel import SHM_PREFIX, ShmReader, ShmWriter, process_prefix
from nanovllm.engine.runner.inputs import StepInputs
from nanovllm.errors import EngineClosedError, ModelLoadError, StepError, WorkerError
from nanovllm.layers.sampling_batch import SamplingBatch

KW = dict(num_kvcache_blocks=32, kvcache_block_size=16, max_model_len=256)
PROMPTS = ["Hello world", "The KV cache is the largest consumer", "A block table maps"]
SHORT = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True)
LONG = SamplingParams(
    temperature=0, max_tokens=200, ignore_eos=True
)  # ~200 steps: time to interfere


# ---- what an engine may leave behind -------------------------------------------------------------
def children() -> set[int]:
    """Pids whose parent is this process (zombies included: an unreaped worker counts as left)."""
    me, found = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == me:
            found.add(int(entry))
    return found


def shm_segments() -> set[str]:
    return set(os.listdir("/dev/shm"))


def unowned_segments(before: set[str], pid: int) -> set[str]:
    """Segments new since ``before`` that process ``pid`` (this one, or a child that ran an
    engine) may have left: every nanovllm segment named with ``pid``'s prefix (known to be its),
    and new segments of other names that no other live process holds. nanovllm segments of other
    pids belong to other runs on this machine, which may create and unlink theirs at any moment:
    they are never ours, held or not."""
    new = shm_segments() - before
    ours = {s for s in new if s.startswith(process_prefix(pid))}
    unnamed = {s for s in new if not s.startswith(SHM_PREFIX)}
    return ours | (unnamed - held_by_other_processes(unnamed))


def held_by_other_processes(names: set[str]) -> set[str]:
    """The segments among ``names`` that another live process maps or holds open: those belong to
    whatever else runs on this machine, not to an engine of ours."""
    held = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/maps") as f:
                text = f.read()
            text += " ".join(
                os.readlink(f"/proc/{entry}/fd/{fd}") for fd in os.listdir(f"/proc/{entry}/fd")
            )
        except OSError:
            continue
        held |= {n for n in names if f"/dev/shm/{n}" in text}
    return held


def listening_sockets() -> dict[int, int]:
    """Socket inode -> port of every TCP socket in LISTEN state on this machine."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.readlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A":  # TCP_LISTEN
                found[int(fields[9])] = int(fields[1].rsplit(":", 1)[1], 16)
    return found


def my_socket_inodes() -> set[int]:
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


class Leftovers:
    """Snapshot of children and shared memory; ``check()`` asserts that the engines noted since
    left no process, segment or listening port behind."""

    def __init__(self):
        resource_tracker.ensure_running()  # started once per process, not per engine: not a leak
        self.children, self.shm = children(), shm_segments()
        self.engine_ports: set[int] = set()
        self.engine_prefixes: set[str] = set()

    def note(self, llm: LLM) -> None:
        if hasattr(llm.executor, "port"):
            self.engine_ports.add(llm.executor.port)
            self.engine_prefixes.add(llm.executor.shm_prefix)
            assert llm.executor.shm_prefix.startswith(process_prefix())  # unowned_segments sees it

    def check(self) -> None:
        assert mp.active_children() == []
        assert children() - self.children == set()
        now = shm_segments()
        assert {s for s in now for p in self.engine_prefixes if s.startswith(p)} == set()
        assert unowned_segments(self.shm, os.getpid()) == set()  # noted engines or not
        listening = listening_sockets()
        assert set(listening.values()) & self.engine_ports == set()
        assert set(listening) & my_socket_inodes() == set()


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture(scope="module")
def reference(tiny_model) -> list[list[int]]:
    with LLM(tiny_model, **KW) as llm:
        return [o["token_ids"] for o in llm.generate(PROMPTS, SHORT, use_tqdm=False)]


def tokens(llm: LLM, params: SamplingParams = SHORT) -> list[list[int]]:
    return [o["token_ids"] for o in llm.generate(PROMPTS, params, use_tqdm=False)]


# ---- the shared-memory channel -------------------------------------------------------------------
def test_channel_carries_messages_of_any_size_and_unlinks_what_it_replaced():
    before = shm_segments()
    writer, reader = ShmWriter(), ShmReader()
    try:
        for n in (10, 3 << 20, 100, 9 << 20):  # past the initial 1 MiB twice
            msg = {"n": n, "data": np.arange(n // 8, dtype=np.int64)}
            got = reader.read(writer.write(msg))
            assert got["n"] == n and np.array_equal(got["data"], msg["data"])
            mine = {s for s in shm_segments() - before if s.startswith(writer.prefix)}
            assert len(mine) == 1  # the outgrown segment is unlinked at once
        assert writer.generation == 3 and writer.capacity >= 9 << 20
    finally:
        reader.close()
        writer.close()
        writer.close()  # idempotent
    assert not any(s.startswith(writer.prefix) for s in shm_segments())


def test_each_channel_has_its_own_name():
    a, b = ShmWriter(), ShmWriter()
    assert a.prefix != b.prefix and a.prefix.startswith(SHM_PREFIX)
    try:
        assert a.write(1).name != b.write(2).name
    finally:
        a.close()
        b.close()


def test_leftover_check_ignores_another_runs_segment_and_catches_ours():
    """Another run's writer between its close() (unmapped) and unlink(): a nanovllm segment no
    process holds. It is not ours; a segment of this process's writer, held or not, is."""
    leftovers = Leftovers()
    other_pid = os.getppid()  # any pid but ours: the name is all the check reads
    foreign = shared_memory.SharedMemory(
        name=f"{process_prefix(other_pid)}0123abcd_0", create=True, size=64
    )
    foreign.close()
    writer = ShmWriter()
    try:
        leftovers.check()
        writer.write("left behind")
        with pytest.raises(AssertionError, match=writer.prefix):
            leftovers.check()
        writer.close()
        leftovers.check()
    finally:
        writer.close()
        foreign.unlink()


# ---- lifecycle -----------------------------------------------------------------------------------
def test_messages_outgrow_the_segment_between_steps(tiny_model, reference, monkeypatch):
    monkeypatch.setattr(shm_channel, "INITIAL_BYTES", 256)
    long_prompt = list(range(3, 203))  # its prefill message is ~4x the first one
    with LLM(tiny_model, **KW) as llm:
        expected = llm.generate([long_prompt], SHORT, use_tqdm=False)[0]["token_ids"]
    with LLM(tiny_model, tensor_parallel_size=2, **KW) as llm:
        assert tokens(llm) == reference
        first = llm.executor.channel.generation
        assert llm.generate([long_prompt], SHORT, use_tqdm=False)[0]["token_ids"] == expected
        assert llm.executor.channel.generation > first >= 1


def test_close_is_idempotent_and_with_closes_workers(tiny_model, reference):
    leftovers = Leftovers()
    with LLM(tiny_model, tensor_parallel_size=2, **KW) as llm:
        leftovers.note(llm)
        pids = llm.executor.pids
        assert len(pids) == 2 and all(not gone(p) for p in pids)
        assert tokens(llm) == reference
    assert all(gone(p) for p in pids)
    llm.close()
    llm.executor.close()
    with pytest.raises(EngineClosedError):
        llm.generate(PROMPTS, SHORT, use_tqdm=False)
    leftovers.check()


def test_dropping_the_last_reference_closes_workers(tiny_model):
    leftovers = Leftovers()
    llm = LLM(tiny_model, tensor_parallel_size=2, **KW)
    leftovers.note(llm)
    pids, prefix = llm.executor.pids, llm.executor.shm_prefix
    llm.generate(PROMPTS, SHORT, use_tqdm=False)
    assert any(s.startswith(prefix) for s in shm_segments())
    del llm
    gc.collect()
    assert all(gone(p) for p in pids)
    leftovers.check()


def test_ten_cycles_leave_no_process_segment_or_port(tiny_model, reference):
    leftovers = Leftovers()
    ports = set()
    for cycle in range(10):
        llm = LLM(tiny_model, tensor_parallel_size=1 + cycle % 2, **KW)
        leftovers.note(llm)
        if cycle % 2:
            ports.add(llm.executor.port)
        assert tokens(llm) == reference
        llm.close()
    assert len(ports) >= 2  # a fresh free port per engine, never a fixed one
    leftovers.check()


def test_interpreter_exit_closes_workers(tiny_model, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(f"""
        import os

        from nanovllm import LLM, SamplingParams

        if __name__ == "__main__":
            llm = LLM({str(tiny_model)!r}, tensor_parallel_size=2, **{KW!r})
            llm.generate(["hi"], SamplingParams(temperature=0, max_tokens=3), use_tqdm=False)
            print(os.getpid(), *llm.executor.pids, llm.executor.shm_prefix, flush=True)
            # no close(): interpreter exit must do it
    """)
    )
    before = shm_segments()
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.returncode == 0, proc.stderr
    child, *pids, prefix = proc.stdout.split()
    assert all(gone(int(p)) for p in pids)
    assert prefix.startswith(process_prefix(int(child)))
    assert unowned_segments(before, int(child)) == set()
    assert "leaked" not in proc.stderr, proc.stderr


# ---- failures ------------------------------------------------------------------------------------
def _expect_worker_error(call) -> WorkerError:
    with pytest.raises((WorkerError, StepError)) as info:
        call()
    err = info.value if isinstance(info.value, WorkerError) else info.value.__cause__
    assert isinstance(err, WorkerError), repr(info.value)
    return err


def _signal_after_three_steps(llm: LLM, pid: int, sig: signal.Signals) -> None:
    steps = []

    def observer(record):
        steps.append(record.step)
        if len(steps) == 3:
            os.kill(pid, sig)

    llm.subscribe(observer)


def _kill_between_steps(llm: LLM, pid: int) -> None:
    _signal_after_three_steps(llm, pid, signal.SIGKILL)


def _kill_mid_step(llm: LLM, pid: int) -> None:
    started = threading.Event()
    llm.subscribe(lambda record: started.set())

    def killer():
        if started.wait(30):
            time.sleep(0.05)
            os.kill(pid, signal.SIGKILL)

    threading.Thread(target=killer, daemon=True).start()


@pytest.mark.parametrize(
    "kill, victim",
    [(_kill_between_steps, 1), (_kill_mid_step, 0)],
    ids=["between-steps-rank1", "mid-step-rank0"],
)
def test_killed_worker_raises_worker_error_then_a_new_engine_works(
    tiny_model, reference, kill, victim
):
    leftovers = Leftovers()
    llm = LLM(tiny_model, tensor_parallel_size=2, **KW)
    leftovers.note(llm)
    pid = llm.executor.pids[victim]
    kill(llm, pid)
    t0 = time.monotonic()
    err = _expect_worker_error(lambda: llm.generate(PROMPTS, LONG, use_tqdm=False))
    assert time.monotonic() - t0 < 30
    assert err.rank == victim and "SIGKILL" in str(err) and str(pid) in str(err)
    t0 = time.monotonic()  # from now on the group refuses at once
    again = _expect_worker_error(lambda: llm.generate(PROMPTS, SHORT, use_tqdm=False))
    assert time.monotonic() - t0 < 1 and "failed earlier" in str(again)
    llm.close()
    leftovers.check()
    with LLM(tiny_model, tensor_parallel_size=2, **KW) as fresh:
        leftovers.note(fresh)
        assert tokens(fresh) == reference
    leftovers.check()


# ---- hung workers: a stopped process is not a slow step ------------------------------------------
def _busy_while_beating(beats, seconds: float) -> None:
    """A stand-in for a worker in a long step: its main thread runs Python (holding the GIL but
    for the interpreter's switch interval) while the heartbeat thread beats."""
    start_beating(beats, 0)
    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        n += 1


@pytest.mark.slow
def test_a_busy_process_keeps_beating_and_a_stopped_one_falls_silent():
    ctx = mp.get_context("spawn")
    beats = ctx.RawArray("Q", 1)
    proc = ctx.Process(target=_busy_while_beating, args=(beats, 60.0), daemon=True)
    proc.start()
    try:
        deadline = time.monotonic() + 60
        while beats[0] == 0 and time.monotonic() < deadline:  # spawn and imports
            time.sleep(0.05)
        watch = HeartbeatWatch(beats, timeout=2.5)
        for _ in range(20):  # 4 s of a busy main thread: never silent
            time.sleep(0.2)
            assert watch.silent() is None
        os.kill(proc.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        while (silent := watch.silent()) is None and time.monotonic() - t0 < 10:
            time.sleep(0.1)
        assert silent is not None and silent[0] == 0 and silent[1] > 2.5
        assert time.monotonic() - t0 < 4.5  # the timeout, plus at most one beat interval
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(1.5)
        assert watch.silent() is None  # beating again: a resumed process is not hung
    finally:
        proc.kill()
        proc.join()


@pytest.mark.slow
def test_a_stopped_worker_raises_worker_error_naming_it_within_seconds(tiny_model, reference):
    """SIGSTOP (not death): the process stays, its pipe stays open, and its peer waits in a
    collective. The silent heartbeat names it within heartbeat_timeout_s (10 s by default)."""
    leftovers = Leftovers()
    llm = LLM(tiny_model, tensor_parallel_size=2, **KW)
    leftovers.note(llm)
    assert (llm.executor.step_timeout, llm.executor.heartbeat_timeout) == (600.0, 10.0)
    pid = llm.executor.pids[1]
    _signal_after_three_steps(llm, pid, signal.SIGSTOP)
    t0 = time.monotonic()
    err = _expect_worker_error(lambda: llm.generate(PROMPTS, LONG, use_tqdm=False))
    assert 10 <= time.monotonic() - t0 < 30
    assert err.rank == 1 and f"rank 1 (pid {pid}) is hung" in str(err)
    assert "state is T (stopped)" in str(err)
    again = _expect_worker_error(lambda: llm.generate(PROMPTS, SHORT, use_tqdm=False))
    assert "failed earlier" in str(again)
    t0 = time.monotonic()
    llm.close()  # the stopped rank gets its SIGTERM: no wait for a join that cannot end
    assert time.monotonic() - t0 < 5
    leftovers.check()


def _bad_inputs() -> StepInputs:
    """Well-formed arrays that point past the KV cache: every rank raises in its forward pass."""
    return StepInputs(
        input_ids=np.array([5], dtype=np.int64),
        positions=np.array([0], dtype=np.int64),
        slot_mapping=np.array([10**9], dtype=np.int64),
        cu_seqlens_q=np.array([0, 1], dtype=np.int32),
        seq_lens=np.array([1], dtype=np.int32),
        block_tables=np.array([[10**6]], dtype=np.int32),
        logits_indices=np.array([0], dtype=np.int64),
        sampling=SamplingBatch([0.0], [None], [1.0], [None], [0], [None]),
    )


def test_worker_that_raises_sends_its_traceback(tiny_model):
    leftovers = Leftovers()
    llm = LLM(tiny_model, tensor_parallel_size=2, **KW)
    leftovers.note(llm)
    err = _expect_worker_error(lambda: llm.executor.run(_bad_inputs()))
    assert "raised" in str(err) and "Traceback (most recent call last)" in err.worker_traceback
    assert "Error" in err.worker_traceback.strip().splitlines()[-1]
    _expect_worker_error(lambda: llm.generate(PROMPTS, SHORT, use_tqdm=False))
    llm.close()
    leftovers.check()


def test_typed_error_at_startup_is_raised_as_itself(tiny_model, tmp_path):
    broken = tmp_path / "no-weights"
    shutil.copytree(tiny_model, broken, ignore=shutil.ignore_patterns("*.safetensors"))
    leftovers = Leftovers()
    with pytest.raises(ModelLoadError, match="no \\*.safetensors") as one:
        LLM(str(broken), **KW)
    with pytest.raises(ModelLoadError, match="no \\*.safetensors") as two:
        LLM(str(broken), tensor_parallel_size=2, **KW)
    assert str(two.value) == str(one.value)
    assert isinstance(two.value.__cause__, WorkerError)
    assert "load_model" in two.value.__cause__.worker_traceback
    leftovers.check()


# ---- KeyboardInterrupt ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "interrupted_call",
    [5, 6],
    ids=["before-any-reply-of-the-step", "after-rank-0-replied"],
)
def test_interrupt_while_waiting_for_replies_keeps_the_engine_usable(
    tiny_model, reference, monkeypatch, interrupted_call
):
    """Replies are handed over one per ``wait`` call, so each step takes exactly two calls and the
    interrupt lands at a known point of the third step: before any reply was read, or after one
    rank's reply was read and the other's was not (the case that hung CI when the group forgot
    which ranks had already answered)."""
    leftovers = Leftovers()
    with LLM(tiny_model, tensor_parallel_size=2, **KW) as llm:
        leftovers.note(llm)
        llm.executor.step_timeout = 60.0  # a regression fails in a minute, not in ten
        calls = []
        real_wait = worker_group.wait

        def one_reply_per_wait(objects, timeout=None):
            calls.append(1)
            if len(calls) == interrupted_call:
                raise KeyboardInterrupt
            ready = real_wait(objects, timeout=timeout)
            return ready[:1]

        monkeypatch.setattr(worker_group, "wait", one_reply_per_wait)
        with pytest.raises(KeyboardInterrupt):
            llm.generate(PROMPTS, LONG, use_tqdm=False)
        step = llm.executor._in_flight
        assert step is not None and not step.unsent  # sent to all, replies still owed
        assert len(step.unanswered) == {5: 2, 6: 1}[interrupted_call]
        assert tokens(llm) == reference
        assert llm.executor._in_flight is None
        assert llm.check_integrity() == []
    leftovers.check()


def test_interrupt_inside_a_reply_stops_the_group_cleanly(tiny_model):
    """Ctrl-C inside ``recv()`` can leave half a message in the pipe: the group stops, says why
    on the next call, and closes without leftovers."""

    class InterruptedRecv:
        def __init__(self, conn):
            self.conn = conn

        def recv(self):
            raise KeyboardInterrupt

        def __getattr__(self, name):
            return getattr(self.conn, name)

    leftovers = Leftovers()
    llm = LLM(tiny_model, tensor_parallel_size=2, **KW)
    leftovers.note(llm)
    group = llm.executor
    group._conns[1] = InterruptedRecv(group._conns[1])
    with pytest.raises(KeyboardInterrupt):
        llm.generate(PROMPTS, SHORT, use_tqdm=False)
    err = _expect_worker_error(lambda: llm.generate(PROMPTS, SHORT, use_tqdm=False))
    assert "interrupted while reading" in str(err) and err.rank == 1
    llm.close()
    leftovers.check()


def test_interrupt_between_sends_keeps_the_engine_usable(tiny_model, reference):
    leftovers = Leftovers()
    with LLM(tiny_model, tensor_parallel_size=2, **KW) as llm:
        leftovers.note(llm)
        group, sends = llm.executor, []
        real_send = group._send

        def interrupted_send(rank, msg):
            sends.append(rank)
            if len(sends) == 6:  # the third step reached rank 0 but not rank 1
                assert rank == 1
                raise KeyboardInterrupt
            real_send(rank, msg)

        group._send = interrupted_send
        with pytest.raises(KeyboardInterrupt):
            llm.generate(PROMPTS, LONG, use_tqdm=False)
        group._send = real_send
        assert tokens(llm) == reference
    leftovers.check()


def test_real_sigint_mid_generate_then_close(tiny_model):
    leftovers = Leftovers()
    llm = LLM(tiny_model, tensor_parallel_size=2, **KW)
    leftovers.note(llm)
    pids = llm.executor.pids
    armed = threading.Event()

    def handler(signum, frame):  # only raise while generate runs, so a late signal cannot escape
        if armed.is_set():
            armed.clear()
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        started = threading.Event()
        llm.subscribe(lambda record: started.set())

        def ctrl_c():  # as a terminal does: the whole foreground process group gets SIGINT
            if started.wait(30):
                time.sleep(0.2)
                for pid in (*pids, os.getpid()):
                    os.kill(pid, signal.SIGINT)

        threading.Thread(target=ctrl_c, daemon=True).start()
        armed.set()
        with pytest.raises(KeyboardInterrupt):
            llm.generate(PROMPTS * 4, LONG, use_tqdm=False)
    finally:
        armed.clear()
        signal.signal(signal.SIGINT, previous)
    assert all(not gone(p) for p in pids)  # workers ignore SIGINT: the main process decides
    t0 = time.monotonic()
    llm.close()
    assert time.monotonic() - t0 < 15
    assert all(gone(p) for p in pids)
    leftovers.check()
