"""Where static sparsity masks live on any `nn.Module`, and what keeps masked weights at exactly zero.

A mask is a boolean buffer `<param>_mask` (True = kept) on the module that owns the weight, found again by
`get_masks` from the module tree alone, so it moves with `.to()`, DDP and `accelerate` like the weight. The
kit's GPT (whose config has `sparse_params`) keeps its masks persistent: they are part of its state dict, as
its saved checkpoints always were. On any other model they are non-persistent, so `save_pretrained` writes a
plain dense state dict that stock `from_pretrained` loads, and the masks go to the sidecar `spdf_masks.safetensors`
beside it (`save_masks`/`read_masks`).

Two mechanisms keep the zeros (SPDF, Thangarasa et al. 2023, §3):
- a gradient hook zeroes masked gradients, so gradient clipping sees the sparse model's norm;
- `keep_zeros`, an optimizer step post-hook, re-masks the weights and every optimizer state tensor shaped like
  the weight after each step. This is what makes the zeros hold under any optimizer and loop (HF `Trainer`,
  `accelerate`, torchrun, a state that existed before `sparsify`, a non-element-wise update).
"""

from __future__ import annotations

import json
import weakref
from pathlib import Path

import torch
from torch import nn

SIDECAR = "spdf_masks.safetensors"


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP / accelerate / torch.compile wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def _split(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    module_name, _, param_name = name.rpartition(".")
    return model.get_submodule(module_name), param_name


def _persistent(model: nn.Module) -> bool:
    return hasattr(getattr(model, "config", None), "sparse_params")


def _zero_masked_grad(module: nn.Module, buffer: str):
    # torch.where, not multiplication: a NaN/inf gradient at a masked position must not leak into the update.
    # The mask is looked up at call time, so a buffer replaced by `load_state_dict` is the one applied.
    def hook(grad: torch.Tensor) -> torch.Tensor:
        mask = module._buffers.get(buffer)
        return grad if mask is None else torch.where(mask, grad, torch.zeros((), dtype=grad.dtype, device=grad.device))

    return hook


def sync_grad_hooks(model: nn.Module) -> None:
    """Make sure every masked weight's *current* Parameter carries the gradient hook (loading a checkpoint may
    materialise new Parameters, which would leave the hook on a discarded tensor)."""
    for name in get_masks(model):
        _hook(model, name)


def _hook(model: nn.Module, name: str) -> None:
    hooks = model.__dict__.setdefault("_mask_hooks", {})
    module, param_name = _split(model, name)
    weight = getattr(module, param_name)
    hooked = hooks.get(name)
    if hooked is None or hooked[0] != id(weight):
        if hooked is not None:
            hooked[1].remove()
        hooks[name] = (id(weight), weight.register_hook(_zero_masked_grad(module, f"{param_name}_mask")))


def attach(model: nn.Module, name: str, mask: torch.Tensor) -> None:
    """Give weight `name` the boolean `mask` and the gradient hook. Zeroing the weight is the caller's job.

    The kit's GPT stores masks itself (`attach_mask`: the same `<param>_mask` buffers, persistent, listed in
    `config.sparse_params`), because its modeling file must load without the kit (`trust_remote_code`)."""
    if _persistent(model) and hasattr(model, "attach_mask"):
        return model.attach_mask(name, mask)
    module, param_name = _split(model, name)
    weight = getattr(module, param_name)
    if hasattr(module, f"{param_name}_orig"):
        raise ValueError(f"{name} is pruned by torch.nn.utils.prune; call prune.remove on it before sparsify")
    if mask.shape != weight.shape or mask.dtype != torch.bool:
        raise ValueError(f"mask for {name} has shape {tuple(mask.shape)}/{mask.dtype}, weight {tuple(weight.shape)}")
    buf = f"{param_name}_mask"
    if buf in module._buffers:
        module._buffers[buf].copy_(mask)
    else:
        module.register_buffer(buf, mask.to(weight.device).clone(), persistent=False)
    _hook(model, name)


def detach(model: nn.Module, name: str) -> None:
    """Drop the mask of weight `name`: its pruned (zero) entries are free to learn again."""
    if _persistent(model) and hasattr(model, "detach_mask"):
        return model.detach_mask(name)
    module, param_name = _split(model, name)
    del module._buffers[f"{param_name}_mask"]
    hooked = model.__dict__.get("_mask_hooks", {}).pop(name, None)
    if hooked is not None:
        hooked[1].remove()


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """{weight name: boolean mask} of every masked weight of `model` (unwrapped from DDP/accelerate)."""
    model = unwrap(model)
    out = {}
    for module_name, module in model.named_modules():
        for param_name in module._parameters:
            mask = module._buffers.get(f"{param_name}_mask")
            if mask is not None and mask.dtype == torch.bool:
                out[f"{module_name}.{param_name}" if module_name else param_name] = mask
    return out


# --- keep_zeros: the optimizer step post-hook --------------------------------------------------------------


def _inner_optimizer(optimizer) -> torch.optim.Optimizer:
    # accelerate's AcceleratedOptimizer (also what HF Trainer holds) wraps the torch optimizer in `.optimizer`
    while not isinstance(optimizer, torch.optim.Optimizer) or isinstance(getattr(optimizer, "optimizer", None),
                                                                          torch.optim.Optimizer):
        optimizer = optimizer.optimizer
    return optimizer


class _Pruned:
    """The pruned positions (~mask) of one weight, recomputed only when its mask buffer is replaced."""

    def __init__(self, p: nn.Parameter, module: nn.Module, buffer: str):
        self.p, self.module, self.buffer = p, module, buffer
        self.mask_id = self.version = self.pruned = None

    def get(self) -> torch.Tensor | None:
        mask = self.module._buffers.get(self.buffer)
        if mask is None:  # densified since: nothing to keep
            return None
        if id(mask) != self.mask_id or mask._version != self.version:
            self.mask_id, self.version, self.pruned = id(mask), mask._version, ~mask
        return self.pruned


@torch.no_grad()
def remask(optimizer: torch.optim.Optimizer, masked: list[_Pruned]) -> None:
    """Zero every masked weight and every optimizer state tensor shaped like it."""
    for entry in masked:
        pruned = entry.get()
        if pruned is None:
            continue
        p = entry.p
        p.data.masked_fill_(pruned, 0)
        for v in optimizer.state.get(p, {}).values():
            if isinstance(v, torch.Tensor) and v.shape == p.shape:
                v.masked_fill_(pruned, 0)


def keep_zeros(optimizer, model: nn.Module):
    """Keep `model`'s masked weights, and their optimizer state, at exactly 0 after every `optimizer.step()`.

    Installs a step post-hook on `optimizer` (a torch optimizer, or accelerate's wrapper of one) for the masks
    `model` carries now; call it once, after `sparsify` or `load_masks`, in a plain PyTorch, `accelerate` or
    torchrun loop (HF Trainer: `spdf_lib.hf.SPDFCallback` calls it). Calling it again replaces the hook.
    Returns the hook's handle (`.remove()` uninstalls it).
    """
    opt = _inner_optimizer(optimizer)
    model = unwrap(model)
    masked = []
    owned = {id(p) for group in opt.param_groups for p in group["params"]}
    for name in get_masks(model):
        module, param_name = _split(model, name)
        p = getattr(module, param_name)
        if id(p) in owned:
            masked.append(_Pruned(p, module, f"{param_name}_mask"))
    if get_masks(model) and not masked:
        raise ValueError("keep_zeros: none of the model's masked weights is a parameter of this optimizer (an "
                         "optimizer of another model, or FSDP's flattened parameters?); build the optimizer on "
                         "this model's parameters")
    old = getattr(opt, "_spdf_keep_zeros", None)
    if old is not None:
        old.remove()
    ref = weakref.ref(opt)
    handle = opt.register_step_post_hook(lambda o, args, kwargs: remask(ref() or o, masked))
    opt._spdf_keep_zeros = handle
    remask(opt, masked)  # state that existed before the masks (or weights loaded without zeros)
    return handle


# --- the sidecar on disk -----------------------------------------------------------------------------------


def save_masks(model: nn.Module, directory: str | Path, meta: dict | None = None) -> Path | None:
    """Write `model`'s masks to `directory/spdf_masks.safetensors` (atomically); None when it has none."""
    from safetensors.torch import save_file

    masks = get_masks(model)
    if not masks:
        return None
    path = Path(directory) / SIDECAR
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous().cpu() for k, v in masks.items()}, str(tmp),
              metadata={"format": "spdf-masks-1", "meta": json.dumps(meta or {})})
    tmp.replace(path)
    return path


def read_masks(path: str | Path) -> dict[str, torch.Tensor]:
    """Masks saved beside a model: the sidecar, or (the kit's GPT) the `*_mask` entries of its weights file."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        sidecar = path / SIDECAR
        path = sidecar if sidecar.is_file() else path / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"no masks at {path}: save a sparse model with save_pretrained first")
    tensors = load_file(str(path))
    if path.name != SIDECAR:
        tensors = {k.removesuffix("_mask"): v for k, v in tensors.items()
                   if k.endswith("_mask") and v.dtype == torch.bool}
    if not tensors:
        raise ValueError(f"{path} holds no sparsity masks")
    return tensors


def install_save_hook(model: nn.Module) -> None:
    """Make `model.save_pretrained(dir)` also write the masks sidecar (HF models; Trainer checkpoints too)."""
    if not hasattr(model, "save_pretrained") or _persistent(model) or "save_pretrained" in model.__dict__:
        return
    original = type(model).save_pretrained

    def save_pretrained(self, save_directory, *args, **kwargs):
        out = original(self, save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            save_masks(self, save_directory, getattr(self, "_spdf_meta", None))
        return out

    model.save_pretrained = save_pretrained.__get__(model)
