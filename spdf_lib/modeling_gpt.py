"""The kit's GPT: one model family for SPDF and Primer, as a Hugging Face `PreTrainedModel`.

A GPT-2/GPT-3 style decoder (learned positions, pre-LayerNorm, GELU, biases, tied input/output embeddings),
written to be read like nanoGPT's `model.py`. Each projection is its own `nn.Linear`, so the six matrices SPDF
sparsifies (Q, K, V, attention output, FFN in, FFN out) are separately addressable by name:

    transformer.h.{i}.attn.{q_proj,k_proj,v_proj,o_proj}.weight
    transformer.h.{i}.mlp.{fc_in,fc_out}.weight

Two options implement Primer-EZ (So et al. 2021, arXiv 2109.08668, §3 "Primer-EZ"):
- `activation="relu2"`: squared ReLU in the FFN (`SquaredReLU`);
- `mdha=True`: multi-dconv-head attention, a causal depthwise convolution along the sequence after each of the
  Q, K and V projections (`MultiDConvHead`).

Static sparse masks (SPDF, Thangarasa et al. 2023, §3) are carried here as boolean `<name>_mask` buffers of the
Linear modules named in `config.sparse_params`, with a gradient hook that zeroes masked gradients. Which
elements are masked is decided in `spdf_lib.sparsity`; this file only makes a saved sparse model load and train
as one. The file imports nothing from `spdf_lib`, so `save_pretrained` can ship it next to the weights for
`trust_remote_code` users (lm-eval, `transformers serve`): that is why it is one file of about 500 lines, config
and model together, rather than split like the rest of the kit.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer, DynamicSlidingWindowLayer
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import CausalLMOutputWithPast

MODEL_TYPE = "spdf_gpt"


class GPTConfig(PretrainedConfig):
    """Configuration of `GPTForCausalLM`.

    Args:
        vocab_size: tokens in the vocabulary.
        n_positions: maximum sequence length (learned position embeddings).
        n_embd: model width d.
        n_layer: number of Transformer blocks.
        n_head: attention heads (d must be divisible by it).
        n_inner: FFN width; default 4·d.
        activation: `"gelu"` (GPT-2/3) or `"relu2"` (Primer's squared ReLU).
        mdha: Primer's multi-dconv-head attention after the Q, K, V projections.
        mdha_kernel: width of that causal depthwise convolution (the paper uses 3).
        dropout: dropout on embeddings, attention output and FFN output (0 in the SPDF recipe).
        initializer_range: std of the normal init (output projections get std / sqrt(2·n_layer)).
        sparse_params: names of the weights that carry a static sparsity mask (set by `spdf_lib.sparsity`).
        sparsity: the nominal sparsity those masks were drawn at (informational; the masks are the truth).
    """

    model_type = MODEL_TYPE
    attribute_map = {
        "hidden_size": "n_embd",
        "num_hidden_layers": "n_layer",
        "num_attention_heads": "n_head",
        "max_position_embeddings": "n_positions",
        "intermediate_size": "n_inner",
    }

    def __init__(
        self,
        vocab_size: int = 50257,
        n_positions: int = 1024,
        n_embd: int = 768,
        n_layer: int = 12,
        n_head: int = 12,
        n_inner: int | None = None,
        activation: str = "gelu",
        mdha: bool = False,
        mdha_kernel: int = 3,
        dropout: float = 0.0,
        layer_norm_epsilon: float = 1e-5,
        initializer_range: float = 0.02,
        sparse_params: list[str] | None = None,
        sparsity: float = 0.0,
        bos_token_id: int | None = None,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
        tie_word_embeddings: bool = True,
        **kwargs,
    ):
        if n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} is not divisible by n_head={n_head}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r}; choose one of {sorted(ACTIVATIONS)}")
        if mdha_kernel < 1:
            raise ValueError(f"mdha_kernel={mdha_kernel} must be >= 1")
        self.vocab_size = vocab_size
        self.n_positions = n_positions
        self.n_embd = n_embd
        self.n_layer = n_layer
        self.n_head = n_head
        self.n_inner = n_inner if n_inner is not None else 4 * n_embd
        self.activation = activation
        self.mdha = mdha
        self.mdha_kernel = mdha_kernel
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range
        self.sparse_params = list(sparse_params or [])
        self.sparsity = sparsity
        super().__init__(
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )


# --- Primer: squared ReLU (So et al. 2021, §3, "Squared ReLU") ---------------------------------------------


class SquaredReLU(nn.Module):
    """y = max(x, 0)². Same FFN width as the GELU baseline, no parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.square(F.relu(x))


ACTIVATIONS = {"gelu": lambda: nn.GELU(approximate="tanh"), "relu2": SquaredReLU}


# --- Primer: multi-dconv-head attention (So et al. 2021, §3, "Multi-DConv-Head Attention") -----------------


class MultiDConvHead(nn.Module):
    """Causal depthwise convolution along the sequence, one width-k kernel per channel, no bias.

    It acts on the concatenated projections [Q | K | V] (3·d channels: rows 0..d-1 of `weight` are Q's kernels,
    then K's, then V's), so channel c (= projection, head, head-dim) at position t becomes
    sum_i w[c, i] · x[c, t - (k-1) + i]: it mixes positions t, t-1, …, t-k+1, zero-padded on the past side only.
    With a KV cache, the last k-1 *pre-convolution* projections are all the convolution needs from the past.
    """

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.kernel = kernel
        self.weight = nn.Parameter(torch.empty(channels, 1, kernel))  # Conv1d depthwise layout (C, 1, k)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        # Official Primer init: the current-token tap 0.5, each past tap 0.5/k (0.5/3 for k = 3).
        self.weight.fill_(0.5 / self.kernel)
        self.weight[..., -1] = 0.5

    def forward(self, x: torch.Tensor, past: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T, C) new positions; past: (B, P, C) pre-convolution values before them (P <= k-1)."""
        T = x.shape[1]
        if past is not None and past.shape[1]:
            x = torch.cat([past, x], dim=1)
        x = F.pad(x, (0, 0, self.kernel - 1 - (x.shape[1] - T), 0))  # zero-pad the past up to k-1 positions
        # The same depthwise convolution as conv1d over (B, C, T), run as conv2d on a channels-last view of the
        # (B, T, C) activations: no transposed copies in or out, and about 4x faster than conv1d on CPU.
        y = F.conv2d(x.permute(0, 2, 1).unsqueeze(2), self.weight.unsqueeze(2), groups=x.shape[2])  # (B, C, 1, T)
        return y.squeeze(2).transpose(1, 2)  # (B, T, C), channel-minor in memory as attention wants


# --- the Transformer --------------------------------------------------------------------------------------


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        d = config.n_embd
        self.layer_idx = layer_idx
        self.n_layer = config.n_layer
        self.n_head = config.n_head
        self.head_dim = d // config.n_head
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.o_proj = nn.Linear(d, d)
        self.o_proj.residual_out = True  # scaled init, see GPTPreTrainedModel._init_weights
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)
        self.mdha = MultiDConvHead(3 * d, config.mdha_kernel) if config.mdha else None
        self.config = config

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None,
        cache: Cache | None,
        token_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        B, T, C = x.shape  # batch, new positions, n_embd
        # Q, K and V in one GEMM; the three weights stay separate parameters (masks, FLOPs, names).
        w = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])  # (3C, C)
        b = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
        qkv = F.linear(x, w, b)  # (B, T, 3C)
        if self.mdha is not None:
            if token_mask is not None:  # padding must look like the convolution's zero padding
                qkv = qkv * token_mask
            past = None
            if cache is not None and self.mdha.kernel > 1:  # a width-1 kernel needs no past positions
                # The pre-convolution Q|K|V of the last k-1 positions live in a sliding-window cache layer
                # (as its "keys" Q|K and "values" V), so beam search reorders them with the KV cache.
                conv_layer = self.n_layer + self.layer_idx
                n_past = cache.layers[conv_layer].keys.shape[2] if cache.layers[conv_layer].is_initialized else 0
                full_qk, full_v = cache.update(qkv[:, None, :, : 2 * C], qkv[:, None, :, 2 * C :], conv_layer)
                past = torch.cat([full_qk, full_v], -1)[:, 0, :n_past]
            qkv = self.mdha(qkv, past)
        q, k, v = qkv.split(C, dim=-1)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
        k = k.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)  # (B, nh, S, hd), S = past + T
        dropout_p = self.dropout if self.training else 0.0
        is_causal = attn_mask is None and k.shape[2] == T
        if self.config._attn_implementation == "eager":
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))  # (B, nh, T, S)
            if is_causal:
                attn_mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            if attn_mask is not None:
                att = att.masked_fill(~attn_mask, float("-inf"))
            att = F.dropout(F.softmax(att, dim=-1), p=dropout_p, training=self.training)
            y = att @ v  # (B, nh, T, hd)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal
            )
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_dropout(self.o_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.fc_in = nn.Linear(config.n_embd, config.n_inner)
        self.act = ACTIVATIONS[config.activation]()
        self.fc_out = nn.Linear(config.n_inner, config.n_embd)
        self.fc_out.residual_out = True
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc_out(self.act(self.fc_in(x))))


class Block(GradientCheckpointingLayer):
    """Pre-LayerNorm Transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x, attn_mask, cache, token_mask):
        x = x + self.attn(self.ln_1(x), attn_mask, cache, token_mask)
        return x + self.mlp(self.ln_2(x))


