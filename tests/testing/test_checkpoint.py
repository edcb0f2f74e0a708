"""nanovllm.testing.checkpoint: one build at a time, and a dead build leaves nothing trusted.

Real processes, not threads: each builder is a `python -c` child with its own interpreter, as when
several pytest workers or notebooks ask for the same tiny model at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from nanovllm.testing import checkpoint
from nanovllm.testing.checkpoint import COMPLETE, build_cached, is_complete

# A child that asks for `name`. It first marks its arrival; its build logs its pid, waits for
# `expected` arrivals and then `pause` s (so the others are waiting on the lock), writes a file, and
# the second one after `stall` s (a kill lands in between).
CHILD = """
import os, sys, time
from pathlib import Path
from nanovllm.testing.checkpoint import build_cached
name, log, pause, stall, expected = sys.argv[1], Path(sys.argv[2]), *map(float, sys.argv[3:])
(log.parent / f"arrived-{os.getpid()}").touch()

def build(tmp):
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\\n")
    deadline = time.monotonic() + 120
    while len(list(log.parent.glob("arrived-*"))) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(pause)
    (tmp / "config.json").write_text("{}")
    time.sleep(stall)
    (tmp / "model.safetensors").write_text("weights")

print(build_cached(name, build), flush=True)
"""


def _child(tmp_path: Path, name: str, pause: float, stall=0.0, expected=1) -> subprocess.Popen:
    env = {**os.environ, "NANOVLLM_CACHE": str(tmp_path / "cache")}
    log = str(tmp_path / "builds.log")
    args = [sys.executable, "-c", CHILD, name, log, str(pause), str(stall), str(expected)]
    pipe = subprocess.PIPE
    return subprocess.Popen(args, env=env, stdout=pipe, stderr=pipe, text=True)


def _builds(tmp_path: Path) -> list[str]:
    log = tmp_path / "builds.log"
    return log.read_text().split() if log.exists() else []


def test_processes_asking_at_once_build_once_and_share_the_result(tmp_path):
    pause = checkpoint.WAIT_NOTICE_S + 1.0  # the others wait long enough to say so
    procs = [_child(tmp_path, "shared", pause, expected=4) for _ in range(4)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in results]
    paths = {out.strip() for out, _ in results}
    assert paths == {str(tmp_path / "cache" / "shared")}
    assert len(_builds(tmp_path)) == 1  # the other three waited and reused it
    final = Path(paths.pop())
    assert is_complete(final) and (final / "model.safetensors").read_text() == "weights"
    assert any("waiting for another process" in err for _, err in results)
    assert not [p for p in final.parent.iterdir() if p.name.startswith(".tmp")]


def test_a_killed_build_leaves_nothing_trusted_and_the_next_call_builds(tmp_path, monkeypatch):
    victim = _child(tmp_path, "killed", pause=0.0, stall=60.0)
    tmp = tmp_path / "cache" / ".tmp-killed"
    deadline = time.monotonic() + 60
    while not (tmp / "config.json").exists():  # half-written: config.json, no weights yet
        assert victim.poll() is None and time.monotonic() < deadline, victim.communicate()
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    final = tmp_path / "cache" / "killed"
    assert not final.exists() and tmp.exists()  # only the temp dir, which nothing trusts

    monkeypatch.setenv("NANOVLLM_CACHE", str(tmp_path / "cache"))
    calls = []

    def build(path):
        calls.append(path)
        (path / "config.json").write_text("{}")

    assert build_cached("killed", build) == final  # the dead builder's lock is gone: no wait
    assert len(calls) == 1 and is_complete(final) and not tmp.exists()
    assert build_cached("killed", build) == final and len(calls) == 1  # now reused


def test_a_directory_without_the_completion_marker_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOVLLM_CACHE", str(tmp_path))
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "config.json").write_text("half")  # e.g. written by hand, or an older builder
    built = []
    path = build_cached("stale", lambda p: built.append((p / "config.json").write_text("{}")))
    assert path == stale and built and (stale / "config.json").read_text() == "{}"
    assert (stale / COMPLETE).is_file()


def test_a_failing_build_raises_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOVLLM_CACHE", str(tmp_path))

    def build(path):
        (path / "config.json").write_text("{}")
        raise RuntimeError("out of disk")

    try:
        build_cached("broken", build)
    except RuntimeError as e:
        assert "out of disk" in str(e)
    else:
        raise AssertionError("the build's error was swallowed")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".broken.lock"]
    assert checkpoint.cache_root() == tmp_path
