"""The `completions` backend (issue 35 item 3): log-likelihoods through an OpenAI-compatible completions
endpoint with echo and logprobs, served by a real HTTP server on 127.0.0.1 that computes them with a real model,
against the local backend on the same model."""

from __future__ import annotations

import json

import pytest
from api_server import ApiServer, completions_behaviour, save_tiny_exam_model

from spdf_lib.exams.backends import LocalLM
from spdf_lib.exams.cloze import cloze_context, continuations
from spdf_lib.exams.completions import CompletionsLM
from spdf_lib.exams.params import ExamParams
from spdf_lib.exams.prompts import loglik_prompt


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, mirror):
    d = tmp_path_factory.mktemp("served-gpt")
    return d, save_tiny_exam_model(d)[:20]


@pytest.fixture(scope="module")
def server(model_dir):
    with ApiServer(completions_behaviour(model_dir[0])) as s:
        yield s


def test_completions_logliks_equal_the_local_backends_on_20_questions(model_dir, server):
    folder, qs = model_dir
    local = LocalLM.load(str(folder), dtype="float32")
    served = CompletionsLM("m", base_url=server.url)
    requests = [(cloze_context(q), continuations(q)) for q in qs]
    a, b = local.option_logliks(requests, shared=False), served.option_logliks(requests)
    for x, y in zip(a, b, strict=True):
        assert [n for _, n in x] == [n for _, n in y]  # the server's offsets split where the local tokenizer does
        assert [s for s, _ in x] == pytest.approx([s for s, _ in y], abs=1e-4)
    prompts, n = [loglik_prompt(q) for q in qs], [len(q.options) for q in qs]
    for x, y in zip(served.letter_logprobs(prompts, n), local.letter_logprobs(prompts, n), strict=True):
        assert x == pytest.approx(y, abs=1e-4)
    assert len(server.requests) == 2 * len(qs)  # one request a question


@pytest.mark.parametrize("formulation", ["cf", "hybrid", "mcf"])
def test_an_exam_through_completions_predicts_as_the_local_backend(formulation, model_dir, server, tmp_path,
                                                                   monkeypatch):
    from spdf_lib.exams.run import run_exam

    folder, _ = model_dir
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    common = dict(dtype="float32", limit=12, formulation=formulation, circular=False, pride=False)
    served = run_exam(ExamParams(backend="completions", model="m", concurrency=3, **common), tmp_path / "s",
                      progress=False)
    local = run_exam(ExamParams(model=str(folder), **common), tmp_path / "l", progress=False)
    a = [json.loads(x) for x in (tmp_path / "s" / "records.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "l" / "records.jsonl").read_text().splitlines()]
    assert [r["choice"] for r in a] == [r["choice"] for r in b] and served["accuracy"] == local["accuracy"]
    info = json.loads((tmp_path / "s" / "manifest.json").read_text())["info"]
    assert info["backend"] == "completions" and info["base_url"] == server.url


def test_completions_refuses_generation_and_a_server_without_echo(model_dir, monkeypatch):
    from spdf_lib.params import ParamsError, validate

    with pytest.raises(ParamsError, match="backend completions scores log-likelihoods: set mode=loglik"):
        validate(ExamParams, {"backend": "completions", "mode": "generate"})
    answer = (200, {}, {"id": "c", "object": "text_completion", "created": 0, "model": "m",
                        "choices": [{"index": 0, "text": "x", "finish_reason": "stop", "logprobs": None}]})
    with ApiServer(lambda h, b: answer) as s, pytest.raises(RuntimeError, match=r"completions API at .*does the "
                                                                                  r"server support echo"):
        CompletionsLM("m", base_url=s.url).option_logliks([("Q: x\nAnswer:", [" a", " b"])])


def test_the_plan_counts_what_the_server_then_receives(model_dir, server, tmp_path, monkeypatch, capsys):
    from transformers import AutoTokenizer

    from spdf_lib.exams.run import plan_exam, run_exam

    folder, _ = model_dir
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    p = ExamParams(backend="completions", model="m", limit=12, formulation="best", pride=True,
                   plan_tokenizer=str(folder), price_in=2.0, price_out=8.0, concurrency=2)
    plan = plan_exam(p)
    before = len(server.requests)
    run_exam(p, tmp_path / "run", progress=False)
    got = server.requests[before:]
    tok = AutoTokenizer.from_pretrained(folder)
    assert plan.requests == len(got) and plan.completion_tokens == 0
    assert plan.prompt_tokens == sum(len(tok(x)["input_ids"]) for r in got for x in r["body"]["prompt"])
    assert plan.cost == pytest.approx(plan.prompt_tokens * 2.0 / 1e6)
    err = capsys.readouterr().err
    assert f"plan: {plan.requests:,} requests, {plan.prompt_tokens:,} prompt tokens" in err  # the run's first lines
    assert "counted with the tokenizer of" in err
