"""Start a real vLLM engine in a subprocess with KV events on, and talk to it (tests, notebook 09).

    with VllmProcess(model_path) as v:                    # about 20-100 s on a 2-core CPU machine
        source = VllmCacheSource(**v.kv_events, model=model_path, metrics=v.metrics_url)
        outs = v.generate(["7 x 7 =", ...], max_tokens=16)  # greedy; token ids and text

The subprocess runs ``_vllm_worker.py`` as a script in ``python`` (default: this interpreter, or
``NANOVLLM_VLLM_PYTHON``: vLLM may live in a venv of its own, with its own torch). Its endpoints
default to ipc sockets in a private temporary folder (nothing listens on the network) and a
replay endpoint; its metrics are served on ``metrics_port`` (127.0.0.1) when given. vLLM's own
log goes to ``log_path``; a start that fails raises ``VllmStartError`` with its tail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from nanovllm.errors import NanoVLLMError

WORKER = Path(__file__).with_name("_vllm_worker.py")


class VllmStartError(NanoVLLMError, RuntimeError):
    """The vLLM subprocess exited or timed out before its engine was up (its log's tail inside)."""


def vllm_python() -> str:
    return os.environ.get("NANOVLLM_VLLM_PYTHON") or sys.executable


def has_vllm(python: str | None = None) -> bool:
    """Whether ``python`` can import vllm (checked without importing it here: that takes
    seconds, and vLLM may live in another interpreter)."""
    code = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
    try:
        return subprocess.run([python or vllm_python(), "-c", code], timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class VllmProcess:
    def __init__(
        self,
        model: str,
        *,
        block_size: int = 32,  # vLLM's CPU attention needs a multiple of 32
        max_model_len: int = 512,
        metrics_port: int | None = None,
        python: str | None = None,
        timeout: float = 600.0,
        **llm_kwargs: Any,
    ):
        self._dir = tempfile.TemporaryDirectory(prefix="nanovllm-vllm-")
        d = self._dir.name
        self.kv_events = {
            "endpoint": f"ipc://{d}/kv-events",
            "replay_endpoint": f"ipc://{d}/replay",
        }
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics" if metrics_port else None
        self.log_path = Path(d) / "vllm.log"
        settings = dict(
            model=model,
            dtype="float32",
            max_model_len=max_model_len,
            enforce_eager=True,
            block_size=block_size,
            enable_prefix_caching=True,
            disable_log_stats=False,  # get_metrics() needs the stat loggers
            kv_events_config={"enable_kv_cache_events": True, "publisher": "zmq", **self.kv_events},
            metrics_port=metrics_port,
            **llm_kwargs,
        )
        env = {
            **os.environ,
            "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        }
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            [python or vllm_python(), str(WORKER), json.dumps(settings)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
        )
        self._lock = threading.Lock()
        try:
            self.start_seconds = self._read(timeout)["seconds"]
        except Exception:
            self.close()
            raise

    def _read(self, timeout: float) -> dict:
        """The worker's next ``@@`` line (vLLM's own stdout lines are skipped)."""
        box: dict[str, Any] = {}

        def read() -> None:
            for line in self.proc.stdout:
                if line.startswith("@@"):
                    box["reply"] = json.loads(line[2:])
                    return

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(timeout)
        if "reply" not in box:
            state = "timed out" if self.proc.poll() is None else f"exited ({self.proc.returncode})"
            raise VllmStartError(f"the vLLM subprocess {state}; its log ends:\n{self.log_tail()}")
        return box["reply"]

    def request(self, op: str, timeout: float = 300.0, **args: Any) -> dict:
        with self._lock:
            self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
            self.proc.stdin.flush()
            out = self._read(timeout)
        if "error" in out:
            raise RuntimeError(f"vLLM {op}: {out['error']}")
        return out

    def generate(self, prompts: list, max_tokens: int = 16, ignore_eos: bool = False) -> list[dict]:
        """Greedy outputs: per prompt (a string, or token ids) ``prompt_token_ids``,
        ``token_ids`` and ``text``; ``ignore_eos``: exactly ``max_tokens`` each."""
        args = dict(prompts=prompts, max_tokens=max_tokens, ignore_eos=ignore_eos)
        return self.request("generate", **args)["outputs"]

    def metrics(self) -> list[dict]:
        """``vllm.LLM.get_metrics()``, each metric as a dict of its attributes."""
        return self.request("metrics")["metrics"]

    def reset_prefix_cache(self) -> bool:
        return self.request("reset_prefix_cache")["reset"]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def close(self, timeout: float = 60.0) -> None:
        """End the engine (closing stdin lets it shut down; killed if it does not)."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        self._dir.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
