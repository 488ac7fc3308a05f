"""The full exam study (every scorable question, `cf`, no sample) through the `completions` backend against a
local OpenAI-compatible completions server (`tests/api_server.py`, its own process, log-probs computed by a
tiny kit GPT in float32 on the CPU), at concurrency 1 (baseline) and the default 4 (candidate), same server,
same run. Then a resume: the candidate's run folder re-run, which must send no request (the manifest's
`requests_asked`). `SPDF_BENCH_SAMPLE=N` scores a seeded sample of N questions instead of all of them.

The server computes one request at a time (one model, a lock), as a CPU server does; a batching GPU server
(vLLM) gains more from concurrency than this measures. The tiny model keeps the server's compute small, so the
numbers are mostly the kit's request path: HTTP, JSON, the pool, the store.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_exams_lmeval import use_mirror
from bench.common import Result

ROOT = Path(__file__).resolve().parents[1]


def _model(folder: Path) -> None:
    import torch

    from spdf_lib.exams.parse import load_questions
    from spdf_lib.exams.prompts import loglik_prompt
    from spdf_lib.modeling_gpt import GPTForCausalLM, gpt_config
    from spdf_lib.tokenizer import train_tokenizer

    qs, _ = load_questions()
    tok = train_tokenizer([loglik_prompt(q) for q in qs if q.scored][:1500], vocab_size=600)
    torch.manual_seed(0)
    cfg = gpt_config("nano", n_embd=32, n_head=4, vocab_size=len(tok), n_positions=2048,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    GPTForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)


def _exam(url: str, run_dir: Path, concurrency: int) -> tuple[float, dict]:
    from spdf_lib.exams.params import ExamParams
    from spdf_lib.exams.run import run_exam

    os.environ["OPENAI_BASE_URL"] = url
    t0 = time.perf_counter()
    sample = int(os.environ.get("SPDF_BENCH_SAMPLE", "0"))
    res = run_exam(ExamParams(backend="completions", model="tiny", formulation="cf", concurrency=concurrency,
                              sample=sample, limit=0), run_dir, progress=False)
    seconds = time.perf_counter() - t0
    return seconds, {**res, **json.loads((run_dir / "manifest.json").read_text())["info"]}


def run() -> list[Result]:
    use_mirror()
    tmp = Path(tempfile.mkdtemp(prefix="bench-served-"))
    _model(tmp / "model")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "api_server.py"), str(tmp / "model"), str(port)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        server.stdout.readline()  # "serving ..."
        url = f"http://127.0.0.1:{port}/v1"
        t1, one = _exam(url, tmp / "c1", 1)
        t4, four = _exam(url, tmp / "c4", 4)
        t_resume, again = _exam(url, tmp / "c4", 4)
    finally:
        server.terminate()
        server.wait()
    same = one["accuracy"] == four["accuracy"] == again["accuracy"]
    n = int(one["questions"])
    return [Result("full study via completions (cf)", "concurrency 1", n / t1, "concurrency 4", n / t4, "q/s", True,
                   note=f"{n} questions, {four['requests_asked']} requests; c1 {t1:.0f} s, c4 {t4:.0f} s; same "
                        f"accuracy: {same}"),
            Result("resume of the finished c4 run", "first run", t4, "re-run", t_resume, "s", False,
                   note=f"re-run asked {again['requests_asked']} requests, reused {again['requests_reused']}")]
