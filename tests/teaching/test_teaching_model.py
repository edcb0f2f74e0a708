"""nanovllm.teaching: the shipped teaching model is what its record says, loads in our engine and in
transformers alike, and continues prompts nobody trained on (held_out.py says what that means).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from nanovllm import LLM, SamplingParams  # noqa: E402
from nanovllm.teaching import MODEL_DIR, record, teaching_model_path  # noqa: E402
from nanovllm.teaching.evaluate import continue_cases  # noqa: E402
from nanovllm.teaching.facts import FACTS  # noqa: E402
from nanovllm.teaching.held_out import Score, held_out_cases  # noqa: E402
from nanovllm.teaching.recipe import Recipe  # noqa: E402
from nanovllm.teaching.train import make_teaching_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = {
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "teaching.json",
}
MAX_FILE_BYTES, MAX_TOTAL_BYTES = 2_000_000, 5_000_000
CASES = held_out_cases()


@pytest.fixture(scope="module")
def llm():
    with LLM(str(teaching_model_path()), kvcache_block_size=16, attention_backend="torch_ref") as e:
        yield e


@pytest.fixture(scope="module")
def ours(llm) -> list[tuple[list[int], str]]:
    """Our greedy (token ids, text) for every held-out case, in one generate call."""
    return continue_cases(llm, CASES)


def test_the_path_is_the_shipped_directory_with_nothing_to_build():
    assert teaching_model_path() == MODEL_DIR and MODEL_DIR.parent.name == "teaching"
    assert {f.name for f in MODEL_DIR.iterdir()} == SHIPPED
    code = "import sys, nanovllm.teaching as t; t.teaching_model_path(); print(sorted(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "'torch'" not in out.stdout  # at once: not even torch is imported


def test_the_shipped_files_match_their_record_and_stay_small():
    info = record.read(MODEL_DIR)
    assert record.checksums(MODEL_DIR) == info["files"]  # sha256 and size of every file
    assert set(info["files"]) == SHIPPED - {record.RECORD}
    sizes = {f.name: f.stat().st_size for f in MODEL_DIR.iterdir()}
    assert max(sizes.values()) < MAX_FILE_BYTES and sum(sizes.values()) < MAX_TOTAL_BYTES, sizes
    assert info["recipe"] == dataclasses.asdict(Recipe()), "Recipe() is not the shipped recipe"
    held = info["held_out"]
    assert held["cases"] == len(CASES) and held["correct"] >= 0.97 * held["cases"], held


def test_pyproject_ships_the_files_and_git_tracks_them():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setup["package-data"]["nanovllm.teaching"]
    for name in SHIPPED:
        assert any(fnmatch(f"model/{name}", p) for p in patterns), name
    git = subprocess.run(
        ["git", "ls-files", "nanovllm/teaching/model"], cwd=ROOT, capture_output=True, text=True
    )
    if git.returncode != 0:
        pytest.skip("not a git checkout")
    assert {Path(p).name for p in git.stdout.split()} == SHIPPED  # none of them git-ignored


def test_held_out_continuations_are_at_least_97_percent_right(ours):
    score = Score.of(CASES, [text for _, text in ours])
    print(score.line())
    assert score.fraction >= 0.97, (score.line(), score.wrong)
    assert score.summary() == record.read(MODEL_DIR)["held_out"]  # the record is this figure


def test_transformers_loads_it_and_greedy_generates_what_our_engine_does(llm, ours):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(MODEL_DIR)
    model, info = AutoModelForCausalLM.from_pretrained(
        MODEL_DIR, dtype=torch.float32, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    model.eval()
    checked = list(zip(CASES, ours))[::5]
    assert {case.kind for case, _ in checked} == {case.kind for case in CASES}
    for case, (ids, _) in checked:  # a fifth of them, every kind
        prompt = tok(case.prompt, add_special_tokens=False)["input_ids"]
        assert prompt == llm.tokenizer.encode(case.prompt, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(torch.tensor([prompt]), max_new_tokens=len(ids), do_sample=False)
        assert out[0, len(prompt) :].tolist() == ids, case


def test_text_round_trips_through_the_word_level_tokenizer(llm):
    tok = llm.tokenizer
    for case in CASES:
        text = f"{case.prompt} {case.expected}"
        assert tok.decode(tok.encode(text)) == text
        assert tok.unk_token_id not in tok.encode(text), text
    assert tok.decode(tok.encode("A zebra")) == "A <|unk|>"


def test_it_answers_every_canonical_question_whole_in_plain_and_chat_form(llm):
    """Not held out: the notebooks ask these, and assert the answers."""
    tok = llm.tokenizer
    questions = [f.questions[0] for f in FACTS]
    chats = [
        tok.apply_chat_template(
            [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
        )
        for q in questions
    ]
    outs = llm.generate(questions + chats, SamplingParams(temperature=0, max_tokens=40))
    ends = [tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>")]
    for i, fact in enumerate(FACTS):
        for out, end in ((outs[i], ends[0]), (outs[len(FACTS) + i], ends[1])):
            assert out["token_ids"] == [*tok.encode(fact.answer), end], (fact, out["text"])
            # the text is what the answer adds to the prompt (vLLM's): a word-level join puts a
            # space first
            assert out.outputs[0].text == " " + fact.answer and out["finish_reason"] == "stop"


def test_the_checkpoint_is_a_plain_qwen3_in_bfloat16():
    raw = json.loads((MODEL_DIR / "config.json").read_text())
    assert raw["architectures"] == ["Qwen3ForCausalLM"] and raw["eos_token_id"] == [0, 2]
    assert raw["torch_dtype"] == "bfloat16" == Recipe().dtype
    config = json.loads((MODEL_DIR / "tokenizer_config.json").read_text())
    assert "<|im_start|>assistant" in config["chat_template"]


def test_the_command_line_shows_the_shipped_model(capsys):
    from nanovllm.teaching.__main__ import main

    main([])
    out = capsys.readouterr().out
    assert str(MODEL_DIR) in out and "model.safetensors" in out and "held-out" in out


def test_training_is_reproducible_and_writes_a_shippable_checkpoint(tmp_path):
    """A small recipe (a second or two) twice gives byte-identical weights, another seed does not;
    the files are the shipped set, and their record matches them."""
    small = Recipe(steps=12, batch_size=2, seq_len=64)

    def digest(recipe, name):
        path = make_teaching_model(tmp_path / name, recipe, progress=False)
        assert {f.name for f in path.iterdir()} == SHIPPED
        assert record.checksums(path) == record.read(path)["files"]
        return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()

    first = digest(small, "a")
    assert digest(small, "b") == first
    assert digest(dataclasses.replace(small, seed=1), "c") != first
