"""nanovllm.teaching.held_out: the held-out set is wide, seeded, and nobody trained on it.

"Nobody trained on" is checked as `held_out.py` defines it, on the very lines `Recipe()` trains on
(`train.training_lines`): no training line begins with a held-out prompt, no
training line holds a reworded question or a held-out sentence prompt anywhere, and every word of
a reworded question is trained on elsewhere. No torch needed.
"""

from __future__ import annotations

import bisect
import collections
import re

import pytest

from nanovllm.teaching import MODEL_DIR, corpus, record
from nanovllm.teaching.facts import FACTS
from nanovllm.teaching.held_out import HELD_OUT_SEED, QUOTAS, held_out_cases
from nanovllm.teaching.recipe import Recipe
from nanovllm.teaching.train import corpus_sha256, training_lines

CASES = held_out_cases()


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return training_lines(Recipe())


def test_at_least_200_cases_of_every_kind_drawn_by_its_own_seed():
    assert len(CASES) >= 200 and len(set(CASES)) == len(CASES)
    assert collections.Counter(c.kind for c in CASES) == QUOTAS
    assert held_out_cases() == CASES  # seeded
    other = held_out_cases(HELD_OUT_SEED + 1)
    assert other != CASES and len(other) == len(CASES)
    assert all(c.prompt and c.expected for c in CASES)


def test_every_kind_of_sequence_is_prompted_from_everywhere():
    by_kind = collections.defaultdict(list)
    for c in CASES:
        by_kind[c.kind].append(c)
    prompts = {c.prompt for c in CASES}
    assert {"a b c d e f", "k l", "K L M N"} <= prompts  # the cases
    firsts = {kind: {c.expected.split()[0] for c in cs} for kind, cs in by_kind.items()}
    assert firsts["days"] == set(corpus.DAYS) and firsts["months"] == set(corpus.MONTHS)
    hundreds = {int(c.prompt.split()[0]) // 100 for c in by_kind["digits"]}
    assert hundreds == set(range(10))
    assert {c.prompt.split()[0] for c in by_kind["words"]} >= {"seven", "seventeen", "ninety"}
    times = {tuple(c.prompt.split()[::2][:2]) for c in by_kind["times"]}  # ("7", "4") of "7 x 4 ="
    assert all((b, a) in times for a, b in times) and len(times) == 36
    subjects = {c.prompt.split()[0] for c in by_kind["sentence"]}
    assert subjects == {"Request", "Sequence", "Block", "Step"}
    assert len({c.prompt for c in by_kind["question"]}) == 2 * len(FACTS)


def test_no_training_line_begins_with_a_held_out_prompt(lines):
    ordered = sorted(lines)
    for case in CASES:
        i = bisect.bisect_left(ordered, case.prompt)
        while i < len(ordered) and ordered[i].startswith(case.prompt):
            line = ordered[i]
            assert len(line) > len(case.prompt) and line[len(case.prompt)] != " ", (case, line)
            i += 1  # "17 18" begins "17 180": a different first word, not the prompt


def test_reworded_questions_and_sentence_prompts_appear_in_no_training_line(lines):
    text = "\n".join(sorted(set(lines)))
    for case in CASES:
        if case.kind in ("question", "sentence"):
            assert case.prompt not in text, case
    trained = {q for f in FACTS for q in f.trained()}
    assert {c.prompt for c in CASES if c.kind == "question"}.isdisjoint(trained)
    assert not re.search(r"(Request|Sequence|Block|Step) \d*7\b", text)


def test_every_word_of_a_reworded_question_occurs_in_training(lines):
    def words(s: str) -> set[str]:
        return set(re.findall(r"\w+|[^\w\s]", s))

    trained = words(corpus.vocabulary())  # trained wordings, answers, sentences, sequences
    for case in CASES:
        if case.kind == "question":
            assert words(case.prompt) <= trained, (case.prompt, words(case.prompt) - trained)
    # the vocabulary's wordings and sentences do occur in the corpus
    text = "\n".join(sorted(set(lines)))
    assert all(q in text for f in FACTS for q in f.trained())
    assert all(t.split(" {a} ")[1].replace("| ", "") in text for t in corpus.TEMPLATES)


def test_each_fact_holds_out_two_wordings_and_trains_the_canonical_question():
    for fact in FACTS:
        held, trained = fact.held_out(), fact.trained()
        assert len(held) == 2 and fact.questions[0] in trained
        assert set(held) | set(trained) == set(fact.questions)
    held_wordings = collections.Counter(q.split()[0] for f in FACTS for q in f.held_out())
    assert len(held_wordings) >= 5  # the rotation spreads the held-out wordings


def test_the_shipped_model_was_trained_on_this_corpus(lines):
    info = record.read(MODEL_DIR)
    assert info["corpus_sha256"] == corpus_sha256(lines), (
        "the corpus generator or Recipe() changed since the shipped model was trained: retrain "
        "with `python -m nanovllm.teaching train --out nanovllm/teaching/model`"
    )
