"""Rich ``_repr_html_`` tables, so ``engine.step()`` in a notebook reads like a report.

Plain HTML strings only (no Jupyter import): the engine stays importable anywhere. The classes
drawn here (core's ``StepRecord``, ``ScheduledBatch``, ``Sequence``, ``BlockManager``, and
``EngineSnapshot``) do not import this module: importing it attaches their ``_repr_html_``
(``register_html_reprs``), and the engine imports it. So core stays free of observe.
"""

from __future__ import annotations

from html import escape

from nanovllm.engine.core.batch import ScheduledBatch
from nanovllm.engine.core.block_manager import BlockManager
from nanovllm.engine.core.events import StepRecord
from nanovllm.engine.core.sequence import Sequence
from nanovllm.engine.observe.block_states import BLOCK_STATE_COLORS, BLOCK_STATE_NAMES
from nanovllm.engine.observe.snapshot import EngineSnapshot

_STYLE = "border-collapse:collapse;font-family:monospace;font-size:12px"
_CELL = "border:1px solid #ccc;padding:2px 6px;text-align:left"
_COLORS = dict(zip(BLOCK_STATE_NAMES, BLOCK_STATE_COLORS))  # free, used, cached, shared


def table(header: list[str], rows: list[list[object]], title: str = "") -> str:
    head = "".join(f"<th style='{_CELL}'>{escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td style='{_CELL}'>{escape(str(c))}</td>" for c in row) + "</tr>"
        for row in rows
    )
    caption = f"<b>{escape(title)}</b><br>" if title else ""
    return f"{caption}<table style='{_STYLE}'><tr>{head}</tr>{body}</table>"


def format_ids(ids) -> str:
    """Request or block ids as people read them: "3, 7, 9", or "-" for none."""
    return ", ".join(map(str, ids)) or "-"


def step_record_html(r) -> str:
    t = r.timing
    summary = table(
        [
            "step",
            "phase",
            "tokens (prefill/decode)",
            "admitted",
            "preempted",
            "finished",
            "KV used/free/cached",
            "prefix hits",
            "time ms (sched/prep/fwd/sample/post)",
        ],
        [
            [
                r.step,
                r.phase,
                f"{r.num_tokens} ({r.num_prefill_tokens}/{r.num_decode_tokens})",
                format_ids(r.admitted_ids),
                format_ids(r.preempted_ids),
                format_ids(r.finished_ids),
                f"{r.kv_blocks_used}/{r.kv_blocks_free}/{r.kv_blocks_cached} "
                f"of {r.kv_blocks_total}",
                r.prefix_hit_tokens,
                " / ".join(
                    f"{x * 1e3:.2f}"
                    for x in (t.schedule, t.prepare, t.forward, t.sample, t.postprocess)
                ),
            ]
        ],
        f"StepRecord {r.step}" + (f" — FAILED: {r.error}" if r.error else ""),
    )
    tokens = dict(r.new_tokens)
    seqs = table(
        ["seq", "phase", "tokens", "from position", "sampled token"],
        [
            [e.seq_id, e.phase, e.num_tokens, e.start, tokens.get(e.seq_id, "-")]
            for e in r.scheduled
        ],
    )
    return summary + seqs


def batch_html(b) -> str:
    rows = [
        [s.seq_id, "decode" if d else "prefill", n, st, smp]
        for s, n, st, d, smp in zip(b.seqs, b.num_new_tokens, b.starts, b.is_decode, b.reaches_end)
    ]
    return table(
        ["seq", "phase", "new tokens", "start", "reaches end (samples)"],
        rows,
        f"ScheduledBatch step {b.step} ({b.phase}); preempted {format_ids(b.preempted_ids)}; "
        f"admitted {format_ids(b.admitted_ids)}; prefix hits {b.prefix_hit_tokens}",
    )


def sequence_html(s) -> str:
    return table(
        [
            "id",
            "status",
            "prompt",
            "generated",
            "computed",
            "cached",
            "preemptions",
            "block table",
            "finish",
        ],
        [
            [
                s.seq_id,
                s.status.value,
                s.num_prompt_tokens,
                s.num_completion_tokens,
                s.num_computed_tokens,
                s.num_cached_tokens,
                s.num_preemptions,
                s.block_table,
                s.finish_reason.value if s.finish_reason else "-",
            ]
        ],
    )


def _block_strip(states: list[str], limit: int = 512) -> str:
    cells = "".join(
        f"<span title='block {i}: {st}' "
        "style='display:inline-block;width:8px;height:8px;margin:1px;"
        f"background:{_COLORS[st]}'></span>"
        for i, st in enumerate(states[:limit])
    )
    more = f" … {len(states) - limit} more" if len(states) > limit else ""
    legend = " ".join(f"<span style='color:{c}'>■</span> {n}" for n, c in _COLORS.items())
    return f"<div style='max-width:640px;line-height:8px'>{cells}{more}</div><div>{legend}</div>"


def block_manager_html(bm) -> str:
    states = [
        "shared"
        if b.ref_count > 1
        else "used"
        if b.ref_count == 1
        else "cached"
        if b.hash is not None
        else "free"
        for b in bm.blocks
    ]
    counts = {n: states.count(n) for n in _COLORS}
    head = table(
        list(counts),
        [list(counts.values())],
        f"BlockManager: {bm.num_blocks} blocks of {bm.block_size} tokens",
    )
    return head + _block_strip(states)


def snapshot_html(snap) -> str:
    states = [BLOCK_STATE_NAMES[s] for s in snap.block_state.tolist()]
    head = table(
        list(BLOCK_STATE_NAMES),
        [[snap.count(i) for i in range(4)]],
        f"EngineSnapshot after {snap.step} steps: {snap.num_blocks} blocks of {snap.block_size}",
    )
    seqs = table(
        ["id", "status", "prompt", "tokens", "computed", "cached", "preempted", "blocks"],
        [
            [
                s.seq_id,
                s.status,
                s.num_prompt_tokens,
                s.num_tokens,
                s.num_computed_tokens,
                s.num_cached_tokens,
                s.num_preemptions,
                list(s.block_table),
            ]
            for s in snap.sequences
        ],
    )
    problems = "".join(f"<div style='color:#dc2626'>⚠ {escape(p)}</div>" for p in snap.problems)
    return head + _block_strip(states) + problems + seqs


HTML_REPRS = {
    StepRecord: step_record_html,
    ScheduledBatch: batch_html,
    Sequence: sequence_html,
    BlockManager: block_manager_html,
    EngineSnapshot: snapshot_html,
}


def register_html_reprs() -> None:
    """Attach each table as its class's ``_repr_html_`` (what Jupyter displays)."""
    for cls, render in HTML_REPRS.items():
        cls._repr_html_ = render  # a function set on a class is a method: render(self)


register_html_reprs()
