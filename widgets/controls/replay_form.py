"""ReplayPanel: the what-if replay as a form (``wb.replay_panel``; display it in a cell).

::

    blocks [..] block size [v] tokens/step [..] [x] prefix caching [Replay]
    the table of both runs (HTML) and one figure, updated in place

A click runs ``replay(**changes)`` (the workbench's, replay.py) with the form's settings that
differ from the engine's; a failure (too few blocks for one sequence, ...) is shown, not raised.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any

import ipywidgets as W

from ..replay import Comparison, layout
from ..views.figures import Figure
from .fields import button, choice, number, row


class ReplayPanel:
    def __init__(self, config, replay: Callable[..., Comparison]):
        self.config, self._replay = config, replay
        self.blocks = number("blocks", config.num_kvcache_blocks, 1, 10**7, width=150)
        self.block_size = choice(
            "block size", [16, 32, 64, 128, 256], config.kvcache_block_size, width=160
        )
        self.budget = number(
            "tokens/step",
            config.max_num_batched_tokens,
            1,
            10**7,
            width=170,
            tooltip="max_num_batched_tokens: a prompt over what is left of it is prefilled in "
            "chunks",
        )
        self.prefix = W.Checkbox(
            value=config.enable_prefix_caching,
            description="prefix caching",
            indent=False,
            layout=W.Layout(width="auto"),
        )
        self.button = button("Replay", "repeat", style="primary")
        self.table = W.HTML("<i>record a run (add requests, run them), then Replay</i>")
        self.figure = Figure(layout=layout())
        self.last: Comparison | None = None
        self.button.on_click(lambda _: self._on_click())
        form = row(self.blocks, self.block_size, self.budget, self.prefix, self.button)
        self.widget = W.VBox([form, self.table, self.figure])

    def changes(self) -> dict[str, Any]:
        """The form's settings that differ from the recorded engine's."""
        form = dict(
            num_kvcache_blocks=self.blocks.value,
            kvcache_block_size=self.block_size.value,
            max_num_batched_tokens=self.budget.value,
            enable_prefix_caching=self.prefix.value,
        )
        return {k: v for k, v in form.items() if getattr(self.config, k) != v}

    def run(self) -> Comparison:
        self.last = self._replay(**self.changes())
        self.draw(self.last)
        return self.last

    def _on_click(self) -> None:
        self.button.disabled, self.button.description = True, "Replaying..."
        try:
            self.run()
        except Exception as e:  # shown, not raised: a click has no caller to raise to
            self.table.value = (
                f"<span style='color:#b91c1c'>{escape(f'{type(e).__name__}: {e}')}</span>"
            )
        finally:
            self.button.disabled, self.button.description = False, "Replay"

    def draw(self, comparison: Comparison) -> None:
        self.table.value = comparison.html()
        traces = comparison.traces()
        with self.figure.batch_update():
            self.figure.layout = layout(comparison.most_preemptions)
            if len(self.figure.data) != len(traces):
                self.figure.data = ()
                for t in traces:
                    self.figure.add_scatter(mode="lines", **t)
            else:
                for trace, t in zip(self.figure.data, traces):
                    trace.x, trace.y = t["x"], t["y"]

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
