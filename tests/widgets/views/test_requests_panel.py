"""The requests panel (widgets/views/requests.py) and its data (observe/request_rows.py): rows
equal the engine's sequences (state, token counts, finish reason); a row's Abort aborts that
request; latencies stand still while paused; the header says where the other requests went."""

from __future__ import annotations

import re
import time
from html import unescape

import pytest
from widget_helpers import QUESTIONS, SYSTEM

from nanovllm import LLM, SamplingParams
from nanovllm.engine.observe.request_rows import RequestRow, request_rows
from widgets import TEACHING_DEFAULTS
from widgets.views import ViewSetup
from widgets.views.requests import duration


def test_request_rows_equal_the_engines_sequences(wb):
    ids = [wb.add_request(SYSTEM + q, max_tokens=6 + k, ignore_eos=True) for k, q in
           enumerate(QUESTIONS)]  # fmt: skip
    wb.step(3)
    wb.abort(ids[1])
    wb.step(12)
    snap = wb.llm.snapshot()
    rows = {r.seq_id: r for r in request_rows(snap)}
    for i in ids:
        seq = wb.llm.request_sequences(i)[0]
        r = rows[i]
        assert r.status == seq.status.value
        assert r.num_prompt_tokens == seq.num_prompt_tokens
        assert r.num_completion_tokens == seq.num_completion_tokens
        assert r.num_cached_tokens == seq.num_cached_tokens
        assert r.finish_reason == (seq.finish_reason.value if seq.finish_reason else None)
        if seq.num_completion_tokens > 1:
            assert r.ttft == pytest.approx(seq.first_token_time - seq.arrival_time)
            assert r.inter_token > 0
    assert rows[ids[1]].finish_reason == "abort"
    panel = wb.requests_panel
    assert [r.seq_id for r in panel.shown] == sorted(ids, reverse=True)
    shown = [s for s in panel.slots if s.seq_id is not None]
    assert [s.seq_id for s in shown] == sorted(ids, reverse=True)
    assert all(s.abort_button.disabled for s in shown)  # all finished
    drawn = panel.table.value.split("<b>seq ")[1:]  # the rows as drawn, top to bottom
    for s, html in zip(shown, drawn, strict=True):
        seq = wb.llm.request_sequences(s.seq_id)[0]
        # the seq id, then its state and why it finished
        first_line = html.split("</div>")[0]
        assert html.startswith(f"{s.seq_id}</b>")
        assert first_line.endswith(f">{seq.status.value} · {seq.finish_reason.value}</span>")
        # a long line is clipped at the panel's edge: its whole text is the line's tooltip
        numbers, words = re.findall(r"title='([^']*)'", html)[:2]
        assert f"title='{words}'>{words}</div>" in html and " → " in words
        assert "computed" not in numbers and f"prompt {seq.num_prompt_tokens}" in numbers
        # the latencies first: a narrow panel cuts the counts, not them
        assert re.match(r"TTFT [\d.]+ m?s · [\d.]+ m?s/token · prompt", numbers), numbers


def test_abort_from_a_row(wb):
    ids = [wb.add_request(SYSTEM + q, max_tokens=40, ignore_eos=True) for q in QUESTIONS]
    wb.step(2)
    panel = wb.requests_panel
    slot = next(s for s in panel.slots if s.seq_id == ids[1])
    assert not slot.abort_button.disabled
    slot.abort_button.click()  # as the browser does
    seq = wb.llm.request_sequences(ids[1])[0]
    assert seq.is_finished and seq.finish_reason.value == "abort"
    row = panel.table.value.split(f"<b>seq {ids[1]}</b>")[1].split("<b>seq ")[0]
    assert slot.abort_button.disabled and "FINISHED · abort</span>" in row  # at once
    assert wb.history.latest.record.events[-1].seq_id == ids[1]  # the event is in the History
    others = [wb.llm.request_sequences(i)[0] for i in (ids[0], ids[2])]
    assert not any(s.is_finished for s in others)


def test_rows_are_capped_and_an_unchanged_panel_sends_nothing(wb):
    ids = [wb.add_request([5 + k, 6, 7, 8], max_tokens=3, ignore_eos=True) for k in range(14)]
    wb.step(1)
    panel = wb.requests_panel
    assert len(panel.rows) == 14 and [r.seq_id for r in panel.shown] == sorted(ids)[::-1][:10]
    assert "newest 10 shown" in panel.header.value
    wb.step(10)  # all finish
    sent = []
    for w in (panel.header, panel.table, *(s.abort_button for s in panel.slots)):
        w.observe(lambda ch: sent.append(ch), names=["value", "disabled"])
    wb.redraw()  # nothing changed: nothing is set again
    assert sent == []


