"""Prompts nobody trained on: the teaching model's held-out set, and how an answer is scored.

What "nobody trained on" means here, precisely (tests/teaching/test_teaching_model.py checks the
first three on the very lines `Recipe()` trains on, and the last on the facts' tables):
1. No training line begins with a held-out prompt (compared word by word; a chat prompt as the
   rendered text).
2. By construction, each sequence prompt starts where no training line of its kind starts:
   counting (digits, words) at a number ending in 7; the alphabet at a letter of
   `corpus.HELD_OUT_LETTERS`, lowercase and capitals apart ("a b c d e f", "K L M"); the week and
   the year at HELD_OUT_DAYS / HELD_OUT_MONTHS; "n x b =" at a row b that table n never starts at
   (`corpus.HELD_OUT_TIMES`, a symmetric set, so both "7 x 4 =" and "4 x 7 =" are held out).
   The continuation starts anywhere: every day and month, numbers of every hundred.
3. A reworded question (`Fact.held_out()`: "What's a block table?", "Tell me what prefix caching
   is.") appears in no training line at all, nor does a sentence prompt (it names a number ending
   in 7, which no training sentence does).
4. Every word of a reworded question occurs in training (in other questions, the answers or
   the sentences): the model has to recombine wordings it knows, not read words it never saw.

`held_out_cases(seed)` draws the set (a seeded generator of its own, not the corpus's): QUOTAS
cases per kind, 247 in all. `Case.correct(text)` scores a greedy continuation: its first
CHECKED_WORDS whitespace-separated words equal the expected ones ("28," "7" "x" after "7 x 4 ="),
and where the expected line ends sooner ("7 x 12 =" -> "84") the text must end there too.
`Score` sums the cases per kind. Pure Python: the engine runs them in `evaluate.py`.
"""

from __future__ import annotations

import dataclasses
import random

from nanovllm.teaching import corpus
from nanovllm.teaching.corpus import (
    CAPITALS,
    DAYS,
    DIGITS_MAX,
    HELD_OUT_DAYS,
    HELD_OUT_LETTERS,
    HELD_OUT_MONTHS,
    HELD_OUT_TIMES,
    LOWERCASE,
    MONTHS,
    TABLE_MAX,
    TEMPLATES,
    WORDS_MAX,
    number_words,
)
from nanovllm.teaching.facts import FACTS

HELD_OUT_SEED = 24
CHECKED_WORDS = 3
SHOWN_ITEMS = 6  # how much of a sequence's continuation a case keeps (for display)
QUOTAS = dict(
    digits=30,
    words=20,
    lowercase=20,
    capitals=19,
    days=14,
    months=36,
    times=36,
    question=48,
    sentence=24,
)


@dataclasses.dataclass(frozen=True)
class Case:
    kind: str
    prompt: str
    expected: str  # what the corpus's rules write next (a sequence: up to SHOWN_ITEMS items)
    ends: bool  # the line ends after `expected` (the model should stop there)

    def checked(self) -> list[str]:
        """The expected words a continuation must start with."""
        return self.expected.split()[:CHECKED_WORDS]

    def correct(self, text: str) -> bool:
        words, want = text.split(), self.expected.split()
        if self.ends and len(want) < CHECKED_WORDS:
            return words == want
        return words[:CHECKED_WORDS] == want[:CHECKED_WORDS]


def held_out_cases(seed: int = HELD_OUT_SEED) -> list[Case]:
    """The held-out set: QUOTAS cases of each kind, the same for the same seed."""
    rng = random.Random(seed)
    cases = [
        *_digits(rng),
        *_words(rng),
        *_letters("lowercase", LOWERCASE),
        *_letters("capitals", CAPITALS),
        *_cycles("days", DAYS, HELD_OUT_DAYS),
        *_cycles("months", MONTHS, HELD_OUT_MONTHS),
        *_times(),
        *_questions(),
        *_sentences(rng),
    ]
    counts = {k: sum(c.kind == k for c in cases) for k in QUOTAS}
    assert counts == QUOTAS, counts
    return cases


def _sequence(kind: str, items: list[str], k: int) -> Case:
    """Prompt with items[:k]; expect the next SHOWN_ITEMS (the line ends where `items` does)."""
    shown = items[k : k + SHOWN_ITEMS]
    return Case(kind, " ".join(items[:k]), " ".join(shown), ends=len(items) <= k + SHOWN_ITEMS)


