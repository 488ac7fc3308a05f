"""A scripted OpenAI-compatible HTTP server on 127.0.0.1 for the API tests: real sockets, real HTTP, and a
log of every request it received (path, headers, body), so that tests count what reached the server.

`behaviour(handler, body) -> (status, headers, payload)` decides each answer; payload bytes are sent as they
are, anything else as JSON. `hang` makes the server hold a request open without answering."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, dict[str, str], Any]


def chat_reply(text: str) -> dict:
    return {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


class ApiServer:
    """`with ApiServer(behaviour) as s:` serves on `s.url` (`http://127.0.0.1:PORT/v1`); `s.requests` lists
    what arrived (dicts with `path`, `headers`, `body`, `time`)."""

    def __init__(self, behaviour: Callable[[BaseHTTPRequestHandler, dict], Answer | str]):
        self.behaviour = behaviour
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.release = threading.Event()  # set to let hanging requests go
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"raw": raw.decode(errors="replace")}
                with server.lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                            "time": time.monotonic()})
                answer = server.behaviour(self, body)
                if answer == "hang":
                    server.release.wait(60)
                    return
                status, headers, payload = answer
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                headers = {"Content-Type": "application/json", **headers}
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ApiServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def echo_500(handler: BaseHTTPRequestHandler, body: dict) -> Answer:
    """A 500 whose body echoes the request line and headers, as some gateways' error pages do."""
    echoed = f"failed {handler.command} {handler.path} headers {dict(handler.headers)}"
    return 500, {}, {"error": {"message": echoed, "type": "server_error"}}


def completions_behaviour(model_dir) -> Callable:
    """A `/completions` endpoint with echo and logprobs computed by a real model (a save_pretrained folder, in
    float32): every prompt's tokens, their log-probabilities (None for the first) and character offsets, as
    vLLM returns them. Only log-likelihood requests (`echo`, `max_tokens` 0) are served."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import spdf_lib.modeling_gpt  # noqa: F401  (registers the kit's GPT)

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    lock = threading.Lock()

    def one(i: int, prompt: str) -> dict:
        enc = tok(prompt, return_offsets_mapping=True)
        ids = enc["input_ids"]
        with lock, torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0].float()
        lps = torch.log_softmax(logits, -1)
        token_lps = [None] + [float(lps[t - 1, ids[t]]) for t in range(1, len(ids))]
        return {"index": i, "text": prompt, "finish_reason": "length",
                "logprobs": {"tokens": tok.convert_ids_to_tokens(ids), "token_logprobs": token_lps,
                             "text_offset": [s for s, _ in enc["offset_mapping"]], "top_logprobs": None}}

    def behaviour(handler, body: dict) -> Answer:
        if not handler.path.endswith("/completions") or not body.get("echo") or body.get("max_tokens") != 0:
            return 400, {}, {"error": {"message": "this test server only scores echo requests with max_tokens 0"}}
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        return 200, {}, {"id": "c", "object": "text_completion", "created": 0, "model": body["model"],
                         "choices": [one(i, p) for i, p in enumerate(prompts)]}

    return behaviour


def serve_completions(model_dir: str, port: int) -> None:
    """`python tests/api_server.py MODEL_DIR PORT`: the completions server as a process of its own (benches)."""
    s = ApiServer(completions_behaviour(model_dir))
    s.httpd.server_close()
    s.httpd = ThreadingHTTPServer(("127.0.0.1", port), s.httpd.RequestHandlerClass)
    s.httpd.daemon_threads = True
    print(f"serving {model_dir} on http://127.0.0.1:{port}/v1", flush=True)
    s.httpd.serve_forever()


if __name__ == "__main__":
    import sys

    serve_completions(sys.argv[1], int(sys.argv[2]))


def save_tiny_exam_model(folder, n_texts: int = 400, vocab_size: int = 400) -> list:
    """A 32-wide kit GPT with a tokenizer trained on exam prompts, saved into `folder` (what the servers and the
    local backend both load); returns the scorable questions."""
    import torch

    from spdf_lib.exams.parse import load_questions
    from spdf_lib.exams.prompts import loglik_prompt
    from spdf_lib.modeling_gpt import GPTForCausalLM, gpt_config
    from spdf_lib.tokenizer import train_tokenizer

    qs = [q for q in load_questions()[0] if q.scored]
    tok = train_tokenizer([loglik_prompt(q) for q in qs][:n_texts], vocab_size=vocab_size)
    torch.manual_seed(0)
    cfg = gpt_config("nano", n_embd=32, n_head=4, vocab_size=len(tok), n_positions=2048,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    GPTForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return qs