class GPTPreTrainedModel(PreTrainedModel):
    config_class = GPTConfig
    config: GPTConfig
    base_model_prefix = "transformer"
    _no_split_modules = ["Block"]
    _supports_sdpa = True
    _supports_attention_backend = False
    supports_gradient_checkpointing = True  # Blocks recompute their activations in backward when enabled

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)  # normal(0, 0.02) for Linear/Embedding, zero biases, unit LayerNorm
        if getattr(module, "residual_out", False) and not getattr(module.weight, "_is_hf_initialized", False):
            # GPT-2 scaled init of the residual output projections: std 0.02 / sqrt(2 · n_layer).
            std = self.config.initializer_range / math.sqrt(2 * self.config.n_layer)
            nn.init.normal_(module.weight, mean=0.0, std=std)
        if isinstance(module, MultiDConvHead) and not getattr(module.weight, "_is_hf_initialized", False):
            module.reset_parameters()


def _zero_masked_grad(module: nn.Module, buffer: str):
    # torch.where, not multiplication, as the reference implementation does: a NaN/inf gradient at a masked
    # position must not leak into the update. The mask is looked up at call time, so a buffer replaced by
    # `from_pretrained` or `load_state_dict` is the one applied.
    def hook(grad: torch.Tensor) -> torch.Tensor:
        return torch.where(module._buffers[buffer], grad, torch.zeros((), dtype=grad.dtype, device=grad.device))

    return hook