def _digits(rng: random.Random) -> list[Case]:
    cases = []
    for hundred in range(10):  # three starts in every hundred, each ending in 7
        for tens in rng.sample(range(10), 3):
            s = 100 * hundred + 10 * tens + 7
            k = min(rng.randint(2, 6), DIGITS_MAX - s)
            cases.append(_sequence("digits", [str(i) for i in range(s, DIGITS_MAX + 1)], k))
    return cases


def _words(rng: random.Random) -> list[Case]:
    cases = []
    for s in range(7, WORDS_MAX, 10):  # 7, 17, ..., 97: twice each, prompts of 1 to 5 numbers
        for k in rng.sample(range(1, min(5, WORDS_MAX - s) + 1), 2):
            numbers = [number_words(i) for i in range(s, WORDS_MAX + 1)]
            prompt, rest = " ".join(numbers[:k]), numbers[k:]
            expected = " ".join(rest[:SHOWN_ITEMS])
            cases.append(Case("words", prompt, expected, ends=len(rest) <= SHOWN_ITEMS))
    return cases


def _letters(kind: str, letters: tuple[str, ...]) -> list[Case]:
    starts = [i for i, x in enumerate(letters) if x in HELD_OUT_LETTERS]
    return [
        _sequence(kind, list(letters[s:]), k)
        for s in starts
        for k in (2, 4, 6)
        if s + k < len(letters)
    ]


def _cycles(kind: str, items: tuple[str, ...], held: tuple[str, ...]) -> list[Case]:
    """From each held-out start, prompts of 1 to a whole round: they end at every item."""
    cases = []
    for name in held:
        for k in range(1, len(items) + 1):
            run = corpus.cycle(items, items.index(name), k + SHOWN_ITEMS).split()
            cases.append(Case(kind, " ".join(run[:k]), " ".join(run[k:]), ends=False))
    return cases


def _times() -> list[Case]:
    cases = []
    for pair in sorted(HELD_OUT_TIMES, key=sorted):
        a, b = sorted(pair)
        for n, row in ((a, b), (b, a)):
            expected = corpus.times(n, row, min(row + 1, TABLE_MAX))[len(f"{n} x {row} = ") :]
            cases.append(Case("times", f"{n} x {row} =", expected, ends=row == TABLE_MAX))
    return cases


def _questions() -> list[Case]:
    return [Case("question", q, f.answer, ends=True) for f in FACTS for q in f.held_out()]


def _sentences(rng: random.Random) -> list[Case]:
    numbers = rng.sample([n for n in range(DIGITS_MAX + 1) if n % 10 == 7], 24)
    cases = []
    for i, a in enumerate(numbers):
        head, tail = TEMPLATES[i % len(TEMPLATES)].split(" | ")
        cases.append(Case("sentence", head.format(a=a), tail, ends=True))
    return cases


@dataclasses.dataclass
class Score:
    """Correct cases per kind, and the wrong ones as (kind, prompt, expected, got)."""

    total: dict[str, int] = dataclasses.field(default_factory=dict)
    right: dict[str, int] = dataclasses.field(default_factory=dict)
    wrong: list[tuple[str, str, str, str]] = dataclasses.field(default_factory=list)

    @classmethod
    def of(cls, cases: list[Case], texts: list[str]) -> Score:
        score = cls()
        for case, text in zip(cases, texts, strict=True):
            score.total[case.kind] = score.total.get(case.kind, 0) + 1
            ok = case.correct(text)
            score.right[case.kind] = score.right.get(case.kind, 0) + ok
            if not ok:
                score.wrong.append((case.kind, case.prompt, case.expected, text))
        return score

    @property
    def fraction(self) -> float:
        return sum(self.right.values()) / max(1, sum(self.total.values()))

    def summary(self) -> dict:
        return dict(
            seed=HELD_OUT_SEED,
            cases=sum(self.total.values()),
            correct=sum(self.right.values()),
            by_kind={k: f"{self.right[k]}/{n}" for k, n in self.total.items()},
        )

    def line(self) -> str:
        kinds = ", ".join(f"{k} {self.right[k]}/{n}" for k, n in self.total.items())
        right, n = sum(self.right.values()), sum(self.total.values())
        return f"{right}/{n} ({self.fraction:.1%}) correct: {kinds}"
