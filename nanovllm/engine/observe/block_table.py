"""One sequence's block table, as PagedAttention draws it: logical block i -> physical block j.

::

    logical (the sequence's tokens)         physical (the cache)
    i=0  [t0 .. t15]        16/16  ---->  block 7   ref 2, hash 3f2a.., parent -
    i=1  [t16 .. t31]       16/16  ---->  block 2   ref 1, hash 91c0.., parent 3f2a..
    i=2  [t32 .. t37]        6/16  ---->  block 12  ref 1, no hash yet (not full)

``block_table(snap, seq_id)`` reads only an ``EngineSnapshot``: the sequence's ``block_table``,
its token count and the per-block arrays (ref count, owners, chain hash and parent hash). ``fill``
is how many of the sequence's tokens the block holds (``block_size`` for all but the last);
``computed`` how many of those are already in the cache (less while a chunked prefill is under
way). Token ids are not in the snapshot: a view decodes ``[first_token, first_token + fill)``
itself, from the sequence, when it shows them.
"""

from __future__ import annotations

from dataclasses import dataclass

from nanovllm.engine.observe.snapshot import EngineSnapshot, SequenceSnapshot


@dataclass(frozen=True)
class BlockTableEntry:
    logical: int  # i: the sequence's i-th block
    physical: int  # j = block_table[i], the block id in the cache
    first_token: int  # the position of the block's first token in the sequence (i * block_size)
    fill: int  # tokens of the sequence in the block, of block_size
    computed: int  # of those, tokens whose keys and values are in the cache
    state: int  # BLOCK_* code of the physical block
    ref_count: int
    owners: tuple[int, ...]  # every sequence holding the physical block
    hash: int | None  # the chain hash (None: not full, or not computed yet)
    parent_hash: int | None  # the hash of the block before it in the chain (None: first block)


def find_sequence(snap: EngineSnapshot, seq_id: int) -> SequenceSnapshot | None:
    """The sequence ``seq_id`` in the snapshot (None when it is not there: collected, or new)."""
    return next((s for s in snap.sequences if s.seq_id == seq_id), None)


def block_table(snap: EngineSnapshot, seq_id: int) -> list[BlockTableEntry]:
    """The block table of ``seq_id`` at the snapshot's moment, one entry per logical block (empty
    for a sequence that holds no blocks: waiting, preempted, finished, or not in the snapshot)."""
    seq = find_sequence(snap, seq_id)
    if seq is None:
        return []
    bs = snap.block_size
    entries = []
    for i, j in enumerate(seq.block_table):
        first = i * bs
        hashed = bool(snap.has_hash[j])
        parent = snap.has_parent is not None and bool(snap.has_parent[j])
        entries.append(
            BlockTableEntry(
                logical=i,
                physical=j,
                first_token=first,
                fill=max(0, min(bs, seq.num_tokens - first)),
                computed=max(0, min(bs, seq.num_computed_tokens - first)),
                state=int(snap.block_state[j]),
                ref_count=int(snap.ref_count[j]),
                owners=snap.owners.get(j, ()),
                hash=int(snap.block_hash[j]) if hashed and snap.block_hash is not None else None,
                parent_hash=int(snap.parent_hash[j]) if parent else None,
            )
        )
    return entries


def short_hash(h: int | None, digits: int = 8) -> str:
    """A hash as the first ``digits`` hex digits of its 16 ("-" for none)."""
    return "-" if h is None else f"{h:016x}"[:digits]