class GPTForCausalLM(GPTPreTrainedModel, GenerationMixin):
    """GPT language model with a tied LM head. `forward` returns logits (and the mean LM loss with `labels`)."""

    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.n_positions, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # weight name -> (id of the hooked Parameter, hook handle); see `_sync_mask_hooks`
        self._mask_hooks: dict[str, tuple[int, torch.utils.hooks.RemovableHandle]] = {}
        for name in config.sparse_params:
            self.attach_mask(name, torch.ones_like(self.get_parameter(name), dtype=torch.bool))
        self.post_init()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, except that a checkpoint whose weights or sparsity masks are missing
        or do not fit the configuration is an error (transformers would re-initialise them with a warning)."""
        want_info = kwargs.pop("output_loading_info", False)
        kwargs.setdefault("ignore_mismatched_sizes", True)  # checked below, with a one-line message
        model, info = super().from_pretrained(pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs)
        problems = [f"{_key(k)} has another shape in the checkpoint" for k in sorted(info["mismatched_keys"], key=str)]
        problems += [f"{k} is missing from the checkpoint" for k in sorted(info["missing_keys"])]
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ValueError(f"{pretrained_model_name_or_path}: {problems[0]}{more}; the weights do not fit the "
                             f"checkpoint's config.json")
        return (model, info) if want_info else model

    # --- static sparsity masks (the values are chosen by spdf_lib.sparsity) -------------------------------

    def attach_mask(self, name: str, mask: torch.Tensor) -> None:
        """Give weight `name` the boolean `mask` (True = kept): a `<name>_mask` buffer saved in the state dict
        and a gradient hook that zeroes masked gradients. Zeroing the weight is the caller's job."""
        module_name, _, param_name = name.rpartition(".")
        module = self.get_submodule(module_name)
        weight = getattr(module, param_name)
        if mask.shape != weight.shape or mask.dtype != torch.bool:
            raise ValueError(f"mask for {name} has shape {tuple(mask.shape)}/{mask.dtype}, "
                             f"weight {tuple(weight.shape)}")
        buf = f"{param_name}_mask"
        if buf in module._buffers:
            module._buffers[buf].copy_(mask)
        else:
            module.register_buffer(buf, mask.clone())
        if name not in self.config.sparse_params:
            self.config.sparse_params = [*self.config.sparse_params, name]
        self._sync_mask_hooks()

    def _sync_mask_hooks(self) -> None:
        """Make sure every masked weight's *current* Parameter carries the gradient hook. Loading a checkpoint
        (`from_pretrained` materialises new Parameters) would otherwise leave the hook on a discarded tensor."""
        for name in self.config.sparse_params:
            module_name, _, param_name = name.rpartition(".")
            module = self.get_submodule(module_name)
            weight = getattr(module, param_name)
            hooked = self._mask_hooks.get(name)
            if hooked is None or hooked[0] != id(weight):
                if hooked is not None:
                    hooked[1].remove()
                hook = weight.register_hook(_zero_masked_grad(module, f"{param_name}_mask"))
                self._mask_hooks[name] = (id(weight), hook)

    def detach_mask(self, name: str) -> None:
        """Drop the mask of weight `name`: its pruned (zero) entries are free to learn again."""
        module_name, _, param_name = name.rpartition(".")
        del self.get_submodule(module_name)._buffers[f"{param_name}_mask"]
        self._mask_hooks.pop(name)[1].remove()
        self.config.sparse_params = [p for p in self.config.sparse_params if p != name]

    def masks(self) -> dict[str, torch.Tensor]:
        """{weight name: boolean mask} for every masked weight."""
        out = {}
        for name in self.config.sparse_params:
            module_name, _, param_name = name.rpartition(".")
            out[name] = self.get_submodule(module_name)._buffers[f"{param_name}_mask"]
        return out

    # --- forward ------------------------------------------------------------------------------------------

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.transformer.wte = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def _conv_cache(self, cache: Cache) -> Cache:
        # MDHA keeps its k-1 pre-convolution positions in sliding-window layers n_layer..2·n_layer-1 of the same
        # cache, so that beam search reorders and crops them together with the keys and values.
        if self.config.mdha and self.config.mdha_kernel > 1 and len(cache.layers) < 2 * self.config.n_layer:
            while len(cache.layers) < self.config.n_layer:
                cache.layers.append(DynamicLayer())
            cache.layers.extend(
                DynamicSlidingWindowLayer(sliding_window=self.config.mdha_kernel) for _ in range(self.config.n_layer)
            )
        return cache

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        past_key_values: Cache | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Args:
        input_ids: (B, T) token ids of the new positions.
        attention_mask: (B, S) with 1 for real and 0 for padding tokens, S = cached + T positions.
        position_ids: (B, T); default: positions after the cache (or counted from the attention mask).
        cache: a `DynamicCache` of past keys/values (created when `use_cache` and none is given).
        labels: (B, T) targets, -100 ignored; shifted inside, so `labels = input_ids` trains next-token prediction.
        """
        cache = cache if cache is not None else past_key_values
        if self.config.sparse_params and torch.is_grad_enabled():
            self._sync_mask_hooks()
        B, T = input_ids.shape
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        if cache is not None:
            cache = self._conv_cache(cache)
        n_past = cache.get_seq_length() if cache is not None else 0
        if n_past + T > self.config.n_positions:
            raise ValueError(f"sequence length {n_past + T} exceeds n_positions={self.config.n_positions}")
        if position_ids is None:
            if attention_mask is not None:
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -T:]
            else:
                position_ids = torch.arange(n_past, n_past + T, device=input_ids.device).unsqueeze(0)

        attn_mask = token_mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            # (B, 1, T, S) boolean: causal within the sequence, padded keys hidden.
            S = n_past + T
            causal = torch.ones(T, S, dtype=torch.bool, device=input_ids.device).tril(n_past)
            attn_mask = causal[None, None] & attention_mask[:, None, None, :].bool()
            attn_mask = attn_mask | ~attn_mask.any(-1, keepdim=True)  # fully padded query rows: avoid NaN
            token_mask = attention_mask[:, -T:, None].to(self.dtype)
        elif n_past and T > 1:
            attn_mask = torch.ones(T, n_past + T, dtype=torch.bool, device=input_ids.device).tril(n_past)
        # else: no mask; causal when there is no past, and a single new query may see every cached key.

        x = self.transformer.drop(self.transformer.wte(input_ids) + self.transformer.wpe(position_ids))
        for block in self.transformer.h:
            x = block(x, attn_mask, cache, token_mask)
        x = self.transformer.ln_f(x)
        if logits_to_keep:
            x = x[:, -logits_to_keep:]
        logits = self.lm_head(x)  # (B, T, vocab)

        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1), ignore_index=-100
            )
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=cache if use_cache else None)


def _key(k) -> str:
    return k[0] if isinstance(k, tuple) else str(k)


# Named sizes. CPU sizes keep FFN = 4·d and head dim >= 16; paper sizes follow the SPDF paper (§4).
NAMED_CONFIGS: dict[str, dict] = {
    "nano": dict(n_layer=2, n_embd=64, n_head=4, n_positions=256),
    "micro": dict(n_layer=4, n_embd=128, n_head=4, n_positions=256),
    "mini": dict(n_layer=4, n_embd=256, n_head=4, n_positions=512),
    "small": dict(n_layer=6, n_embd=384, n_head=6, n_positions=512),
    "gpt2-small": dict(n_layer=12, n_embd=768, n_head=12, n_inner=3072, n_positions=1024, vocab_size=50257),
    "gpt2-small-2048": dict(n_layer=12, n_embd=768, n_head=12, n_inner=3072, n_positions=2048, vocab_size=50257),
    "gpt3-xl": dict(n_layer=24, n_embd=2048, n_head=16, n_inner=8192, n_positions=2048, vocab_size=50257),
}


def architecture_name(config: dict) -> str:
    """`gpt`, `relu2`, `mdha` or `primer-ez` for a model config (as a dict, e.g. a saved config.json)."""
    relu2, mdha = config.get("activation") == "relu2", bool(config.get("mdha"))
    names = {(False, False): "gpt", (True, False): "relu2", (False, True): "mdha", (True, True): "primer-ez"}
    return names[relu2, mdha]


def gpt_config(name: str, **overrides) -> GPTConfig:
    """A `GPTConfig` for a named size (`nano`, `micro`, `mini`, `small`, `gpt2-small`, `gpt2-small-2048`,
    `gpt3-xl`), with any field overridden (e.g. `vocab_size`, `n_positions`, `activation`, `mdha`)."""
    if name not in NAMED_CONFIGS:
        raise ValueError(f"unknown model size {name!r}; choose one of {', '.join(NAMED_CONFIGS)}")
    return GPTConfig(**{**NAMED_CONFIGS[name], **overrides})


# With spdf_lib imported, the Auto classes know the model type. Without it (lm-eval, `transformers serve`),
# `save_pretrained` ships this file and an `auto_map`, so `trust_remote_code=True` loads the same code.
AutoConfig.register(MODEL_TYPE, GPTConfig, exist_ok=True)
AutoModelForCausalLM.register(GPTConfig, GPTForCausalLM, exist_ok=True)
GPTConfig.register_for_auto_class()
GPTForCausalLM.register_for_auto_class("AutoModelForCausalLM")
