"""What the workbench's tests share: prompts, a workload that fills the cache, a system prompt with
its hash chain computed by hand, reading the figures back, a simulated page, and StepRecords
written by hand."""

from __future__ import annotations

import asyncio

import numpy as np

from nanovllm import SamplingParams
from nanovllm.engine.core.block_manager import chain_hash
from nanovllm.engine.core.events import SequenceEvent, StepRecord, StepTiming
from nanovllm.engine.core.sequence import SequenceStatus
from widgets import Workbench
from widgets.model.states import DECODE, FINISHED, IDLE, PREEMPTED, PREFILL, WAITING

PROMPT = "The KV cache is the largest consumer of memory in an inference engine."
LONG = " ".join(["A paged engine splits the cache into fixed-size blocks."] * 6)  # ~70 tokens
GREEDY_12 = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)


def pressure(bench: Workbench, n: int = 4, max_tokens: int = 24) -> list[int]:
    """n requests of ~130 prompt tokens (9 blocks of 16 each, and growing)."""
    return [
        bench.add_request(f"{i}: {LONG}", max_tokens=max_tokens, ignore_eos=True) for i in range(n)
    ]


async def until(condition, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


# ---- a system prompt shared by three questions, and its hash chain by hand ----------------------
BS = 16  # tokens per block: the views' engine below, and the workbench's TEACHING_DEFAULTS
SYSTEM = list(range(100, 140))  # 40 tokens: two full blocks and 8 over
QUESTIONS = [list(range(200 + 20 * k, 212 + 20 * k)) for k in range(3)]  # 12 tokens each
GREEDY = SamplingParams(temperature=0, max_tokens=10, ignore_eos=True)


def hand_chain(tokens: list[int], num_blocks: int) -> list[int]:
    """The chained hashes of the first ``num_blocks`` full blocks, by hand."""
    hashes, prev = [], None
    for i in range(num_blocks):
        prev = chain_hash(prev, tokens[i * BS : (i + 1) * BS])
        hashes.append(prev)
    return hashes


# ---- reading the figures back --------------------------------------------------------------------
def flat_cells(bench: Workbench, prop: str) -> list:
    """One property of the block grid (z, text, hovertext), flattened, padding cells dropped."""
    return (
        np.asarray(getattr(bench.block_view.figure.data[0], prop))
        .ravel()[: bench.block_view.num_blocks]
        .tolist()
    )


def grid_values(bench: Workbench) -> list[int]:
    return [int(v) for v in flat_cells(bench, "z")]


def header(bench: Workbench) -> str:
    return bench.metrics_panel.html.split("</b>")[0]


def figure_states(bench: Workbench) -> dict[tuple[int, int], int]:
    """{(seq id, step): code} as drawn in the timeline figure."""
    grid = bench.timeline_view.figure.data[0]
    return {
        (int(label.split()[1]), int(step)): int(code)
        for label, row in zip(grid.y, grid.z, strict=True)
        for step, code in zip(grid.x, row, strict=True)
        if code is not None
    }


def expected_states(rec) -> dict[tuple[int, int], int]:
    """The timeline, re-derived from the Recorder's DataFrames (events + scheduled phases)."""
    events, sched = rec.events, rec.scheduled
    status: dict[int, str] = {}
    out = {}
    for step in rec.steps.step.tolist():
        finished = set()
        for e in events[events.step == step].itertuples():
            status[e.seq_id] = e.after
            if e.after == "FINISHED":
                finished.add(e.seq_id)
        here = sched[sched.step == step]
        phase = dict(zip(here.seq_id.tolist(), here.phase.tolist(), strict=True))
        for seq_id, st in status.items():
            if seq_id in finished:
                out[seq_id, step] = FINISHED
            elif seq_id in phase:
                out[seq_id, step] = PREFILL if phase[seq_id] == "prefill" else DECODE
            else:
                codes = {"WAITING": WAITING, "RUNNING": IDLE, "PREEMPTED": PREEMPTED}
                out[seq_id, step] = codes[st]
        for seq_id in finished:
            del status[seq_id]
    return out


# ---- a simulated page ----------------------------------------------------------------------------
class FakePage:
    """Answers the workbench's pings like the browser view. Each frame (a ping) keeps the page
    busy for ``draw_s`` (one after the other), then it answers; a tick is echoed, after any click
    made before it (the page sends messages in order), once the page is not busy."""

    def __init__(self, bench: Workbench, draw_s: float = 0.01):
        self.page, self.clicks, self.draw_s = bench.gate.page, [], draw_s
        self.loop = asyncio.get_running_loop()
        self.busy_until = self.loop.time()
        self.page.observe(lambda _: self.loop.call_at(self.busy_until, self._tock), "tick")
        self.page.observe(self._on_ping, "ping")
        self.answer()  # the view's hello

    def _on_ping(self, _) -> None:
        self.busy_until = max(self.loop.time(), self.busy_until) + self.draw_s
        self.loop.call_at(self.busy_until, self.answer)

    def _tock(self) -> None:
        while self.clicks:
            self.clicks.pop(0)()
        self.page.tock = self.page.tick

    def answer(self) -> None:
        self.page.pong = self.page.ping


# ---- StepRecords by hand -------------------------------------------------------------------------
W_, R_, P_, F_ = (
    getattr(SequenceStatus, n) for n in ("WAITING", "RUNNING", "PREEMPTED", "FINISHED")
)


def scripted(
    step: int, sched: dict[int, bool], events=(), t: float = 0.001, reason: str = "test"
) -> StepRecord:
    """A StepRecord by hand: ``sched`` maps seq id -> is a decode (a prefill chunk of 8 tokens,
    or one decode token); ``events`` are (seq id, before, after)."""
    ids, dec = tuple(sched), tuple(sched.values())
    return StepRecord(
        step=step,
        seq_ids=ids,
        is_decode=dec,
        num_new_tokens=tuple(1 if d else 8 for d in dec),
        starts=(0,) * len(ids),
        reaches_end=(True,) * len(ids),
        num_prefill_tokens=8 * dec.count(False),
        num_decode_tokens=dec.count(True),
        admitted_ids=(),
        preempted_ids=tuple(q for q, _, a in events if a is P_),
        finished_ids=tuple(q for q, _, a in events if a is F_),
        added_ids=tuple(q for q, b, _ in events if b is None),
        tokens=(7,) * len(ids),
        kv_blocks_used=0,
        kv_blocks_free=0,
        kv_blocks_cached=0,
        kv_blocks_total=0,
        prefix_hit_tokens=0,
        num_running=0,
        num_waiting=0,
        timing=StepTiming(forward=t, total=2 * t),
        events=tuple(SequenceEvent(step, q, b, a, reason) for q, b, a in events),
        time=float(step),
    )


SCRIPT = [  # seq 0 runs and finishes; seq 1 is preempted and resumes; seq 2 only waits
    scripted(0, {0: False}, [(0, None, W_), (1, None, W_), (0, W_, R_)]),
    scripted(1, {0: True, 1: False}, [(1, W_, R_), (2, None, W_)]),
    scripted(2, {0: True}, [(1, R_, P_)]),
    scripted(3, {0: True}, [(0, R_, F_)], t=0.003),
    scripted(4, {1: False}, [(1, P_, R_)]),
    scripted(5, {}),
]
EXPECTED = {
    0: {0: PREFILL, 1: DECODE, 2: DECODE, 3: FINISHED},
    1: {0: WAITING, 1: PREFILL, 2: PREEMPTED, 3: PREEMPTED, 4: PREFILL, 5: IDLE},
    2: {1: WAITING, 2: WAITING, 3: WAITING, 4: WAITING, 5: WAITING},
}
