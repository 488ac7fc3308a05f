"""The byte-level BPE tokenizer: deterministic, the fine-tuning special tokens, saved with the model."""

from __future__ import annotations

from transformers import AutoTokenizer, PreTrainedTokenizerFast

from spdf_lib.data.corpora import load_corpus
from spdf_lib.tokenizer import EOS, PAD, SEP, load_tokenizer, tokenizer_fingerprint, train_tokenizer


def test_training_is_deterministic_for_a_corpus_and_seed():
    docs = load_corpus("shakespeare").train
    a = train_tokenizer(docs, 600, seed=1, max_chars=200_000)
    b = train_tokenizer(docs, 600, seed=1, max_chars=200_000)
    c = train_tokenizer(docs, 600, seed=2, max_chars=200_000)  # another seeded sample of the plays
    assert tokenizer_fingerprint(a) == tokenizer_fingerprint(b) != tokenizer_fingerprint(c)
    assert len(a) == 600


def test_special_tokens_round_trip_and_save_with_the_model(tmp_path):
    tok = train_tokenizer(load_corpus("tinyshakespeare").train, 400, max_chars=100_000)
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert (tok.eos_token, tok.bos_token, tok.pad_token, tok.sep_token) == (EOS, EOS, PAD, SEP)
    ids = tok("name[The Vaults] | eatType[pub]" + SEP + "The Vaults is a pub." + EOS)["input_ids"]
    assert tok.sep_token_id in ids and ids[-1] == tok.eos_token_id
    assert tok.decode(tok("Ünïcödé — bytes!")["input_ids"]) == "Ünïcödé — bytes!"  # byte-level: nothing is unknown
    tok.save_pretrained(tmp_path)
    for loaded in (load_tokenizer(tmp_path), AutoTokenizer.from_pretrained(tmp_path)):
        assert tokenizer_fingerprint(loaded) == tokenizer_fingerprint(tok) and loaded.sep_token == SEP


def test_a_foreign_tokenizer_gets_the_fine_tuning_specials_after_its_own_ids():
    """GPT-2's tokenizer.json has only <|endoftext|>: <|pad|> and <|sep|> are appended (ids 50257, 50258 there)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from spdf_lib.tokenizer import PAD, SEP, tokenizer_from_json

    bare = Tokenizer(models.WordLevel({"<|endoftext|>": 0, "a": 1, "b": 2, "[UNK]": 3}, unk_token="[UNK]"))
    bare.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = tokenizer_from_json(bare.to_str())
    assert len(tok) == 6 and tok.convert_tokens_to_ids([PAD, SEP]) == [4, 5]
    assert tok("a b")["input_ids"] == [1, 2] and tok.eos_token_id == 0 and tok.pad_token_id == 4
