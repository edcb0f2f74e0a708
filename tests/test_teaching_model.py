"""nanovllm.testing.teaching: the trained teaching model writes the text its corpus teaches.

"Held out" here means: no line of the training corpus starts with the prompt (checked below on
the very lines the default recipe trains on). For counting, the prompt starts at a number ending
in 7, and no counting line starts at such a number; for the alphabet, the week and the year, at a
letter / day / month no line starts with; for a times table, at the one row of each table no line
starts at; for a templated sentence, with a number ending in 7, which no sentence of the corpus
names. The single steps inside a prompt (46 -> 47, Tuesday -> Wednesday, 7 x 7 = 49) do occur in
training: a successor or a product cannot be learned otherwise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from nanovllm import LLM, SamplingParams  # noqa: E402
from nanovllm.testing import corpus, teaching  # noqa: E402
from nanovllm.testing.teaching import Recipe, make_teaching_model  # noqa: E402

KINDS = corpus.HELD_OUT_KINDS


@pytest.fixture(scope="module")
def llm(teaching_model):
    with LLM(teaching_model, kvcache_block_size=16, attention_backend="torch_ref") as engine:
        yield engine


@pytest.fixture(scope="module")
def ours(llm) -> dict[str, list[tuple[list[int], list[int], list[int]]]]:
    """Per kind: (prompt ids, expected continuation ids, our greedy ids), one generate call."""
    cases = [(k, p, c) for k in KINDS for p, c in corpus.held_out_prompts(k)]
    encode = llm.tokenizer.encode
    expected = [encode(c) for _, _, c in cases]
    params = [SamplingParams(temperature=0, max_tokens=len(e)) for e in expected]
    outs = llm.generate([p for _, p, _ in cases], params, use_tqdm=False)
    result: dict[str, list] = {k: [] for k in KINDS}
    for (kind, prompt, _), want, out in zip(cases, expected, outs):
        result[kind].append((encode(prompt), want, out["token_ids"]))
    return result


def test_a_dozen_held_out_prompts_of_each_kind_never_start_a_training_line():
    lines = teaching._lines_for(Recipe())  # a superset of the lines the rows are packed from
    cases = {kind: corpus.held_out_prompts(kind) for kind in KINDS}
    longest = max(len(p.split()) for prompts in cases.values() for p, _ in prompts)
    starts = {" ".join(line.split()[:n]) for line in lines for n in range(1, longest + 1)}
    for kind, prompts in cases.items():
        assert len(prompts) == 12 and len(set(prompts)) == 12, kind
        for prompt, continuation in prompts:
            assert continuation, (kind, prompt)
            assert prompt not in starts, f"{kind}: a training line starts with {prompt!r}"


@pytest.mark.parametrize("kind", KINDS)
def test_greedy_continuations_of_held_out_prompts_are_exactly_right(ours, llm, kind):
    wrong = [
        (llm.tokenizer.decode(p), llm.tokenizer.decode(want), llm.tokenizer.decode(got))
        for p, want, got in ours[kind]
        if got != want
    ]
    assert not wrong, f"{len(wrong)} of 12 wrong (prompt, expected, got): {wrong}"


def test_hugging_face_loads_it_and_its_greedy_output_equals_ours(teaching_model, ours):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(teaching_model)
    model, info = AutoModelForCausalLM.from_pretrained(teaching_model, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    model.eval()
    for kind in KINDS:
        for (prompt, _), (ids, want, got) in zip(corpus.held_out_prompts(kind), ours[kind]):
            assert tok(prompt, add_special_tokens=False)["input_ids"] == ids
            with torch.no_grad():
                out = model.generate(torch.tensor([ids]), max_new_tokens=len(want), do_sample=False)
            assert out[0, len(ids) :].tolist() == got, (kind, prompt)


def test_text_round_trips_through_the_word_level_tokenizer(llm):
    tok = llm.tokenizer
    for kind in KINDS:
        for prompt, continuation in corpus.held_out_prompts(kind):
            text = f"{prompt} {continuation}"
            ids = tok.encode(text)
            assert tok.decode(ids) == text
            assert len(ids) == len(text.replace(",", " ,").replace(".", " .").split())
    assert tok.decode(tok.encode("A zebra")) == "A <|unk|>"


def test_it_answers_the_questions_it_was_taught(llm):
    """Not held out: the facts are memorized, in plain, question-and-answer and chat form."""
    question, answer = corpus.FACTS[0]
    chat = llm.tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    outs = llm.generate([question, chat], SamplingParams(temperature=0, max_tokens=40))
    tok = llm.tokenizer
    answer_ids = tok.encode(answer)
    # the engine stops on either end token and keeps it in the token ids, not in the text (vLLM)
    assert outs[0]["token_ids"] == [*answer_ids, tok.convert_tokens_to_ids("<|endoftext|>")]
    assert outs[1]["token_ids"] == [*answer_ids, tok.convert_tokens_to_ids("<|im_end|>")]
    # the text is what the answer adds to the prompt (vLLM's): a word-level join puts a space first
    assert outs[1]["text"] == outs[0]["text"] == " " + answer and outs[1]["finish_reason"] == "stop"


def test_the_checkpoint_is_a_plain_qwen3_with_its_recipe(teaching_model):
    from pathlib import Path

    path = Path(teaching_model)
    raw = json.loads((path / "config.json").read_text())
    assert raw["architectures"] == ["Qwen3ForCausalLM"] and raw["eos_token_id"] == [0, 2]
    info = json.loads((path / "teaching.json").read_text())
    assert info["key"] == Recipe().key() and path.name == f"teaching-{info['key']}"
    assert info["recipe"] == dataclasses.asdict(Recipe())


def test_the_cache_key_changes_when_the_recipe_changes():
    base = Recipe()
    assert base.key() == Recipe().key()  # stable: the second call finds the same directory
    changed = [
        dataclasses.replace(base, seed=1),
        dataclasses.replace(base, steps=base.steps + 1),
        dataclasses.replace(base, lr=base.lr / 2),
        dataclasses.replace(base, config={**base.config, "hidden_size": 32}),
        dataclasses.replace(base, config={**base.config, "num_hidden_layers": 3}),
    ]
    keys = {base.key(), *(r.key() for r in changed)}
    assert len(keys) == 1 + len(changed)
    source = teaching._builder_source()  # the corpus generator, the trainer and the writers
    assert base.key(source=source) == base.key()
    assert base.key(source=source.replace(b"Monday", b"Lundi")) != base.key()


@pytest.mark.slow
def test_training_is_reproducible(tmp_path):
    """The same (small) recipe twice gives byte-identical weights; another seed does not."""
    small = Recipe(steps=12, batch_size=2, seq_len=64)

    def digest(recipe, name):
        path = make_teaching_model(tmp_path / name, recipe, progress=False)
        return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()

    first = digest(small, "a")
    assert digest(small, "b") == first
    assert digest(dataclasses.replace(small, seed=1), "c") != first