def test_texts_show_a_pending_token_as_an_ellipsis(tiny_model):
    """Between two overlapped steps a sequence's last token is a placeholder: the views' text
    shows it as "…", decodes the rest, and caches nothing for that span."""
    from widgets.model.texts import SequenceText

    config = dict(TEACHING_DEFAULTS, overlap_scheduling=True)
    with LLM(tiny_model, **config) as engine:
        rid = engine.add_request([5, 6, 7, 8], SamplingParams(max_tokens=4, ignore_eos=True))
        engine.step_overlapped()  # launched (and advanced): its token is pending
        seq = engine.request_sequences(rid)[0]
        assert seq.token_ids[-1] < 0
        texts = SequenceText(lambda: engine)
        shown = texts.text(rid, 0, seq.num_tokens)
        assert shown == engine.tokenizer.decode([5, 6, 7, 8]) + "…"
        assert not texts._cache
        engine.drain()
        assert texts.text(rid, 0, seq.num_tokens) == engine.tokenizer.decode(seq.token_ids)


def test_ms_per_token_stands_still_while_paused(wb):
    """It grew while paused (1,300 -> 26,952): measured up to the snapshot's time, which a redraw
    takes later. Now up to the last step shown."""
    rid = wb.add_request(SYSTEM, max_tokens=20, ignore_eos=True)
    wb.step(4)
    row = next(r for r in wb.requests_panel.rows if r.seq_id == rid)
    time.sleep(0.3)  # paused
    wb.stage.frames.every_step = False  # the redraw takes a fresh snapshot, as when not cheap
    wb.history.fill(wb.history.last_step, snapshot=wb.llm.snapshot())
    wb.redraw()
    again = next(r for r in wb.requests_panel.rows if r.seq_id == rid)
    assert again.inter_token == pytest.approx(row.inter_token)
    assert wb.llm.snapshot().time - wb.history.latest.record.time > 0.25


def test_the_header_counts_what_the_engine_holds_and_says_where_the_rest_went(wb):
    wb.llm.generate([SYSTEM], SamplingParams(max_tokens=2), use_tqdm=False)  # collected
    wb.add_request(SYSTEM, max_tokens=2)
    wb.step()
    header = wb.requests_panel.header.value
    assert header.startswith("<b>1 request</b>: 1 running")  # not "1 requests"
    assert "+ 1 finished and collected (2 added in all)" in header  # the metrics say 2


# What a row must show whole in the panel at its narrowest: at a 940 px window its lines are 246 px
# wide beside the Abort buttons, and a first line of 37 characters ("seq 133 · TTFT 106 ms · 50.3
# ms/token") filled them exactly (the browser test measures it); 30 leave a fifth for wider glyphs
# ("m", bold digits). The rest of a line may end in "…" (its whole text is the line's tooltip).
UNCUT_CHARS = 30
WORST = [  # the widest latencies (7 characters each) and seq ids up to 5 digits
    RequestRow(seq, status, 8, 12, 19, 0, 3, ttft, inter, reason)
    for seq in (7, 1234, 99999)
    for status, reason in (("PREEMPTED", None), ("FINISHED", "length"), ("RUNNING", None))
    for ttft, inter in ((0.0999, 0.0999), (4321.0, 4321.0), (0.09996, 1.2345), (None, None))
]


def _lines(html: str) -> list[str]:
    """A row's lines as the page shows them (tags dropped, entities decoded)."""
    inner = html.split("'>", 1)[1]  # inside the row's div
    divs = re.findall(r"<div[^>]*>(.*?)</div>", inner)
    return [unescape(re.sub(r"<[^>]+>", "", d)) for d in divs]


@pytest.mark.parametrize("row", WORST, ids=lambda r: f"seq{r.seq_id}-{r.status}-{r.ttft}")
def test_a_rows_seq_state_and_latencies_fit_the_narrowest_panel(row):
    """A 4-digit seq id and two 7-character latencies clipped "ms/token" at a 940 px window: the
    seq id, its state and both latencies must stand within the first UNCUT_CHARS characters of
    their lines; the counts and the text may be cut (their whole line is the tooltip)."""
    from widgets.views.requests import RequestsPanel, duration

    panel = RequestsPanel(ViewSetup(num_blocks=8, block_size=16))
    lines = _lines(panel._html(row, lambda seq_id, start, end: "some text"))
    assert len(lines) == 3, lines
    whole = [f"seq {row.seq_id}", row.status, f"TTFT {duration(row.ttft)}"]
    whole.append(f"{duration(row.inter_token)}/token")
    for part in whole:
        line = next(line for line in lines if part in line)
        assert line.index(part) + len(part) <= UNCUT_CHARS, (part, line)


@pytest.mark.parametrize(
    "seconds, text",
    [
        (None, "-"),
        (0.00987, "9.9 ms"),
        (0.09994, "99.9 ms"),
        (0.09996, "100 ms"),  # rounded first: not "100.0 ms", wider than its neighbours' rows
        (0.18249, "182 ms"),
        (0.9996, "1.00 s"),
        (9.996, "10.0 s"),
        (99.96, "100 s"),
        (4321.0, "4,321 s"),
    ],
)
def test_a_latency_takes_seven_characters_at_most(seconds, text):
    """A row's first line (seq, TTFT, ms/token) must fit a narrow panel: the browser test found
    the one row whose TTFT read "100.0 ms" cut off."""
    assert duration(seconds) == text and len(text) <= 7
