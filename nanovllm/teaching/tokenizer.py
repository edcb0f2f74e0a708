"""The teaching model's tokenizer: word-level, trained on every word the corpus can write.

Contract:
- `build_tokenizer(model_max_length)` returns a `PreTrainedTokenizerFast` whose vocabulary is the
  specials (ids 0-3: <|endoftext|>, <|im_start|>, <|im_end|>, <|unk|>) and then every word,
  number and punctuation mark of `corpus.vocabulary()`: a number is never split, so a
  continuation is checked word by word. A word it does not know becomes `<|unk|>`.
- Pre-tokenization splits on whitespace and then into words (an apostrophe inside a word keeps
  it whole: "What's") and single punctuation marks ("blocks." -> "blocks", "."); the WordPiece
  decoder joins with spaces and glues punctuation back on, so text round-trips. The model's text
  has no newlines (whitespace is a separator, not a token).
- Deterministic: it depends on `corpus.vocabulary()` only, not on how many lines are generated.
"""

from __future__ import annotations

from nanovllm.teaching import corpus
from nanovllm.teaching.hf_format import CHAT_TEMPLATE, ENDOFTEXT, IM_END, IM_START

UNK = "<|unk|>"
SPECIALS = (ENDOFTEXT, IM_START, IM_END, UNK)  # ids 0, 1, 2, 3
WORD = r"\w+(?:'\w+)*|[^\w\s]"  # a word (with its inner apostrophes), or one punctuation mark


def build_tokenizer(model_max_length: int):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(WORD), "isolated")]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    trainer = trainers.WordLevelTrainer(special_tokens=list(SPECIALS), show_progress=False)
    tok.train_from_iterator([corpus.vocabulary()], trainer=trainer)
    assert [tok.token_to_id(t) for t in SPECIALS] == [0, 1, 2, 3]
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=ENDOFTEXT,
        pad_token=ENDOFTEXT,
        unk_token=UNK,
        additional_special_tokens=[IM_START, IM_END],
        clean_up_tokenization_spaces=False,
        model_max_length=model_max_length,
        chat_template=CHAT_TEMPLATE,
    )
