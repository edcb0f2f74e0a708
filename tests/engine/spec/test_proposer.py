"""NgramProposer (prompt lookup) and the acceptance rule, with lists of ints."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nanovllm.engine.spec import NgramProposer, accepted_tokens, make_proposer
from nanovllm.speculative_config import SpeculativeConfig


def test_longest_suffix_match_wins():
    p = NgramProposer(1, 3)
    #        a  b  c  X  Y  |  b  c  Z  |  a  b  c
    tokens = [1, 2, 3, 8, 9, 2, 3, 7, 1, 2, 3]
    # "1 2 3" (n = 3) occurred at 0, followed by 8 9 ...; "2 3" alone would match later (-> 7)
    assert p.propose(tokens, 2) == [8, 9]
    assert p.propose(tokens, 10) == [8, 9, 2, 3, 7, 1, 2, 3]


def test_most_recent_occurrence_of_the_suffix():
    p = NgramProposer(1, 1)
    assert p.propose([5, 1, 5, 2, 5], 1) == [2]


def test_no_match_no_draft():
    p = NgramProposer(2, 3)
    assert p.propose([1, 2, 3, 4, 5], 3) == []  # no bigram repeats
    assert p.propose([7], 3) == []
    assert p.propose([1, 2, 1, 2], 0) == []


def test_min_n_respected():
    assert NgramProposer(2, 2).propose([4, 9, 1, 4], 2) == []  # only a 1-gram repeats
    assert NgramProposer(1, 2).propose([4, 9, 1, 4], 2) == [9, 1]


def test_make_proposer_from_config():
    p = make_proposer(SpeculativeConfig(prompt_lookup_min=2, prompt_lookup_max=4))
    assert (p.min_n, p.max_n) == (2, 4)


@given(st.lists(st.integers(0, 4), min_size=1, max_size=40), st.integers(1, 6))
def test_draft_continues_an_earlier_occurrence(tokens, k):
    draft = NgramProposer(1, 3).propose(tokens, k)
    assert len(draft) <= k
    if draft:  # some earlier i: tokens[i-n:i] equals the suffix, and the draft follows it
        n = len(tokens)
        assert any(
            tokens[i : i + len(draft)] == draft and tokens[i - m : i] == tokens[n - m :]
            for m in (1, 2, 3)
            for i in range(m, n)
        )


def test_accepted_tokens_longest_agreeing_prefix_plus_the_targets_next():
    assert accepted_tokens((5, 6, 7), (5, 6, 7, 8)) == (5, 6, 7, 8)  # all, plus the bonus
    assert accepted_tokens((5, 6, 7), (5, 9, 7, 8)) == (5, 9)  # d2 rejected: y1 corrects it
    assert accepted_tokens((5, 6, 7), (4, 6, 7, 8)) == (4,)  # the first already wrong
    assert accepted_tokens((), (3,)) == (3,)


@given(st.lists(st.integers(0, 3), max_size=6), st.data())
def test_accepted_tokens_are_a_prefix_of_the_targets(draft, data):
    targets = tuple(
        data.draw(st.lists(st.integers(0, 3), min_size=len(draft) + 1, max_size=len(draft) + 1))
    )
    out = accepted_tokens(tuple(draft), targets)
    a = len(out) - 1
    assert out == targets[: a + 1]
    assert tuple(draft[:a]) == targets[:a]
    assert a == len(draft) or draft[a] != targets[a]
