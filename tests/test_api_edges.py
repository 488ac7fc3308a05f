"""Served models at their edges (issue 31, items 3 and 8): secrets never printed or written, an empty or
malformed reply is one line naming the endpoint, `--timeout`/`--retries`, Ctrl-C during a hanging request, and
an unreadable weights file. Every API case runs against a real HTTP server on 127.0.0.1 (`tests/api_server`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from api_server import ApiServer, chat_reply, echo_500

from spdf_lib.exams.api import ApiLM

ROOT = Path(__file__).resolve().parents[1]
HI = [[{"role": "user", "content": "hi"}]]


def _spdf(args: list[str], env: dict, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "spdf_lib.cli", *args], cwd=ROOT, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _files_text(folder: Path) -> str:
    return "\n".join(f.read_text(errors="ignore") for f in folder.rglob("*") if f.is_file())


def test_scrub_removes_user_info_query_key_headers_and_the_environments_key(monkeypatch):
    from spdf_lib.scrub import scrub

    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-7781")
    monkeypatch.setenv("MY_GATEWAY_TOKEN", "tok-5512")
    text = ("POST http://alice:pw-9913@h.example:8443/v1/chat?api-key=q-3310&x=1 failed; "
            "{'Authorization': 'Bearer sk-env-7781', 'api-key': 'h-4420', 'X-Api-Key': 'h-4421'} "
            "proxy said authorization=Basic YWxpY2U6cHc= and tok-5512")
    out = scrub(text)
    for secret in ("pw-9913", "alice", "q-3310", "sk-env-7781", "h-4420", "h-4421", "YWxpY2U6cHc", "tok-5512"):
        assert secret not in out, (secret, out)
    assert "http://h.example:8443/v1/chat failed" in out  # the endpoint stays readable
    assert scrub("lr must be > 0; key: value") == "lr must be > 0; key: value"  # ordinary errors are untouched


def test_secrets_in_the_key_url_and_an_echoing_error_body_reach_no_output_and_no_file(tmp_path):
    secrets = {"OPENAI_API_KEY": "sk-key-sentinel-1", "user": "pw-sentinel-2", "query": "q-sentinel-3"}
    with ApiServer(echo_500) as s:
        url = s.url.replace("http://", f"http://bob:{secrets['user']}@") + f"?api-key={secrets['query']}"
        proc = _spdf(["exam", "--backend", "api", "--model", "m", "--mode", "generate", "--limit", "4",
                      "--run-dir", str(tmp_path / "run")],
                     {"OPENAI_BASE_URL": url, "OPENAI_API_KEY": secrets["OPENAI_API_KEY"]})
        out, err = proc.communicate(timeout=120)
        echoed = json.dumps(s.requests)
    assert proc.returncode == 2, err
    assert any(v in echoed for v in secrets.values())  # the server did receive (and echo) secrets
    lines = err.strip().splitlines()
    assert lines[-1].startswith(f"spdf exam: error: chat API at {s.url} (model 'm'): ") and "500" in lines[-1]
    files = _files_text(tmp_path / "run")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "chat API at" in manifest["reason"]
    for where, text in {"stdout": out, "stderr": err, "run folder": files}.items():
        for name, secret in secrets.items():
            assert secret not in text, (name, where)


@pytest.mark.parametrize("reply, says", [
    ((200, {}, {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}),
     "the reply has no choices"),
    ((200, {"Content-Type": "text/html"}, b"<html>gateway</html>"), "the reply is not JSON"),
    ((200, {}, b"{not json"), "the reply is not JSON"),
])
def test_an_empty_or_malformed_reply_is_one_line_naming_the_endpoint(reply, says):
    with ApiServer(lambda h, b: reply) as s, pytest.raises(RuntimeError) as e:
        ApiLM("m", base_url=s.url + "?api-key=q-sentinel-4").generate(HI)
    line = str(e.value)
    assert line.startswith(f"chat API at {s.url} (model 'm'): {says}") and "\n" not in line
    assert "q-sentinel-4" not in line


def test_timeout_and_retries_are_honoured():
    with ApiServer(lambda h, b: "hang") as s:
        t0 = time.monotonic()
        with pytest.raises(RuntimeError, match=r"no reply within 0\.5 s \(after 2 tries; raise --retries"):
            ApiLM("m", base_url=s.url, timeout=0.5, retries=1).generate(HI)
        assert time.monotonic() - t0 < 5 and len(s.requests) == 2
    calls = iter([(503, {"Retry-After": "0"}, {}), (500, {}, {}), (200, {}, chat_reply("B"))])
    with ApiServer(lambda h, b: next(calls)) as s:
        lm = ApiLM("m", base_url=s.url, retries=2)
        assert lm.generate(HI) == ["B"] and len(s.requests) == 3
        assert dict(lm.stats.retries) == {"503": 1, "500": 1}


def test_ctrl_c_interrupts_a_hanging_request_at_once_and_the_run_ends_interrupted(tmp_path):
    with ApiServer(lambda h, b: "hang") as s:
        proc = _spdf(["exam", "--backend", "api", "--model", "m", "--mode", "generate", "--limit", "4",
                      "--run-dir", str(tmp_path / "run")],
                     {"OPENAI_BASE_URL": s.url, "OPENAI_API_KEY": "sk-x"})
        deadline = time.monotonic() + 90
        while not s.requests and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert s.requests, proc.communicate()[1]
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        waited = time.monotonic() - t0
    assert proc.returncode == 130 and waited < 5, (waited, err)
    assert "interrupted" in err.strip().splitlines()[-1]
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["status"] == "interrupted"


def test_an_unreadable_weights_file_is_the_same_one_line_as_fine_tuning(tmp_path, capsys):
    from conftest import tiny_model

    from spdf_lib.checkpoints import verify_model_folder
    from spdf_lib.cli import main
    from spdf_lib.errors import CorruptFileError

    tiny_model().save_pretrained(tmp_path / "model")
    weights = tmp_path / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    capsys.readouterr()
    with pytest.raises(CorruptFileError) as e:  # what spdf_finetune's checkpoint check says
        verify_model_folder(tmp_path / "model")
    assert main(["exam", "--model", str(tmp_path / "model"), "--limit", "4", "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"spdf exam: error: {e.value}" and err[0].startswith("run folder: ") and len(err) == 2


def test_notebook_error_lines_and_settled_reasons_are_scrubbed(tmp_path, monkeypatch):
    import io

    from papermill.exceptions import PapermillExecutionError

    from spdf_lib.notebooks import notebook_error, settle

    monkeypatch.setenv("OPENAI_API_KEY", "sk-nb-sentinel-5")
    said = "chat API at http://u:pw-nb-6@h/v1?key=q-nb-7: echoed Authorization: Bearer sk-nb-sentinel-5"
    for ename in ("RuntimeError", "SomeBug"):
        e = PapermillExecutionError(0, 1, "x", ename, said, [said])
        stream = io.StringIO()
        line = str(notebook_error(e, tmp_path / "nb.ipynb", stream))
        (tmp_path / "manifest.json").write_text(json.dumps({"status": "running"}))
        settle(tmp_path, "failed", line)
        for text in (line, stream.getvalue(), (tmp_path / "manifest.json").read_text()):
            for secret in ("sk-nb-sentinel-5", "pw-nb-6", "q-nb-7"):
                assert secret not in text
        assert "chat API at http://h/v1" in line
