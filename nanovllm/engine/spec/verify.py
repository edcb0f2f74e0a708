"""Verification: which draft tokens the target model accepts. One rule for greedy and sampled
requests.

A decode row with draft ``d_1 .. d_k`` computes ``1 + k`` positions in one forward; at each
position j the runner draws the target's token ``y_j`` exactly as a plain decode would draw it
there (argmax for greedy requests; a sample from the processed distribution p_j otherwise, with
independent noise per position)::

    input     t   d_1  d_2  d_3          t: the last accepted token
    target    y_0 y_1  y_2  y_3          y_j: the target's token after input position j
    accept    d_1 == y_0 ? d_2 == y_1 ? ...   stop at the first mismatch
    append    y_0 .. y_a                 a = accepted drafts; y_a is the bonus (or correction)

Greedy: y_j is the argmax, so the output is token for token what one-at-a-time greedy decoding
gives. Sampled: this is the standard rejection rule (accept d with probability min(1, p(d)/q(d)),
else draw from the normalised residual max(0, p - q)) for a deterministic proposer, whose q is a
point mass on d: drawing y ~ p and accepting iff y == d accepts with probability p(d), and a
rejected y is distributed as p with d removed, renormalised, which is the residual. So the
output distribution is the target's. (A draft-model proposer, whose q is not a point mass, needs
the general rule with q's probabilities; it would be added next to this one.)
"""

from __future__ import annotations


def accepted_tokens(draft: tuple[int, ...], targets: tuple[int, ...]) -> tuple[int, ...]:
    """The tokens a row appends: the target's tokens up to and including the first position
    where the draft disagrees (all ``len(draft) + 1`` when every draft token is accepted)."""
    assert len(targets) == len(draft) + 1, (draft, targets)
    a = 0
    while a < len(draft) and draft[a] == targets[a]:
        a += 1
    return targets[: a + 1]
