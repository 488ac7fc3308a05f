"""The exam study against served models (issue 35): concurrent, polite, resumable requests, counted at a real
HTTP server on 127.0.0.1 (`tests/api_server`)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from api_server import ApiServer, chat_reply, save_tiny_exam_model

from spdf_lib.exams.params import ExamParams

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-served-sentinel-9"


def _letter(body: dict) -> str:
    """A deterministic answer per prompt (so that records can be compared), varied across prompts."""
    text = json.dumps(body.get("messages"), sort_keys=True)
    return "ABCD"[hashlib.sha256(text.encode()).digest()[0] % 4]


def answering(delay: float = 0.0, script=None):
    """A chat server's behaviour: `script(n)` may override the n-th request's answer (0-based)."""
    count = iter(range(1 << 30))
    lock = threading.Lock()

    def behaviour(handler, body):
        with lock:
            n = next(count)
        if script and (answer := script(n)) is not None:
            return answer
        if delay:
            time.sleep(random.Random(n).random() * delay)  # replies arrive out of order
        return 200, {}, chat_reply(_letter(body))

    return behaviour


def _exam(tmp_path, name, **kw):
    from spdf_lib.exams.run import run_exam

    p = ExamParams(backend="api", model="m", mode="generate", circular=False, limit=12, **kw)
    res = run_exam(p, tmp_path / name, progress=False)
    return res, (tmp_path / name / "records.jsonl").read_text()


def test_concurrency_gives_the_records_of_a_serial_run(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with ApiServer(answering(delay=0.05)) as s:
        monkeypatch.setenv("OPENAI_BASE_URL", s.url)
        serial, a = _exam(tmp_path, "c1", concurrency=1)
        wide, b = _exam(tmp_path, "c8", concurrency=8)
    assert a == b and serial["accuracy"] == wide["accuracy"]
    assert len(s.requests) == 2 * serial["questions"]
    info = json.loads((tmp_path / "c8" / "manifest.json").read_text())["info"]
    assert info["concurrency"] == 8 and info["requests_sent"] == serial["questions"] and info["retries"] == 0


def test_429_and_500_are_retried_honouring_retry_after_and_the_rate(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    faults = {2: (429, {"Retry-After": "1"}, {"error": {"message": "slow down"}}), 5: (500, {}, {}),
              6: (503, {}, {})}
    with ApiServer(answering(script=faults.get)) as s:
        monkeypatch.setenv("OPENAI_BASE_URL", s.url)
        res, _ = _exam(tmp_path, "r", concurrency=4, rpm=300, retries=3)
    times = [r["time"] for r in s.requests]
    in_a_second = max(sum(t <= u < t + 1.0 for u in times) for t in times)
    assert in_a_second <= 6, times  # rpm 300: five starts a second (one more for timing jitter)
    assert min(times[3:]) - times[2] >= 0.9, times  # the 429's Retry-After: 1 held every later request back
    assert len(s.requests) == res["questions"] + 3
    info = json.loads((tmp_path / "r" / "manifest.json").read_text())["info"]
    assert info["retries"] == 3 and info["retry_reasons"] == {"429": 1, "500": 1, "503": 1}
    assert info["rpm"] == 300 and info["base_url"] == s.url


def _spdf(args, env):
    return subprocess.Popen([sys.executable, "-m", "spdf_lib.cli", *args], cwd=ROOT, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_killed_exam_resumes_without_asking_twice_and_ends_with_the_same_tables(tmp_path):
    answered: list[str] = []
    stop_after = 5

    def behaviour(handler, body):
        if len(answered) >= stop_after:
            return "hang"
        answered.append(json.dumps(body["messages"]))
        return 200, {}, chat_reply(_letter(body))

    args = ["exam", "--backend", "api", "--model", "m", "--mode", "generate", "--no-circular", "--limit", "12",
            "--concurrency", "2"]
    with ApiServer(behaviour) as s:
        env = {"OPENAI_BASE_URL": s.url, "OPENAI_API_KEY": KEY}
        proc = _spdf([*args, "--run-dir", str(tmp_path / "run")], env)
        deadline = time.monotonic() + 90
        while len(s.requests) < stop_after + 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        first = len(s.requests)
        stop_after = 10_000
        proc = _spdf([*args, "--run-dir", str(tmp_path / "run")], env)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "resuming: 5 of 12 generate requests answered before are reused; asking 7" in err
        assert len(answered) == len(set(answered)) == 12  # no question answered (paid) twice
        assert len(s.requests) - first == 7
        from spdf_lib.cli import main  # the uninterrupted run, in this process (one interpreter start less)

        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            assert main([*args, "--run-dir", str(tmp_path / "whole")]) == 0
    for table in ("records.jsonl", "headline.csv", "certifications.csv", "results.json"):
        a, b = (tmp_path / "run" / table).read_text(), (tmp_path / "whole" / table).read_text()
        if table == "results.json":
            a, b = ({k: v for k, v in json.loads(x).items() if "second" not in k} for x in (a, b))
        assert a == b, table
    info = json.loads((tmp_path / "run" / "manifest.json").read_text())["info"]
    assert info["requests_reused"] == 5 and info["requests_asked"] == 7
    for text in (out, err, *(f.read_text(errors="ignore") for f in (tmp_path / "run").rglob("*") if f.is_file())):
        assert KEY not in text


def test_another_model_never_reuses_the_stored_replies(tmp_path, monkeypatch):
    from spdf_lib.exams.api import ApiLM
    from spdf_lib.exams.resume import Resumable

    chats = [[{"role": "user", "content": f"q{i}"}] for i in range(3)]
    with ApiServer(answering()) as s:
        Resumable(ApiLM("m", base_url=s.url), tmp_path).generate(chats)
        again = Resumable(ApiLM("m", base_url=s.url), tmp_path)
        again.generate(chats)
        other = Resumable(ApiLM("m2", base_url=s.url), tmp_path)
        other.generate(chats)
        longer = Resumable(ApiLM("m", base_url=s.url), tmp_path)
        longer.generate(chats, max_new_tokens=32)
    assert (again.reused, again.asked) == (3, 0)
    assert (other.reused, other.asked) == (0, 3) and (longer.reused, longer.asked) == (0, 3)
    assert len(s.requests) == 9


@pytest.mark.parametrize("formulation", ["cf", "mcf"])
def test_a_local_exam_resumes_from_its_stored_scores(formulation, tmp_path):
    from spdf_lib.exams.run import run_exam

    save_tiny_exam_model(tmp_path / "model", n_texts=300, vocab_size=300)
    p = ExamParams(model=str(tmp_path / "model"), dtype="float32", limit=12, formulation=formulation,
                   circular=False, pride=False)
    whole = run_exam(p, tmp_path / "whole", progress=False)
    store = tmp_path / "part" / "replies.jsonl"
    run_exam(p, tmp_path / "part", progress=False)
    lines = store.read_text().splitlines()
    store.write_text("\n".join(lines[: len(lines) // 2]) + "\n" + lines[-1][:20])  # half, and a torn line
    part = run_exam(p, tmp_path / "part", progress=False)
    info = json.loads((tmp_path / "part" / "manifest.json").read_text())["info"]
    assert info["requests_reused"] == len(lines) // 2 and info["requests_asked"] == len(lines) - len(lines) // 2
    assert (tmp_path / "part" / "records.jsonl").read_text() == (tmp_path / "whole" / "records.jsonl").read_text()
    assert part["accuracy"] == whole["accuracy"]


def test_the_plan_of_a_chat_exam_counts_its_requests_and_prices_them(tmp_path, monkeypatch):
    import contextlib
    import io

    from spdf_lib.cli import main

    with ApiServer(answering()) as s:
        monkeypatch.setenv("OPENAI_BASE_URL", s.url)
        args = ["exam", "--backend", "api", "--model", "m", "--mode", "generate", "--limit", "12",
                "--concurrency", "4", "--rpm", "600", "--price-in", "1",
                "--price-out", "4"]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main([*args, "--plan", "--latency", "0.1"]) == 0
        assert not s.requests  # nothing is sent for a plan
        assert main([*args, "--run-dir", str(tmp_path / "run")]) == 0
    lines = out.getvalue().splitlines()
    n = len(s.requests)
    assert lines[0].startswith(f"plan: {n:,} requests, ") and f"at most {n * 16:,} completion tokens" in lines[0]
    assert "estimated at 4 characters a token" in lines[0]
    assert f"about {n / 10:.0f} s at concurrency 4, rpm 600, 0.1 s a reply" in lines[1]  # rpm binds: 10 a second
    assert "per million" in lines[1]


def test_spdf_plan_prices_the_exam_stages_of_served_models(tmp_path):
    from spdf_lib.exams.run import plan_exam
    from spdf_lib.sweep_cost import plan_costs

    params = {"backend": "api", "model": "gpt-x", "mode": "generate", "circular": False, "limit": 12,
              "price_in": 1.0, "price_out": 4.0}
    sweep = tmp_path / "served.yaml"
    sweep.write_text("stages:\n  exams:\n    notebook: exams\n    preset: smoke\n    params: "
                     + json.dumps(params) + "\n")
    _, lines = plan_costs(sweep, 8, "h100")
    expected = plan_exam(ExamParams(**{**params, "limit": 12}))
    served = [x for x in lines if x.startswith("exam ")]
    assert len(served) == 2 and f": {expected.requests:,} requests, " in served[0]
    assert f"${expected.cost:,.2f} at $1/$4 per million" in served[1]
