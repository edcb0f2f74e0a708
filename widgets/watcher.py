"""Watch: a prefix cache through its KV-cache events, a vLLM's or ours, in the same views (made by
``widgets.watch_vllm`` / ``widgets.watch``: attach.py).

::

    vLLM --ZMQ--> VllmCacheSource (nanovllm.bridge)       LLM --steps--> EngineCacheSource
                            \\                              /
     Watch: a task on the kernel's loop: every ``poll_interval`` s source.poll() (the
     subscriber's queue; metrics from a URL are read in a thread, every ``metrics_interval`` s)
         -> RedrawGate (pacing.py): at most a frame per ``redraw_interval`` s, stretched when
            drawing costs more than ``MAX_SHARE`` of the kernel
         -> DrawContext(cache=source) -> the views of views.CACHE_REGISTRY:
            whose controls (a line) | prefix tree | occupancy, cache panel (state, rates,
            metrics) | eviction stream
     status line (controls/source_status.py): connecting / connected / disconnected, and gap,
     dropped, malformed, restarted

The kernel is never blocked: the task does a poll and at most one frame per turn. While a cell
holds the kernel (a blocking call) nothing moves, and the subscriber's thread keeps receiving
into its bounded queue; the views catch up at the next turn. The gate runs on its rate alone:
the page's echo (pacing.py's ``PageEcho``) is not shown, because a cell that awaits (``await
asyncio.to_thread(...)``) holds the page's answers in the kernel's queue while the views should
move. In a script (no running loop) nothing polls by itself: ``refresh()`` or ``settle()`` do.

Step / Run / Pause drive our engine only (``widgets.workbench``): a vLLM is driven by its own
clients, and the watch says so (the views' first line, views/controls_note.py). ``close()``
ends the task (and the source, if the watch made it).
"""

from __future__ import annotations

import asyncio
import time
import traceback
from html import escape
from typing import Any

import ipywidgets as W

from nanovllm.bridge.source import CacheSource
from nanovllm.errors import ConfigError

from .controls.source_status import describe
from .dashboard import _rows
from .pacing import RedrawGate
from .views import CACHE_REGISTRY, DrawContext, View, ViewSetup, build_views, draw_views
from .views.figures import plotly_module
from .views.frozen import FrozenFigure

MAX_SHARE = 0.05  # of the kernel's CPU that drawing may take (the gate stretches its interval)
IDLE_FRAME = 1.0  # s: a frame at least this often (the panel's "s ago" and rates move)


