"""Breakpoints: "run until" an event. Each is a predicate on one step's ``StepRecord``.

::

    event                 hit when the step's record ...              with a request id: ...
    "preemption"          has preempted_ids                           that request was preempted
    "finish"              has finished_ids                            that request finished
    "admission"           has admitted_ids (new or resumed)           that request was admitted
    "prefix hit"          has prefix_hit_tokens > 0                   that request was admitted with
                                                                      its first tokens cached
    "integrity failure"   -- (the engine's check_integrity() after    (no request id)
                              the step is not empty)

A request id names the request's first sample (its sequence id). A prefix hit is seen per
sequence as an admitted sequence whose first scheduled chunk starts past 0: the tokens before
that start came from the cache. ``Breakpoint.check(record, llm)`` returns a ``Hit`` (the step and
what happened there, in words) or None; the integrity check is the only one that asks the engine
(``llm.check_integrity()``, O(blocks) per step, so only while that breakpoint is set). The
Driver's Run loop and ``Workbench.run_until`` stop at the first step that hits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from nanovllm.errors import ConfigError

if TYPE_CHECKING:
    from nanovllm.engine.observe.recorder import StepRecord

EVENTS = ("preemption", "finish", "admission", "prefix hit", "integrity failure")


@dataclass(frozen=True)
class Hit:
    step: int
    event: str
    detail: str

    def __str__(self) -> str:
        return f"stopped at step {self.step}: {self.event} ({self.detail})"


@dataclass(frozen=True)
class Breakpoint:
    event: str
    request_id: int | None = None

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ConfigError(f"event={self.event!r}: choose one of {list(EVENTS)}")
        if self.event == "integrity failure" and self.request_id is not None:
            raise ConfigError(
                f"request_id={self.request_id}: an integrity failure belongs to no request; "
                "leave request_id None"
            )

    def check(self, record: StepRecord, llm) -> Hit | None:
        """The hit in this step's record (``llm``: only for the integrity check), or None."""
        if record.error is not None or not record.seq_ids and self.event != "integrity failure":
            return None  # an abandoned or idle step changes nothing to stop at
        detail = _DETAIL[self.event](self, record, llm)
        return Hit(record.step, self.event, detail) if detail else None

    def __str__(self) -> str:
        return self.event + ("" if self.request_id is None else f" of request {self.request_id}")


def _ids(bp: Breakpoint, ids: tuple[int, ...]) -> list[int]:
    return [i for i in ids if bp.request_id is None or i == bp.request_id]


def _seqs(ids: list[int], what: str) -> str:
    return f"seq {', '.join(map(str, ids))} {what}" if ids else ""


def _cached(bp: Breakpoint, record: StepRecord) -> str:
    if not record.prefix_hit_tokens:
        return ""
    admitted = set(_ids(bp, record.admitted_ids))
    hits = [(e.seq_id, e.start) for e in record.scheduled if e.seq_id in admitted and e.start]
    if bp.request_id is not None and not hits:
        return ""
    named = ", ".join(f"seq {i}: {n}" for i, n in hits)
    return f"{record.prefix_hit_tokens} tokens from the cache" + (f"; {named}" if named else "")


def _integrity(bp: Breakpoint, record: StepRecord, llm) -> str:
    problems = llm.check_integrity()
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return problems[0] + more if problems else ""


_DETAIL = {
    "preemption": lambda bp, r, _: _seqs(_ids(bp, r.preempted_ids), "preempted"),
    "finish": lambda bp, r, _: _seqs(_ids(bp, r.finished_ids), "finished"),
    "admission": lambda bp, r, _: _seqs(_ids(bp, r.admitted_ids), "admitted"),
    "prefix hit": lambda bp, r, _: _cached(bp, r),
    "integrity failure": _integrity,
}


def parse_request_id(text: str) -> int | None:
    """The request-id box: blank means any request."""
    text = text.strip()
    if not text:
        return None
    if not text.isdigit():
        raise ConfigError(f"request id {text!r}: type a request id (a number) or leave it blank")
    return int(text)
