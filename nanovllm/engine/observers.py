"""The engine's side of observation: who is subscribed, and what happens when one of them raises.

An observer is ``subscribe``'s callback, ``callback(record)``, called with every ``StepRecord``
(the observers themselves, metrics, the recorder, the workbench, live in observe/ and widgets/).
It is the caller's code, so its exception is never swallowed and never retried, and it never
breaks a step::

    notify(record)      every observer sees the record; the first exception is kept, with its step
    @observed method    once the engine method (step, step_overlapped, drain, flush_events) is
                        done, its step complete, the kept exception is raised as itself ...
    deferred(into)      ... or, inside this context, appended to ``into`` as an ObserverFailure:
                        how ``LLM.generate`` and the streams finish their requests before they
                        raise ``ObserverError`` (nanovllm/errors.py)

An exception that is not an ``Exception`` (KeyboardInterrupt, SystemExit) is not kept: it leaves
the observer, and the step, at once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

from nanovllm.engine.core.events import StepRecord

Observer = Callable[[StepRecord], None]


class ObserverFailure(NamedTuple):
    """An observer raised ``error`` on the record of step ``step``."""

    step: int
    error: Exception


class Observers:
    """The subscribed observers of one engine, in subscription order."""

    def __init__(self):
        self._callbacks: list[Observer] = []
        self._failure: ObserverFailure | None = None  # kept by notify, raised by raise_pending
        self._deferred: list[ObserverFailure] | None = None  # set inside deferred()

    def subscribe(self, callback: Observer) -> Callable[[], None]:
        """Call ``callback(record)`` after every step; returns a function that unsubscribes."""
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    def notify(self, record: StepRecord) -> None:
        """Hand ``record`` to every observer; keep the first exception until ``raise_pending``."""
        for callback in list(self._callbacks):
            try:
                callback(record)
            except Exception as e:  # every observer sees the record; the first error is raised
                if self._failure is None:
                    self._failure = ObserverFailure(record.step, e)

    def raise_pending(self) -> None:
        """Raise the kept exception (or, inside ``deferred``, hand it over), and forget it."""
        failure, self._failure = self._failure, None
        if failure is None:
            return
        if self._deferred is None:
            raise failure.error
        self._deferred.append(failure)

    @contextmanager
    def deferred(self, into: list[ObserverFailure] | None) -> Iterator[None]:
        """Inside, observers' exceptions are appended to ``into`` instead of raised (``into``
        None: raised, as outside)."""
        outer, self._deferred = self._deferred, into if into is not None else self._deferred
        try:
            yield
        finally:
            self._deferred = outer


def observed(method):
    """An engine method that hands records to the observers: an observer's exception is raised
    (see ``Observers.raise_pending``) when the method returns, with its step complete."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        finally:
            self.observers.raise_pending()

    return wrapper