class Watch:
    def __init__(
        self,
        source: CacheSource,
        *,
        own_source: bool = False,
        poll_interval: float = 0.2,
        redraw_interval: float = 0.5,
        metrics_interval: float = 2.0,
    ):
        for name, v in (("poll_interval", poll_interval), ("metrics_interval", metrics_interval)):
            if not v > 0:
                raise ConfigError(f"{name}={v!r}: pass seconds > 0")
        self.source, self.own_source = source, own_source
        self.poll_interval, self.metrics_interval = poll_interval, metrics_interval
        self.gate = RedrawGate(redraw_interval, max_share=MAX_SHARE, max_interval=5.0)
        self.gate.draw = self._draw
        setup = ViewSetup(num_blocks=0, block_size=source.model.block_size or 0)
        self.views: list[View] = build_views(setup, CACHE_REGISTRY)[0]
        self.status = W.HTML(value="")
        self.status.add_class("nanovllm-watch-status")
        self.error: str | None = None  # the last failure of a poll or a frame
        self.closed = False
        self.frames = 0
        self._drawn_version: int | None = None
        self._last_frame = self._last_metrics = float("-inf")
        self._reading = None  # a metrics read in flight (a future)
        self.widget = W.VBox(
            [
                self.status,
                *_rows(self.views),
                W.Box([plotly_module()], layout=W.Layout(display="none")),  # plotly, for the page
            ]
        )
        self.widget.add_class("nanovllm-watch")
        self._say_status()
        self.gate.force()
        self._task = _start(self._run())

    # ---- the views -------------------------------------------------------------------------------
    def view(self, name: str) -> View:
        for v in self.views:
            if v.name == name:
                return v
        raise KeyError(f"{name!r}: the views are {[v.name for v in self.views]}")

    def __getattr__(self, name: str):
        """The views by their attribute names (``w.prefix_tree_view``, ``w.eviction_view``)."""
        for v in self.__dict__.get("views", ()):
            if v.attribute == name:
                return v
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def state(self):
        return self.source.state

    @property
    def status_words(self) -> tuple[str, ...]:
        """The state in words: connecting / connected / disconnected / closed, then any of gap,
        dropped, malformed, restarted (controls/source_status.py)."""
        return describe(self.source).words

    @property
    def status_text(self) -> str:
        """The status line as plain text."""
        return describe(self.source).text

    def freeze(self, name: str = "prefix_tree") -> FrozenFigure:
        """A static copy of a view's figure as drawn now (it stays while the watch moves on)."""
        self.refresh()
        return self.view(name).freeze(DrawContext(cache=self.source))

    # ---- polling ---------------------------------------------------------------------------------
    async def _run(self) -> None:
        while not self.closed:
            self.tick()
            await asyncio.sleep(self.poll_interval)

    def tick(self, now: float | None = None) -> None:
        """One poll: apply what arrived, start a metrics read when due, and ask for a frame when
        something changed (or a second passed). Never raises: a failure is shown."""
        now = time.monotonic() if now is None else now
        try:
            self.source.poll()
            if now - self._last_metrics >= self.metrics_interval:
                self._last_metrics = now
                self._read_metrics()
            self._say_status()
            if self.source.version != self._drawn_version or now - self._last_frame > IDLE_FRAME:
                self.gate.request()
        except Exception as e:  # a bug or a source gone wrong: shown, and the next tick tries
            self._fail("the watch could not poll its source", e)

    def _read_metrics(self) -> None:
        """Read metrics: in a thread when it may wait on the network and a loop runs."""
        if self.source.metrics_io and (loop := _loop()) is not None:
            if self._reading is None or self._reading.done():
                self._reading = loop.run_in_executor(None, self.source.metrics)
                self._reading.add_done_callback(self._got_metrics)
        else:
            self._keep(self.source.metrics())

    def _got_metrics(self, future) -> None:
        if self.closed:
            return
        if not future.cancelled() and future.exception() is None:
            self._keep(future.result())
            self.gate.request()

    def _keep(self, metrics: dict[str, Any] | None) -> None:
        if not self.closed:
            self.source.keep_metrics(metrics)

    def refresh(self) -> None:
        """Poll, read the metrics and draw every view now (a script, a test, a cell's end)."""
        self.source.poll()
        self._last_metrics = time.monotonic()
        self._keep(self.source.metrics())
        self._say_status()
        self.gate.force()

    def settle(self, timeout: float = 30.0, quiet: float = 1.0) -> tuple[str, ...]:
        """Poll (blocking the kernel) until no batch arrived for ``quiet`` s, then refresh; the
        status words. For a cell that asserts on what the views show."""
        end = last = time.monotonic()
        end += timeout
        while time.monotonic() < end:
            if self.source.poll():
                last = time.monotonic()
            elif time.monotonic() - last > quiet:
                break
            time.sleep(0.05)
        self.refresh()
        return self.status_words

    # ---- drawing ---------------------------------------------------------------------------------
    def _draw(self) -> None:
        ctx = DrawContext(cache=self.source)
        self._drawn_version = self.source.version
        self._last_frame = time.monotonic()
        self.frames += 1
        failed = draw_views(self.views, ctx)
        self.error = "; ".join(failed) or None
        self._say_status()

    def _say_status(self) -> None:
        html = describe(self.source).html
        if self.closed and self.source.state is None:
            html = "<b style='color:#6b7280'>closed</b>: the watch has stopped"
        if self.error:
            html += f" · <b style='color:#b91c1c'>{escape(self.error)}</b>"
        if self.status.value != html:
            self.status.value = html

    def _fail(self, what: str, e: Exception) -> None:
        self.error = f"{what}: {type(e).__name__}: {e}"
        details = escape("".join(traceback.format_exception(e)))
        self.status.value = (
            describe(self.source).html + f" · <details style='display:inline'><summary>"
            f"<b style='color:#b91c1c'>{escape(self.error)}</b></summary><pre>{details}</pre>"
            "</details>"
        )

    # ---- the end ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop polling; close the source if the watch made it (its sockets and thread)."""
        if self.closed:
            return
        if self._task is not None:
            self._task.cancel()
        if self.own_source:
            self.source.close()
        self._draw()  # the views as last seen, the panel's state included
        self.closed = True
        self.gate.close()
        self._say_status()

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        state = "closed" if self.closed else ", ".join(self.status_words)
        return f"Watch({self.source.name}, {state}, {self.frames} frames)"


def _loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _start(coro):
    """The polling task on the running loop (the kernel's); none in a script."""
    loop = _loop()
    if loop is None:
        coro.close()
        return None
    return loop.create_task(coro)
