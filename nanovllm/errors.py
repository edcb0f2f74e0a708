"""Typed errors. Users get these; internal invariants use ``assert``.

Every message names the bad value and says how to fix it. Errors about the user's configuration or
request also subclass ``ValueError`` so generic ``except ValueError`` code keeps working.
"""

from __future__ import annotations


class NanoVLLMError(Exception):
    """Base class of every error nanovllm raises on purpose."""


class ConfigError(NanoVLLMError, ValueError):
    """A configuration value is invalid or inconsistent with the model."""


class KVCacheTooSmallError(ConfigError):
    """The KV cache cannot hold even one sequence of ``max_model_len`` tokens."""


class ModelLoadError(NanoVLLMError):
    """The model directory is missing, incomplete or unreadable."""


class ModelNotFoundError(ModelLoadError, FileNotFoundError):
    """The model directory, or its config.json, does not exist. Also a ``FileNotFoundError``
    (an ``OSError``), which is what Hugging Face's ``from_pretrained`` raises there."""


class UnsupportedModelError(ModelLoadError, ValueError):
    """The checkpoint's architecture has no implementation here."""


class RequestError(NanoVLLMError, ValueError):
    """A request (prompt or sampling parameters) is invalid. The engine stays usable."""


class UnknownRequestError(NanoVLLMError, KeyError):
    """A request id that the engine does not know (never added, or finished and collected)."""


class EngineClosedError(NanoVLLMError, RuntimeError):
    """The engine was closed; create a new ``LLM``."""


class StepError(NanoVLLMError, RuntimeError):
    """An exception escaped one engine step from the engine's own code (an exception raised by
    the caller's signal handler or step observer is never wrapped in it; see ``ObserverError``).

    The engine abandoned the step before raising: no sequence advanced (the next step computes the
    same tokens again), and the scheduler's decisions stand (admissions, preemptions, the blocks it
    allocated), so the cache is consistent. ``step``, ``request_ids`` and ``phase`` say where it
    happened; ``__cause__`` holds the original exception.
    """

    def __init__(self, message: str, *, step: int, request_ids: list[int], phase: str):
        super().__init__(message)
        self.step = step
        self.request_ids = list(request_ids)
        self.phase = phase


class ObserverError(NanoVLLMError, RuntimeError):
    """A step observer (a ``subscribe`` callback: the caller's code) raised while ``generate`` or
    a stream ran. The call finished its requests first, so nothing is lost: ``outputs`` holds the
    call's ``RequestOutput``s (``generate``'s, in submission order; a stream's one), ``steps`` the
    steps whose observers raised, ``__cause__`` the first exception. Every observer saw every
    record; the engine stays usable."""

    def __init__(self, message: str, *, outputs: list, steps: list[int]):
        super().__init__(message)
        self.outputs = list(outputs)
        self.steps = list(steps)

    @classmethod
    def after(cls, failures: list, outputs: list) -> ObserverError:
        """The error a call raises once its requests finished; ``failures``: its ``(step,
        exception)`` pairs, oldest first (raise it ``from`` the first exception)."""
        steps = [step for step, _ in failures]
        first = failures[0][1]
        more = f" (and at {len(steps) - 1} later steps)" if len(steps) > 1 else ""
        return cls(
            f"a step observer raised {type(first).__name__}: {first} at step {steps[0]}{more}; "
            "the requests ran to their end anyway: their outputs are in this error's .outputs",
            outputs=outputs,
            steps=steps,
        )


class WorkerError(NanoVLLMError, RuntimeError):
    """A tensor-parallel worker process died, raised, or hung (no heartbeat for
    ``heartbeat_timeout_s``); ``rank`` names it, ``worker_traceback`` holds its traceback."""

    def __init__(self, message: str, *, rank: int | None = None, worker_traceback: str = ""):
        super().__init__(message if not worker_traceback else f"{message}\n\n{worker_traceback}")
        self.rank = rank
        self.worker_traceback = worker_traceback
