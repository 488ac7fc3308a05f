"""Batched greedy/beam decoding over HF generate(), on a nano GPT briefly fine-tuned on E2E dev pairs.

A briefly trained model (not a random one) makes outputs end at EOS and have varied lengths, and its peaked
next-token distributions keep float rounding from flipping an argmax between padded and unpadded runs.
"""

from __future__ import annotations

import pytest
import torch

from spdf_lib.data.encoding import encode_examples, encode_prompt
from spdf_lib.data.streams import PairData
from spdf_lib.data.tasks import load_split
from spdf_lib.decoding import DecodeConfig, config_dict, generate, generate_ids
from spdf_lib.modeling_gpt import GPTForCausalLM, gpt_config
from spdf_lib.tokenizer import EOS, train_tokenizer
from spdf_lib.train import TrainConfig, train


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # On a shared 2-core machine, torch's 2 OpenMP threads spin against other processes: a nano model's
    # training went from ~3 s to ~60 s under load. One thread is as fast here and robust to load.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def examples(mirror):
    return load_split("e2e", "dev")


@pytest.fixture(scope="module")
def trained(examples):
    """(model, tokenizer): nano GPT, 40 steps on 200 E2E dev MRs (~3 s on one CPU core)."""
    tok = train_tokenizer([e.source for e in examples] + [r for e in examples for r in e.references], 1024)
    pairs = encode_examples(tok, examples[:200], max_len=MAX_LEN)
    torch.manual_seed(0)
    model = GPTForCausalLM(gpt_config("nano", vocab_size=len(tok), n_positions=160, bos_token_id=tok.eos_token_id,
                                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
    train(model, PairData(pairs, pairs[:16], tok.pad_token_id, MAX_LEN),
          TrainConfig(max_steps=40, batch_size=16, lr=1e-2, warmup_steps=5, precision="fp32", device="cpu",
                      progress=False))
    return model.eval(), tok


@pytest.fixture(scope="module")
def sources(examples):
    # Held-out MRs of different lengths (1 to 8 attributes), so batches need padding.
    held_out = examples[200:]
    picked = sorted(held_out, key=lambda e: len(e.source))[:: len(held_out) // 7]
    return [e.source for e in picked][:8]


MAX_LEN = 128  # the fine-tuning max_len: decoding builds its prompts with the same cut
BEAM = dict(num_beams=3, length_penalty=0.8, no_repeat_ngram_size=3)


def _manual_greedy(model, prompt: list[int], eos: int, max_new_tokens: int) -> list[int]:
    """Greedy decoding by hand: the whole sequence through the model at every step, no cache, argmax."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(max_new_tokens):
            nxt = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            if nxt == eos:
                break
            ids.append(nxt)
    return ids[len(prompt):]


def test_greedy_equals_a_manual_argmax_loop(trained, sources):
    model, tok = trained
    eos = tok.convert_tokens_to_ids(EOS)
    prompts = [encode_prompt(tok, s, MAX_LEN) for s in sources[:6]]
    cfg = DecodeConfig(max_new_tokens=32, batch_size=4)
    got = generate_ids(model, prompts, cfg, tok.pad_token_id, eos)
    want = [_manual_greedy(model, p, eos, 32) for p in prompts]
    assert got == want
    assert any(0 < len(g) < 32 for g in got), "outputs should stop at EOS before max_new_tokens"


@pytest.mark.parametrize("settings", [dict(), BEAM], ids=["greedy", "beam3"])
def test_batched_equals_one_at_a_time(trained, sources, settings):
    model, tok = trained
    batched = generate(
        model, tok, sources, max_len=MAX_LEN, config=DecodeConfig(max_new_tokens=32, batch_size=4, **settings)
    )
    alone = [generate(model, tok, [s], DecodeConfig(max_new_tokens=32, batch_size=1, **settings))[0] for s in sources]
    assert batched == alone
    assert len(set(batched)) > 1 and all(batched), batched


def test_deterministic_order_preserving_and_mode_restoring(trained, sources):
    model, tok = trained
    cfg = DecodeConfig(max_new_tokens=24, batch_size=3, **BEAM)
    first = generate(model, tok, sources, cfg)
    model.train()
    assert generate(model, tok, sources, cfg) == first
    assert model.training, "generate must give the model back in the mode it had"
    model.eval()
    assert generate(model, tok, sources[::-1], cfg, max_len=MAX_LEN) == first[::-1]


def test_beam_settings_change_the_output(trained, sources):
    model, tok = trained
    greedy = generate(model, tok, sources, max_len=MAX_LEN, config=DecodeConfig(max_new_tokens=32))
    beam = generate(model, tok, sources, max_len=MAX_LEN, config=DecodeConfig(max_new_tokens=32, **BEAM))
    assert greedy != beam
    # no_repeat_ngram_size=3: no word trigram twice (token trigrams are what is enforced; words are coarser)
    eos = tok.convert_tokens_to_ids(EOS)
    ids = generate_ids(
        model,
        [encode_prompt(tok, s, MAX_LEN) for s in sources],
        DecodeConfig(max_new_tokens=32, **BEAM),
        tok.pad_token_id,
        eos,
    )
    for seq in ids:
        grams = [tuple(seq[i:i + 3]) for i in range(len(seq) - 2)]
        assert len(grams) == len(set(grams))


def test_max_new_tokens_and_prompt_stripping(trained, sources):
    model, tok = trained
    eos = tok.convert_tokens_to_ids(EOS)
    prompts = [encode_prompt(tok, s, MAX_LEN) for s in sources]
    ids = generate_ids(model, prompts, DecodeConfig(max_new_tokens=5, batch_size=4), tok.pad_token_id, eos)
    assert all(0 < len(x) <= 5 and eos not in x and tok.pad_token_id not in x for x in ids)
    full = generate_ids(model, prompts, DecodeConfig(max_new_tokens=32, batch_size=4), tok.pad_token_id, eos)
    assert all(f[: len(x)] == x for f, x in zip(full, ids, strict=True))
    texts = generate(model, tok, sources, max_len=MAX_LEN, config=DecodeConfig(max_new_tokens=32, batch_size=4))
    assert texts == [tok.decode(x, clean_up_tokenization_spaces=False).strip() for x in full]
    assert not any("|" in t or "[" in t for t in texts), "the prompt (the MR) must not be in the output"


def test_decoding_prompts_are_the_training_prompts(trained):
    """A source too long for max_len is cut the same way for fine-tuning and for decoding."""
    from spdf_lib.data.encoding import encode_pair

    model, tok = trained
    long_source = " | ".join(f"name[Place number {i}]" for i in range(100))
    for max_len in (64, MAX_LEN):
        prompt, _ = encode_pair(tok, long_source, "A reference.", max_len)
        assert prompt == encode_prompt(tok, long_source, max_len) and len(prompt) == max_len // 2
        ids = generate_ids(model, [prompt], DecodeConfig(max_new_tokens=20), tok.pad_token_id, tok.eos_token_id)
        text = tok.decode(ids[0], skip_special_tokens=True, clean_up_tokenization_spaces=False).strip()
        assert generate(model, tok, [long_source], DecodeConfig(max_new_tokens=20), max_len=max_len) == [text]
    with pytest.raises(ValueError, match="exceeds the model's n_positions=160"):
        generate_ids(model, [encode_prompt(tok, long_source, 1000)], DecodeConfig(max_new_tokens=20),
                     tok.pad_token_id, tok.eos_token_id)


def test_bad_settings_fail_before_decoding(trained):
    model, tok = trained
    for kwargs, match in [(dict(num_beams=0), "num_beams=0"), (dict(max_new_tokens=0), "max_new_tokens=0"),
                          (dict(batch_size=0), "batch_size=0"), (dict(no_repeat_ngram_size=-1), "no_repeat")]:
        with pytest.raises(ValueError, match=match):
            DecodeConfig(**kwargs)
    with pytest.raises(ValueError, match="no sources"):
        generate(model, tok, [])
    with pytest.raises(ValueError, match="exceeds the model.s n_positions"):
        generate(model, tok, ["name[A]"], DecodeConfig(max_new_tokens=160))
    assert config_dict(DecodeConfig(num_beams=5)) == dict(num_beams=5, length_penalty=1.0, no_repeat_ngram_size=0,
                                                          max_new_tokens=64, batch_size=32)


def test_primer_model_decodes_batched_like_alone(trained, sources):
    """MDHA keeps pre-convolution projections in the cache; left padding must not leak into them."""
    _, tok = trained
    torch.manual_seed(1)
    # A larger init spreads the logits so that the random model's argmax is not decided by rounding noise.
    model = GPTForCausalLM(gpt_config("nano", vocab_size=len(tok), n_positions=160, mdha=True, activation="relu2",
                                      initializer_range=0.2)).eval()
    cfg = DecodeConfig(max_new_tokens=10, batch_size=4)
    batched = generate(model, tok, sources[:6], cfg)
    assert batched == [generate(model, tok, [s], cfg)[0] for s in sources[:6]]


def test_no_repeat_rule_lets_the_output_copy_from_its_prompt():
    """The rule is about the output: an n-gram of the prompt may be copied (an entity name, a placeholder), an
    n-gram the output already wrote may not (Hugging Face's own rule, over the whole sequence, forbids both)."""
    from transformers.generation.logits_process import NoRepeatNGramLogitsProcessor

    from spdf_lib.decoding import NoRepeatNGramInOutput

    scores = torch.zeros(1, 10)
    copying = torch.tensor([[5, 6, 7, 8, 9, 5, 6, 7]])  # prompt 5 6 7 8 9, output so far 5 6 7: next 8 copies
    assert torch.isinf(NoRepeatNGramLogitsProcessor(4)(copying, scores.clone())[0, 8])
    assert not torch.isinf(NoRepeatNGramInOutput(4, prompt_len=5)(copying, scores.clone())).any()
    looping = torch.tensor([[5, 6, 7, 1, 2, 3, 1, 2]])  # prompt 5 6 7, output 1 2 3 1 2: next 3 repeats a trigram
    banned = torch.isinf(NoRepeatNGramInOutput(3, prompt_len=3)(looping, scores.clone())[0])
    assert banned.tolist() == [i == 3 for i in range(10)]
