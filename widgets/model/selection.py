"""Selection: what the learner has chosen to look at. One object, read by every view from its
``DrawContext``; the views keep none of it.

::

    pinned     the step shown while time travelling (None: the latest)     slider, show_step, live
    picked     the request whose block table is drawn, outlined on the     dropdown, grid click,
               grid (a sequence id; None: none)                            timeline click, pick;
                                                                           forget_requests (Reset)
    integrity  check the cache's invariants every step and mark the       the checkbox,
               blocks a violation names                                    integrity_overlay

``picked_table`` is what the block-table view draws for the picked request: its table now, or,
once it holds no blocks (finished, preempted, waiting), its last kept table, with a line saying
so (else why nothing is drawn); with none picked, a line that says so.

A click on a grid cell picks one of the owners of the blocks it stands for (``pick_in``): the
first, or, when the picked request already holds it (a shared block), the next one, so clicking
again walks through the block's owners.
"""

from __future__ import annotations

from dataclasses import dataclass

from nanovllm.engine.observe.block_table import BlockTableEntry, block_table, find_sequence
from nanovllm.engine.observe.snapshot import EngineSnapshot, SequenceSnapshot


@dataclass
class Selection:
    pinned: int | None = None
    picked: int | None = None
    integrity: bool = False

    def shown_step(self, last_step: int | None) -> int | None:
        return self.pinned if self.pinned is not None else last_step

    def forget_pinned_before(self, first_step: int | None) -> None:
        """The pinned step scrolled out of the kept history (or the history was cleared): live."""
        if self.pinned is not None and (first_step is None or self.pinned < first_step):
            self.pinned = None

    def forget_requests(self) -> None:
        """A reset aborted every request and cleared the history: none stays picked (its table
        would name a request that no longer exists) and no step stays pinned. ``integrity`` is a
        setting, not a choice of what to look at: it stays."""
        self.picked = self.pinned = None


def pick_in(owners: dict[int, tuple[int, ...]], blocks, current: int | None) -> int | None:
    """The request a click on ``blocks`` (a grid cell's blocks) picks: the first held block's
    first owner, or, when ``current`` already holds it, its next owner (None: none is held)."""
    held = next((b for b in blocks if owners.get(b)), None)
    if held is None:
        return None
    who = owners[held]
    if current in who:
        return who[(who.index(current) + 1) % len(who)]
    return who[0]


@dataclass(frozen=True)
class PickedTable:
    """The picked request's block table as a view draws it: ``entries`` at the snapshot of
    ``as_of`` (None: the shown one); ``current`` when they are its blocks now (the grid outlines
    only those); ``why``: why it holds no blocks now (then nothing, or an older table, is drawn)."""

    seq_id: int | None
    seq: SequenceSnapshot | None = None
    entries: tuple[BlockTableEntry, ...] = ()
    as_of: int | None = None
    current: bool = False
    why: str = ""


NOTHING_PICKED = "no request picked: pick one here, or click one of its blocks"
_NO_BLOCKS = {
    "WAITING": "waiting: it gets blocks when it is admitted",
    "PREEMPTED": "preempted: its blocks were freed; it gets new ones when it resumes",
    "FINISHED": "finished: its blocks went back to the free list (the full ones stay in the "
    "prefix cache)",
}


def picked_table(snap: EngineSnapshot | None, seq_id: int | None, earlier=()) -> PickedTable:
    """What the block-table view shows for ``seq_id`` at ``snap``. A request holding no blocks
    (waiting, preempted, finished) shows its last table among the ``earlier`` frames (newest
    first), with a note; with none kept, the note says why nothing is drawn."""
    if seq_id is None:
        return PickedTable(None, why=NOTHING_PICKED)
    if snap is None:
        return PickedTable(seq_id, why="no snapshot kept for this step")
    seq = find_sequence(snap, seq_id)
    entries = tuple(block_table(snap, seq_id)) if seq is not None else ()
    if entries:
        return PickedTable(seq_id, seq, entries, current=True)
    now = (
        _NO_BLOCKS.get(seq.status, seq.status.lower())
        if seq is not None
        else "not in this snapshot (not added yet, or its output was collected)"
    )
    for frame in earlier:
        old = frame.snapshot
        if old is None or old is snap:
            continue
        then = tuple(block_table(old, seq_id))
        if then:  # the last kept step it held blocks
            return PickedTable(seq_id, find_sequence(old, seq_id), then, frame.step, False, now)
    return PickedTable(seq_id, seq, why=now + ("" if seq is None else "; no earlier table kept"))
