"""The prefix cache as a tree: one node per chain hash held in the cache, an edge to its parent.

A full block's hash covers its tokens and, through its parent's hash, every token before it
(``h_i = chain_hash(h_{i-1}, tokens of block i)``, see core/block_manager.py). So the hashes held
in the cache form a forest: requests that share a system prompt share its nodes (the trunk) and
part where their questions differ (the branches)::

    root ── a0 ── a1 ── a2 ──┬── q0      a0..a2: the system prompt's blocks (ref 3 while 3 run)
                             ├── q1      q0..q2: one question each
                             └── q2 ·    · cached-free: ref 0, kept until evicted (#k: k-th to go)

``prefix_tree(snap)`` reads only an ``EngineSnapshot``: each hashed block's hash and parent hash
(recorded when the block was committed, so a cached-free block keeps its edge), ref count, and the
free list's order. A tree built from KV-cache events (``cache_model.py``: vLLM's, or ours through
the same events) has the same nodes and edges but no block ids, ref counts or free list: there
``blocks`` is empty, ``ref_count`` and ``eviction`` are None (unknown), and ``token_ids`` holds
the block's tokens. A node whose parent hash no block holds any more (its parent was evicted
first) is an orphan: the root of its own subtree. ``layout(tree)`` places the nodes (x = depth,
y = leaf order, a parent centred on its children) for a view to draw; no plotly here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nanovllm.engine.observe.snapshot import EngineSnapshot


@dataclass(frozen=True)
class TreeNode:
    hash: int
    parent: int | None  # the parent's hash; None for a chain's first block
    blocks: tuple[int, ...]  # the physical blocks holding this hash (two only while duplicates
    # computed in the same step are both in use; the cache finds one)
    ref_count: int | None  # summed over ``blocks``; None: the source does not say (KV events)
    eviction: int | None  # position in the free list (0: evicted next); None while in use
    token_ids: tuple[int, ...] | None = None  # the block's tokens, where the source has them

    @property
    def cached_free(self) -> bool:
        return self.ref_count == 0


@dataclass(frozen=True)
class PrefixTree:
    nodes: dict[int, TreeNode]  # hash -> node
    children: dict[int | None, list[int]] = field(repr=False)  # parent hash (None: root) -> kids

    @property
    def edges(self) -> list[tuple[int, int]]:
        """(parent hash, child hash) for every node whose parent is in the tree."""
        return [(n.parent, h) for h, n in self.nodes.items() if n.parent in self.nodes]

    @property
    def roots(self) -> list[int]:
        """First blocks of chains, then orphans (their parent was evicted)."""
        return self.children.get(None, [])

    @property
    def orphans(self) -> list[int]:
        return [
            h for h, n in self.nodes.items() if n.parent is not None and n.parent not in self.nodes
        ]

    def depth(self, h: int) -> int:
        """Edges from ``h`` up to the root of its subtree."""
        d = 0
        while (p := self.nodes[h].parent) in self.nodes:
            h, d = p, d + 1
        return d

    def chain_index(self, h: int) -> int | None:
        """The block's index in its sequences' block tables (None when an ancestor is evicted:
        the chain is broken above it)."""
        d = self.depth(h)
        while (p := self.nodes[h].parent) in self.nodes:
            h = p
        return d if self.nodes[h].parent is None else None


def prefix_tree(snap: EngineSnapshot) -> PrefixTree:
    """The tree of the hashes the snapshot's blocks hold."""
    eviction = {int(b): k for k, b in enumerate(snap.free_order)}
    blocks: dict[int, list[int]] = {}
    parent: dict[int, int | None] = {}
    for b in np.flatnonzero(snap.has_hash).tolist():
        h = int(snap.block_hash[b])
        blocks.setdefault(h, []).append(b)
        parent[h] = int(snap.parent_hash[b]) if snap.has_parent[b] else None
    nodes = {}
    for h, bs in blocks.items():
        free = [eviction[b] for b in bs if b in eviction]
        nodes[h] = TreeNode(
            hash=h,
            parent=parent[h],
            blocks=tuple(bs),
            ref_count=int(sum(int(snap.ref_count[b]) for b in bs)),
            eviction=min(free) if free and all(snap.ref_count[b] == 0 for b in bs) else None,
        )
    children: dict[int | None, list[int]] = {}
    for h, n in nodes.items():
        children.setdefault(n.parent if n.parent in nodes else None, []).append(h)
    for kids in children.values():
        kids.sort(key=lambda h: nodes[h].blocks[0])  # a stable order: by block id
    return PrefixTree(nodes, children)


def layout(tree: PrefixTree) -> dict[int, tuple[int, float]]:
    """hash -> (x, y): x the depth, y the leaf order (each leaf one row; a parent sits midway
    between its first and last child). Iterative: chains can be thousands of blocks long."""
    pos: dict[int, tuple[int, float]] = {}
    next_row = 0
    # (hash, depth, children visited?) in depth-first order
    stack = [(h, 0, False) for h in reversed(tree.roots)]
    while stack:
        h, d, visited = stack.pop()
        kids = tree.children.get(h, [])
        if not kids:
            pos[h] = (d, float(next_row))
            next_row += 1
        elif visited:
            pos[h] = (d, (pos[kids[0]][1] + pos[kids[-1]][1]) / 2)
        else:
            stack.append((h, d, True))
            stack.extend((k, d + 1, False) for k in reversed(kids))
    return pos


def skeleton(tree: PrefixTree) -> set[int]:
    """The nodes a large tree is drawn with: roots, branch points, the first node of each branch,
    and leaves. A chain between two of them lies on one row of ``layout`` (a single child sits
    level with its parent), so dropping its inner nodes changes no line, only the markers."""
    keep = set(tree.roots)
    for parent, kids in tree.children.items():
        if parent is not None and len(kids) > 1:
            keep.add(parent)
            keep.update(kids)
    keep.update(h for h in tree.nodes if not tree.children.get(h))
    return keep


def nearest_kept_ancestor(tree: PrefixTree, h: int, keep: set[int]) -> int | None:
    """The closest ancestor of ``h`` in ``keep`` (None for a root)."""
    p = tree.nodes[h].parent
    while p in tree.nodes and p not in keep:
        p = tree.nodes[p].parent
    return p if p in tree.nodes else None
