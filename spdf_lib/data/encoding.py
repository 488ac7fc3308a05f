"""The token format of data-to-text examples, shared by fine-tuning and decoding.

A fine-tuning sequence is prompt + target: prompt = linearised source + `<|sep|>`, target = reference +
`<|endoftext|>`; the loss is on the target only (`spdf_lib.data.streams.PairData`). Generation continues the
prompt, built by the same `encode_prompt`, so a model is evaluated on exactly the prompts it trained on.
"""

from __future__ import annotations

from collections.abc import Sequence

from spdf_lib.data.tasks import Example, training_pairs
from spdf_lib.tokenizer import EOS, SEP


def special_ids(tokenizer) -> tuple[int, int]:
    """(`<|sep|>` id, `<|endoftext|>` id) of `tokenizer`; a clear error if it lacks them."""
    ids = []
    for token in (SEP, EOS):
        i = tokenizer.convert_tokens_to_ids(token)
        if i is None or i == tokenizer.unk_token_id or tokenizer.convert_ids_to_tokens(i) != token:
            raise ValueError(f"the tokenizer has no {token} token; use one from spdf_lib.tokenizer.train_tokenizer")
        ids.append(i)
    return ids[0], ids[1]


def _text_ids(tokenizer, text: str) -> list[int]:
    # split_special_tokens: a literal "<|sep|>" inside the data must not become the separator.
    return tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]


def encode_prompt(tokenizer, source: str, max_len: int) -> list[int]:
    """Token ids of `source + <|sep|>`, the prompt a target follows, for fine-tuning sequences of at most
    `max_len` tokens: the source is cut from the right to half of `max_len` (the separator is always kept).

    Fine-tuning (`encode_pair`) and decoding (`spdf_lib.decoding.generate`) both build prompts here, so a model
    is evaluated on exactly the prompts it was trained on; the cut does not depend on the target, so every
    reference of an input shares one prompt.
    """
    if max_len < 4:
        raise ValueError(f"max_len={max_len} is too short for a source, <|sep|>, a target and <|endoftext|>")
    sep, _ = special_ids(tokenizer)
    return _text_ids(tokenizer, source)[: max_len // 2 - 1] + [sep]


def encode_pair(tokenizer, source: str, target: str, max_len: int) -> tuple[list[int], list[int]]:
    """(prompt ids, target ids) for fine-tuning: prompt = `encode_prompt(source)`, target = `target +
    <|endoftext|>`, the target cut (losing its EOS) when the two exceed `max_len` tokens together."""
    prompt = encode_prompt(tokenizer, source, max_len)
    _, eos = special_ids(tokenizer)
    return prompt, (_text_ids(tokenizer, target) + [eos])[: max_len - len(prompt)]


def encode_examples(tokenizer, examples: Sequence[Example], max_len: int) -> list[tuple[list[int], list[int]]]:
    """`encode_pair` of every (source, reference) pair of `examples`: the input of `spdf_lib.train.PairData`."""
    return [encode_pair(tokenizer, s, t, max_len) for s, t in training_pairs(examples)]
