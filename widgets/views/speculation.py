"""Speculative decoding: each request's draft in the shown step, and the acceptance rate over the
window.

::

    step 41   seq 3  draft  Tuesday Wednesday Thursday    accepted 2 of 3
                            ^^^^^^^ ^^^^^^^^^ ~~~~~~~~     green: accepted; red, struck: the first
                     appended  Tuesday Wednesday Friday    rejection (grey after it: never checked)

    acceptance | ▆ ▇ ▃ █ ▅      accepted / drafted tokens per step (the window's steps that drafted)

Drawn from StepRecords alone (``drafts``, ``num_accepted``, ``new_token_ids``); token ids become
text through the context's text source where it knows the tokens (what a request appended), and
stay ids otherwise (a rejected draft token was never part of a sequence). The slots the rejected
tokens wrote are marked on the block grid (blocks.py) for the same step. An engine without a
``speculative_config`` never drafts: the view is then left out (``left_out``), not drawn empty.
"""

from __future__ import annotations

from html import escape

import ipywidgets as W

from .base import DrawContext, View, ViewSetup
from .figures import WIDE_FIGURE_WIDTH, bars, figure, step_labels
from .timing import steps_shown

ACCEPTED, REJECTED, UNCHECKED = "#15803d", "#b91c1c", "#9ca3af"
MAX_ROWS = 12  # drafted requests listed for one step


class SpeculationView(View):
    name, attribute = "speculation", "speculation_view"

    @classmethod
    def left_out(cls, setup: ViewSetup) -> str | None:
        if setup.speculative:
            return None
        return (
            "this engine does not draft tokens (speculative_config is None); build it with "
            'speculative_config={"method": "ngram", "num_speculative_tokens": 3} to see its drafts'
            " (notebook 10)"
        )

    def build(self):
        self.text = W.HTML("")
        fig = figure(
            [bars("acceptance", ACCEPTED, "step %{x}: %{y:.0%} of %{customdata} accepted")],
            title="Speculative decoding: draft tokens accepted per step",
            width=WIDE_FIGURE_WIDTH,
            height=200,
            margin=dict(l=50, r=10, t=40, b=40),
            xaxis=dict(title="step", type="category"),
            yaxis=dict(title="accepted", range=[0, 1], tickformat=".0%", gridcolor="#eee"),
        )
        return W.VBox([self.text, self.boxed(fig, empty=True)])

    def draw(self, ctx: DrawContext) -> None:
        record = ctx.frame.record if ctx.frame is not None else None
        self.text.value = step_html(record, ctx.text) if record is not None else ""
        drafted = [r for r in steps_shown(ctx.frames) if r.num_draft_tokens]
        with self.figure.batch_update():
            self.fit(not drafted)
            trace = self.figure.data[0]
            trace.x = step_labels(r.step for r in drafted)
            trace.y = [r.num_accepted_tokens / r.num_draft_tokens for r in drafted]
            trace.customdata = [f"{r.num_draft_tokens} drafted" for r in drafted]
            total = sum(r.num_draft_tokens for r in drafted)
            rate = sum(r.num_accepted_tokens for r in drafted) / total if total else 0.0
            self.figure.layout.title.text = (
                f"Speculative decoding: {rate:.0%} of {total} draft tokens accepted over the window"
                if drafted
                else "Speculative decoding: no draft in the window yet (prompt lookup proposes "
                "one when a decoding request's last tokens occurred earlier in it)"
            )


def step_html(record, text) -> str:
    """The shown step's drafts, one line per drafted request."""
    rows = [
        draft_row(
            seq_id, draft, accepted, appended, text(seq_id, start + 1, start + 1 + len(appended))
        )
        for seq_id, start, draft, accepted, appended in zip(
            record.seq_ids, record.starts, record.drafts, record.num_accepted, record.new_token_ids
        )
        if draft
    ]
    if not rows:
        return f"<div style='font-size:12px;color:#6b7280'>step {record.step}: no drafts</div>"
    more = f"<div>... and {len(rows) - MAX_ROWS} more</div>" if len(rows) > MAX_ROWS else ""
    return (
        f"<div style='font-size:12px;font-family:monospace'><b>step {record.step}</b>"
        + "".join(rows[:MAX_ROWS])
        + more
        + "</div>"
    )


def draft_row(seq_id, draft, accepted, appended, said: str | None) -> str:
    """One request's draft (ids coloured by fate) and what it appended (ids, and text when
    known: the accepted draft tokens, then the target's own)."""
    spans = []
    for i, token in enumerate(draft):
        if i < accepted:
            spans.append(f"<span style='color:{ACCEPTED}'>{token}</span>")
        elif i == accepted:
            spans.append(
                f"<span style='color:{REJECTED};text-decoration:line-through'>{token}</span>"
            )
        else:
            spans.append(f"<span style='color:{UNCHECKED}'>{token}</span>")
    words = f" <i>{escape(repr(said))}</i>" if said else ""
    return (
        f"<div>seq {seq_id}: draft [{' '.join(spans)}] accepted {accepted} of {len(draft)}"
        f" &rarr; appended {list(appended)}{words}</div>"
    )
