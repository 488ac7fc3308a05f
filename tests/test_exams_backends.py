"""Exam backends end to end on tiny locally built models: log-likelihood scoring, greedy generation, a real
OpenAI-compatible server (`transformers serve` on 127.0.0.1), run records, the CLI and the notebook."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from spdf_lib.exams.api import ApiLM
from spdf_lib.exams.backends import LocalLM
from spdf_lib.exams.extract import REASONS
from spdf_lib.exams.params import ExamParams
from spdf_lib.exams.parse import load_questions
from spdf_lib.exams.prompts import SYSTEM, chat_messages, loglik_prompt, plain_prompt
from spdf_lib.exams.scoring import ScoreOptions, score
from spdf_lib.params import ParamsError, validate
from spdf_lib.records import read_table

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def questions(mirror):
    qs, _ = load_questions()
    return qs


@pytest.fixture(scope="module")
def short_questions(questions):
    """Scored questions of 4 short certifications (whole certifications, so passes mean something)."""
    by_cert: dict[str, list] = {}
    for q in questions:
        if q.scored:
            by_cert.setdefault(q.certification, []).append(q)
    short = [c for c, qs in sorted(by_cert.items()) if len(qs) == 4 and all(len(loglik_prompt(q)) < 400 for q in qs)]
    return [q for c in short[:4] for q in by_cert[c]]


def _tokenizer(questions):
    from spdf_lib.tokenizer import train_tokenizer

    tok = train_tokenizer([loglik_prompt(q) for q in questions if q.scored][:1500], vocab_size=600)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHAT_TEMPLATE
    return tok


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory, questions):
    """A randomly initialised 2-layer Llama with a BPE tokenizer that has a chat template."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _tokenizer(questions)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # larger logits than the default init, so greedy replies vary from token to token
        model.lm_head.weight.normal_(0, 0.5)
    d = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def gpt_dir(tmp_path_factory, questions):
    """The kit's own GPT (save_pretrained + tokenizer), as a trained checkpoint would be saved."""
    from spdf_lib.modeling_gpt import GPTForCausalLM, gpt_config

    tok = _tokenizer(questions)
    torch.manual_seed(0)
    cfg = gpt_config("nano", vocab_size=len(tok), n_positions=2048, bos_token_id=tok.bos_token_id,
                     eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    d = tmp_path_factory.mktemp("tiny-gpt")
    GPTForCausalLM(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, gpt_dir):
    """The kit's GPT with a tokenizer that has no chat template: a base model."""
    d = tmp_path_factory.mktemp("tiny-base")
    shutil.copytree(gpt_dir, d, dirs_exist_ok=True)
    (d / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    assert not LocalLM.load(str(d), dtype="float32").has_chat_template
    return d


def _reference_logprobs(lm: LocalLM, prompt: str, n: int) -> list[float]:
    """log P(" X" | prompt) the slow way: one unpadded forward of prompt + letter per letter."""
    out = []
    for k in range(n):
        ctx, cont = lm.encode_pair(prompt, " " + "ABCDEFGHIJ"[k])
        ids = torch.tensor([ctx + cont])
        with torch.no_grad():
            logits = lm.model(input_ids=ids).logits[0].float()
        lp = torch.log_softmax(logits[len(ctx) - 1 : -1], -1)
        out.append(float(sum(lp[i, t] for i, t in enumerate(cont))))
    return out


@pytest.mark.parametrize("which", ["llama_dir", "gpt_dir"])
def test_batched_single_pass_scores_equal_one_forward_per_letter(which, request, short_questions):
    lm = LocalLM.load(str(request.getfixturevalue(which)), dtype="float32")
    prompts = [loglik_prompt(q) for q in short_questions]
    n = [len(q.options) for q in short_questions]
    batched = lm.letter_logprobs(prompts, n, batch_tokens=512)  # several length-bucketed, padded batches
    for p, k, got in zip(prompts, n, batched, strict=True):
        assert got == pytest.approx(_reference_logprobs(lm, p, k), abs=2e-4)


def test_scoring_records_and_circular_eval(llama_dir, short_questions):
    lm = LocalLM.load(str(llama_dir), dtype="float32")
    recs = score(lm, short_questions, ScoreOptions(mode="loglik", circular=True))
    assert len(recs) == len(short_questions)
    for r, q in zip(recs, short_questions, strict=True):
        assert r["qid"] == q.qid and r["options"] == list(q.options) and len(r["letter_logprobs"]) == len(q.options)
        assert len(r["rotation_choices"]) == len(q.options)
        assert r["choice"] == r["rotation_choices"][0]
        assert r["circular_correct"] == all(c == r["key"] for c in r["rotation_choices"])
        assert r["correct"] == (r["choice"] == r["key"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(llama_dir):
    """`transformers serve` pinned to the tiny Llama on 127.0.0.1; shut down after the tests."""
    port = _free_port()
    exe = Path(sys.executable).with_name("transformers")
    log = open(llama_dir / "serve.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [str(exe), "serve", str(llama_dir), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
         "--dtype", "float32"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"transformers serve did not start: {(llama_dir / 'serve.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield f"{url}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_api_backend_answers_like_the_local_backend(server, llama_dir, short_questions, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", server)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")
    qs = short_questions[:6]
    chats = [chat_messages(q, len(q.key)) for q in qs]
    local = LocalLM.load(str(llama_dir), dtype="float32").generate(chats, max_new_tokens=12)
    api = ApiLM(str(llama_dir)).generate(chats, max_new_tokens=12)
    assert api == local
    assert len({*local}) > 1  # the replies differ between questions: the comparison is not vacuous


def test_run_exam_through_the_api_keeps_the_key_out_of_records(server, llama_dir, short_questions, tmp_path,
                                                               monkeypatch):
    from spdf_lib.exams.run import run_exam

    secret = "sk-sentinel-4f1c9e"
    monkeypatch.setenv("OPENAI_BASE_URL", server)
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    certs = sorted({q.certification for q in short_questions})[:2]
    common = dict(model=str(llama_dir), mode="generate", circular=False, certifications=certs, max_new_tokens=8)
    api = run_exam(ExamParams(backend="api", **common), tmp_path / "api")
    local = run_exam(ExamParams(backend="local", dtype="float32", **common), tmp_path / "local")
    assert api["accuracy"] == local["accuracy"] and api["pass_share"] == local["pass_share"]
    a = [json.loads(x) for x in (tmp_path / "api" / "records.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "local" / "records.jsonl").read_text().splitlines()]
    assert [r["reply"] for r in a] == [r["reply"] for r in b]
    assert [r["extraction"] for r in a] == [r["extraction"] for r in b]
    for f in (tmp_path / "api").iterdir():
        assert secret not in f.read_text(errors="ignore"), f.name
    # the records say how each run ran: endpoint (never the key), prompt format, the exact prompts
    info = json.loads((tmp_path / "api" / "manifest.json").read_text())["info"]
    assert info["backend"] == "api" and info["base_url"] == server and info["prompt_format"] == "chat"
    assert info["system_prompt"] == SYSTEM and isinstance(info["torch_threads"], int)
    assert json.loads(a[0]["prompt"])[0] == {"role": "system", "content": SYSTEM}
    local_info = json.loads((tmp_path / "local" / "manifest.json").read_text())
    assert local_info["info"]["device"] == "cpu" and local_info["info"]["dtype"] == "float32"
    assert local_info["info"]["torch_threads"] == torch.get_num_threads() == local_info["device"]["torch_threads"]
    assert "base_url" not in local_info["info"]
    lm = LocalLM.load(str(llama_dir), dtype="float32")
    q = {x.qid: x for x in short_questions}[b[0]["qid"]]
    assert b[0]["prompt"] == lm.render(chat_messages(q, len(q.key))) and "<|im_start|>system" in b[0]["prompt"]


def test_generation_uses_a_plain_prompt_for_a_base_model(base_dir, short_questions, tmp_path):
    from spdf_lib.exams.run import run_exam

    certs = sorted({q.certification for q in short_questions})[:1]
    common = dict(model=str(base_dir), dtype="float32", mode="generate", circular=True, certifications=certs,
                  max_new_tokens=4)
    res = run_exam(ExamParams(**common), tmp_path / "auto", progress=False)
    info = json.loads((tmp_path / "auto" / "manifest.json").read_text())["info"]
    assert info["prompt_format"] == "plain" and info["system_prompt"] is None
    records = read_table(tmp_path / "auto", "records")
    by_qid = {q.qid: q for q in short_questions}
    for r in records.itertuples():
        q = by_qid[r.qid]
        assert r.prompt == plain_prompt(q, len(q.key)) and r.prompt_format == "plain"
        assert len(r.rotation_replies) == len(q.options) and set(r.rotation_extractions) <= set(REASONS)
    assert 0 <= res["unanswered_share"] <= 1
    with pytest.raises(ValueError, match="has no chat template: set prompt_format=plain"):
        run_exam(ExamParams(**common, prompt_format="chat"), tmp_path / "chat", progress=False)


def test_run_exam_writes_records_tables_and_results(llama_dir, short_questions, tmp_path):
    from spdf_lib.exams.run import run_exam

    certs = sorted({q.certification for q in short_questions})
    p = ExamParams(model=str(llama_dir), dtype="float32", certifications=certs, formulation="mcf")
    res = run_exam(p, tmp_path)
    for f in ["manifest.json", "results.json", "records.parquet", "records.jsonl", "certifications.csv",
              "headline.csv", "letters.csv", "data_report.json"]:
        assert (tmp_path / f).is_file(), f
    assert res["questions"] == len(short_questions) and res["certifications"] == len(certs)
    for key in ["accuracy", "pass_share", "circular_pass_share", "baseline_random_pass_share",
                "baseline_majority_per_cert_pass_share", "letter_bias_tvd"]:
        assert 0 <= res[key] <= 1, key
    assert any(k.startswith("pass_share_") for k in res)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == pytest.approx(res)
    report = json.loads((tmp_path / "data_report.json").read_text())
    assert report["rows_loaded"] == 6137 and report["selected_questions"] == len(short_questions)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["data"] and manifest["status"] == "ok"


def test_cli_prints_the_headline_table(gpt_dir, tmp_path, capsys):
    from spdf_lib.exams.cli import register

    ap = argparse.ArgumentParser(prog="spdf")
    register(ap.add_subparsers(dest="command"))
    args = ap.parse_args(["exam", "--model", str(gpt_dir), "--limit", "8", "--dtype", "float32",
                          "--formulation", "mcf", "--run-dir", str(tmp_path / "mcf")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "formulation mcf (letters)" in out and "PriDe" in out
    assert "all certifications" in out and "random" in out and "pass(circ)" in out and "pass(PriDe)" in out
    assert (tmp_path / "mcf" / "headline.csv").is_file() and (tmp_path / "mcf" / "pride_prior.csv").is_file()
    args = ap.parse_args(["exam", "--model", str(gpt_dir), "--limit", "8", "--dtype", "float32", "--norm", "token",
                          "--run-dir", str(tmp_path / "cf")])  # the default formulation of a local model: cf
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "formulation cf (cloze, norm token)" in out and "longest" in out and "overlap" in out
    assert "pass(circ)" not in out and "always-X" not in out


def test_cli_scores_a_questions_file_and_says_when_certifications_are_split(gpt_dir, short_questions, tmp_path,
                                                                          capsys):
    from spdf_lib.exams.cli import register

    rows = [int(q.qid) for q in short_questions[:6]]  # one whole certification (4) and half of the next
    (tmp_path / "rows.txt").write_text("".join(f"{r}\n" for r in rows))
    ap = argparse.ArgumentParser(prog="spdf")
    register(ap.add_subparsers(dest="command"))
    args = ap.parse_args(["exam", "--model", str(gpt_dir), "--questions", str(tmp_path / "rows.txt"), "--dtype",
                          "float32", "--no-circular", "--formulation", "mcf", "--run-dir", str(tmp_path / "run")])
    assert args.func(args) == 0
    out, err = capsys.readouterr()
    assert "note: the selection splits 1 of its 2 certifications" in out
    assert "pass shares are over the 1 whole certification only (4 questions)" in out
    assert "strict single letter" in out and "as many letters as the key" in out and "total variation" in out
    assert "scoring" in err and "q/s" in err  # the progress bar
    records = read_table(tmp_path / "run", "records")
    assert [int(x) for x in records["qid"]] == rows
    certs = read_table(tmp_path / "run", "certifications")
    assert certs["whole"].tolist() == [True, False]


def test_bad_input_fails_early_with_one_line(tmp_path, monkeypatch):
    with pytest.raises(ParamsError, match="backend api can only generate: set mode=generate"):
        validate(ExamParams, {"backend": "api", "mode": "loglik"})
    with pytest.raises(ParamsError, match="pass_threshold"):
        validate(ExamParams, {"pass_threshold": 1.5})
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match=r"\$OPENAI_BASE_URL"):
        ApiLM("some-model")
    with pytest.raises(FileNotFoundError, match="not a folder with config.json"):
        LocalLM.load(str(tmp_path / "nowhere"))
    closed = f"http://127.0.0.1:{_free_port()}/v1"  # nothing listens there
    with pytest.raises(RuntimeError, match=r"chat API at http://127\.0\.0\.1:\d+/v1 \(model 'm'\)"):
        ApiLM("m", base_url=closed, timeout=5).generate([[{"role": "user", "content": "hi"}]])


def test_an_unreachable_api_stops_the_bar_where_it_was(short_questions, capsys):
    closed = f"http://127.0.0.1:{_free_port()}/v1"
    with pytest.raises(RuntimeError, match="chat API at"):
        score(ApiLM("m", base_url=closed, timeout=5), short_questions[:3], ScoreOptions(mode="generate", progress=True))
    bar = capsys.readouterr().err.replace("\r", "\n").splitlines()[-1]
    assert "0/3" in bar and "100%" not in bar, bar


def test_an_unreachable_api_ends_the_exam_run_failed_without_the_key(short_questions, tmp_path, monkeypatch):
    # the exam runs outside experiments.run (spdf exam): its manifest must not say `running` after the error
    from spdf_lib.exams.run import run_exam

    secret = "sk-sentinel-unreachable-77"
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{_free_port()}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    certs = sorted({q.certification for q in short_questions})[:1]
    with pytest.raises(RuntimeError, match="chat API at"):
        run_exam(ExamParams(backend="api", model="m", mode="generate", circular=False, certifications=certs),
                 tmp_path, progress=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "chat API at" in manifest["reason"]
    for f in tmp_path.iterdir():
        assert secret not in f.read_text(errors="ignore"), f.name


def test_notebook_runs_on_a_local_model(llama_dir, tmp_path):
    from spdf_lib.notebooks import run_notebook

    out = run_notebook("exams", overrides={"model": str(llama_dir), "dtype": "float32", "limit": 8},
                       run_dir=tmp_path)
    for fig in ["pass_share_by_field", "score_distribution", "letter_bias"]:
        assert (out / "figures" / f"{fig}.png").is_file()
    assert json.loads((out / "results.json").read_text())["questions"] > 0


# --- cloze scoring: shared prefixes, normalisations, formulations ------------------------------------------


@pytest.mark.parametrize("which", ["llama_dir", "gpt_dir"])
def test_shared_prefix_scores_equal_unshared_ones(which, request, questions):
    """One pass over the context, its KV cache repeated for the n options, equals one pass per option (fp32)."""
    from spdf_lib.exams.cloze import UNCONDITIONAL, cloze_context, continuations

    lm = LocalLM.load(str(request.getfixturevalue(which)), dtype="float32")
    qs = [q for q in questions if q.scored and len(cloze_context(q)) < 600][:12]
    requests = [(cloze_context(q), continuations(q)) for q in qs] + [(UNCONDITIONAL, continuations(qs[0]))]
    shared = lm.option_logliks(requests)
    unshared = lm.option_logliks(requests, shared=False)
    assert sum(n > 1 for r in shared for _, n in r) > 20  # multi-token continuations exercise the cached batch
    for a, b in zip(shared, unshared, strict=True):
        assert [n for _, n in a] == [n for _, n in b]
        assert [s for s, _ in a] == pytest.approx([s for s, _ in b], abs=1e-4)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_passes_of_several_questions_score_as_one_pass_per_option(llama_dir, questions, attn):
    """The Llama takes the packed path: several questions in one batch of packed rows (context, then every option
    less its last token, under a 4-D mask), equal to one pass per (context + option) in float32, with either
    attention (SDPA takes the boolean mask, eager an additive one), one pass per question or several."""
    from spdf_lib.exams.cloze import cloze_context, continuations

    lm = LocalLM.load(str(llama_dir), dtype="float32")
    lm.model.set_attn_implementation(attn)
    assert lm._packs
    qs = [q for q in questions if q.scored and len(cloze_context(q)) < 600][:16]
    requests = [(cloze_context(q), continuations(q)) for q in qs]
    requests[3] = (requests[3][0], [*requests[3][1], requests[3][1][0]])  # an option twice: an exact tie
    unshared = lm.option_logliks(requests, shared=False)
    for budget, per_pass in ((1, {1}), (400, set(range(2, len(qs)))), (4096, {len(qs)})):  # one, a few, all
        passes: list[list[int]] = []
        packed = lm.option_logliks(requests, batch_tokens=budget, progress=passes.append)
        assert sorted(i for p in passes for i in p) == list(range(len(requests)))
        assert max(map(len, passes)) in per_pass
        assert packed[3][0] == packed[3][-1]
        for a, b in zip(packed, unshared, strict=True):
            assert [n for _, n in a] == [n for _, n in b]
            assert [s for s, _ in a] == pytest.approx([s for s, _ in b], abs=1e-4)


def test_a_short_context_window_scores_every_question_in_it(gpt_dir, questions):
    """The kit's 64-token smoke GPT on the longest cloze prompts and options: the context keeps its last tokens,
    shared by all options, an option longer than the window its head; shared equals unshared."""
    from spdf_lib.exams.cloze import cloze_context, continuations

    lm = LocalLM.load(str(gpt_dir), dtype="float32")
    lm.max_length = 64
    qs = sorted((q for q in questions if q.scored), key=lambda q: -len(cloze_context(q)) - sum(map(len, q.options)))
    requests = [(cloze_context(q), continuations(q)) for q in qs[:6]]
    for context, conts in requests:
        ctx, ids = lm.encode_request(context, conts)
        assert ctx and all(ids) and len(ctx) + max(map(len, ids)) <= 64
        assert ctx == lm.tokenizer(context.rstrip())["input_ids"][-len(ctx):]
    shared, unshared = lm.option_logliks(requests), lm.option_logliks(requests, shared=False)
    assert max(n for r in shared for _, n in r) == 63  # an option of more than 63 tokens kept its head
    for a, b in zip(shared, unshared, strict=True):
        assert [s for s, _ in a] == pytest.approx([s for s, _ in b], abs=1e-4)


def _hand_loglik(lm: LocalLM, context: str, continuation: str) -> tuple[float, int]:
    """Sum of the continuation's per-token log-probabilities from one forward over the whole text."""
    ctx, cont = lm.encode_pair(context, continuation)
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([ctx + cont])).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    return sum(float(lp[len(ctx) - 1 + i, t]) for i, t in enumerate(cont)), len(cont)


@pytest.mark.parametrize("norm", ["none", "char", "token", "pmi"])
def test_cloze_scores_equal_a_hand_computation(llama_dir, questions, norm):
    from spdf_lib.exams.cloze import UNCONDITIONAL, cloze_context

    lm = LocalLM.load(str(llama_dir), dtype="float32")
    qs = [q for q in questions if q.scored and not q.stem.startswith(" ")][:5]
    recs = score(lm, qs, ScoreOptions(formulation="cf", norm=norm, progress=False))
    for r, q in zip(recs, qs, strict=True):
        assert r["prompt"] == f"Question: {q.stem.strip()}\nAnswer:" or r["scored_as"] == "hybrid"
        for i, text in enumerate(q.options):
            ll, n = _hand_loglik(lm, r["prompt"] if r["scored_as"] == "cf" else cloze_context(q), " " + text)
            if r["scored_as"] != "cf":
                continue
            want = {"none": ll, "char": ll / len(text), "token": ll / n,
                    "pmi": ll - _hand_loglik(lm, UNCONDITIONAL, " " + text)[0]}[norm]
            assert r["option_scores"][i] == pytest.approx(want, abs=2e-4 if norm == "pmi" else 1e-4)  # pmi: two
        best = sorted(range(len(q.options)), key=lambda i: (-r["option_scores"][i], i))[: r["n_answers"]]
        assert r["choice"] == "".join(sorted("ABCDEFGHIJ"[i] for i in best))
        assert r["correct"] == (r["choice"] == r["key"]) and r["norm"] == norm and r["formulation"] == "cf"


def test_cloze_scores_options_that_name_others_in_hybrid_and_k_best_for_multi_keys(llama_dir, questions):
    from spdf_lib.exams.cloze import option_references

    lm = LocalLM.load(str(llama_dir), dtype="float32")
    naming = [q for q in questions if q.scored and option_references(q)][:2]
    multi = [q for q in questions if q.scored and len(q.key) > 1 and not option_references(q)][:2]
    recs = score(lm, naming + multi, ScoreOptions(formulation="cf", progress=False))
    for r, q in zip(recs, naming + multi, strict=True):
        if q in naming:
            assert r["scored_as"] == "hybrid" and "names other options" in r["formulation_reason"]
            assert r["prompt"] == loglik_prompt(q)  # the options shown, as in mcf
        else:
            assert r["scored_as"] == "cf" and r["formulation_reason"] is None
            assert len(r["choice"]) == len(q.key) == r["n_answers"]


def test_run_exam_records_the_formulation_and_puts_cloze_baselines_beside_the_model(llama_dir, short_questions,
                                                                                    tmp_path):
    from spdf_lib.exams.run import run_exam

    certs = sorted({q.certification for q in short_questions})[:2]
    res = run_exam(ExamParams(model=str(llama_dir), dtype="float32", certifications=certs), tmp_path / "cf",
                   progress=False)
    manifest = json.loads((tmp_path / "cf" / "manifest.json").read_text())
    assert manifest["params"]["formulation"] == "auto" and manifest["info"]["formulation"] == "cf"
    assert manifest["info"]["norm"] == "char"
    baselines = read_table(tmp_path / "cf", "baselines")
    assert list(baselines["name"]) == ["correct", "random", "longest", "shortest", "overlap"]
    assert (baselines["accuracy_lo"] <= baselines["accuracy"]).all()
    assert (baselines["accuracy"] <= baselines["accuracy_hi"]).all()
    for key in ("accuracy", "accuracy_lo", "pass_share_hi", "baseline_longest_accuracy", "baseline_overlap_pass_share"):
        assert key in res

    best = run_exam(ExamParams(model=str(llama_dir), dtype="float32", certifications=certs, formulation="best",
                               circular=False), tmp_path / "best", progress=False)
    assert {"accuracy_cf", "accuracy_mcf", "pride_accuracy_mcf", "pride_prior_4_A_mcf"} <= set(best)
    chosen = "cf" if best["best_formulation_is_cf"] else "mcf"
    assert best["accuracy"] == best[f"accuracy_{chosen}"] == max(best["accuracy_cf"], best["accuracy_mcf"])
    assert "always_A" in set(read_table(tmp_path / "best", "baselines_mcf")["name"])
    assert "longest" in set(read_table(tmp_path / "best", "baselines_cf")["name"])


def test_generation_or_an_api_keeps_letters():
    assert ExamParams(mode="generate").resolved_formulation == "mcf"
    assert ExamParams(backend="api", mode="generate").resolved_formulation == "mcf"
    assert ExamParams().resolved_formulation == "cf"
    with pytest.raises(ValueError, match="formulation cf scores option log-likelihoods"):
        ExamParams(formulation="cf", mode="generate")


def test_the_exported_lmeval_task_loads_in_lmeval_and_gives_the_kits_predictions(llama_dir, questions, tmp_path):
    """`spdf exam --export-lmeval`: lm-eval (the bench lock's `lm_eval`; skipped where only the base lock is
    installed) loads both tasks, renders the kit's prompts and picks the kit's options on 20 questions."""
    pytest.importorskip("lm_eval")
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from spdf_lib.exams.cli import register
    from spdf_lib.exams.cloze import cloze_context, option_references

    single = [q for q in questions if q.scored and len(q.key) == 1 and len(loglik_prompt(q)) < 700]
    naming = [q for q in single if option_references(q)][:2]  # scored with the options shown, in both
    chosen = sorted(naming + [q for q in single if not option_references(q)][:18], key=lambda q: q.qid)
    rows = tmp_path / "rows.txt"
    rows.write_text("".join(f"{int(q.qid)}\n" for q in chosen))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["exam", "--questions", str(rows), "--export-lmeval", str(tmp_path / "task")])
    assert args.func(args) == 0

    lm = LocalLM.load(str(llama_dir), dtype="float32")
    kit = {
        norm: score(lm, chosen, ScoreOptions(formulation="cf", norm=norm, progress=False)) for norm in ("none", "char")
    }
    kit["mcf"] = score(lm, chosen, ScoreOptions(formulation="mcf", progress=False))
    hf = HFLM(pretrained=str(llama_dir), dtype="float32", batch_size=4, device="cpu")
    out = simple_evaluate(model=hf, tasks=["spdf_certify_cf", "spdf_certify_mcf"], log_samples=True,
                          task_manager=TaskManager(include_path=str(tmp_path / "task")))
    cf, mcf = out["samples"]["spdf_certify_cf"], out["samples"]["spdf_certify_mcf"]
    assert len(cf) == len(mcf) == 20
    by_row = {int(q.qid): q for q in chosen}
    for s in cf:
        q = by_row[s["doc"]["row"]]
        assert s["arguments"][0][0] == (loglik_prompt(q) if q in naming else cloze_context(q))
        lls = [r[0] for r in s["filtered_resps"]]
        i = chosen.index(q)
        for norm, scores in (("none", lls), ("char", [x / len(o) for x, o in zip(lls, q.options, strict=True)])):
            pick = max(range(len(scores)), key=lambda k, s=scores: (s[k], -k))  # lm-eval's acc / acc_norm
            assert "ABCDEFGHIJ"[pick] == kit[norm][i]["choice"], (norm, q.qid)
    for s in mcf:
        q = by_row[s["doc"]["row"]]
        assert s["arguments"][0][0] == loglik_prompt(q)
        lls = [r[0] for r in s["filtered_resps"]]
        assert "ABCDEFGHIJ"[max(range(len(lls)), key=lambda k: (lls[k], -k))] == kit["mcf"][chosen.index(q)]["choice"]
    acc = sum(r["correct"] for r in kit["none"]) / 20
    assert out["results"]["spdf_certify_cf"]["acc,none"] == pytest.approx(acc)
