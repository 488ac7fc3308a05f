"""Training checkpoints and weight files: written atomically, verified before use, damaged ones named and
passed over.

A training checkpoint `<out_dir>/checkpoints/step-NNNNNNNN/` holds `model.safetensors`, `optimizer.pt`,
`rng.safetensors` and `state.json` (written last: it marks the folder complete). Resume reads the newest one that is
intact and says which newer ones it passed over and why; a damaged checkpoint is never half-applied (every file is
read and checked before the model or optimizer is touched).

`verify_safetensors(path)` checks a safetensors file without loading it: its header parses and the file is
exactly as long as the header says; a truncated file is named as such instead of safetensors'
`incomplete metadata` deep inside a load.

No code from data: a checkpoint may come from a colleague or a download, so nothing in it is unpickled with
code. The RNG states are tensors in safetensors; the optimizer state is read with `torch.load(weights_only=True)`
(`load_tensors`), which refuses a pickle that would call anything (the file is then named as unsafe or damaged
and passed over). An `rng.pt` of an earlier version is read the same way.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from spdf_lib.errors import CorruptFileError


def verify_safetensors(path: str | Path) -> dict[str, Any]:
    """The header of the safetensors file at `path`; a `CorruptFileError` naming the file when it is missing,
    truncated or not a safetensors file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CorruptFileError(f"{path} is truncated ({size} bytes, not even a header)")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise CorruptFileError(f"{path} is truncated ({size} bytes; its header alone needs {n + 8})")
            header = json.loads(f.read(n))
    except FileNotFoundError:
        raise CorruptFileError(f"{path} is missing") from None
    except (ValueError, UnicodeDecodeError) as e:
        if isinstance(e, CorruptFileError):
            raise
        raise CorruptFileError(f"{path} is not a safetensors file (its header does not parse)") from None
    ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"]
    expected = 8 + n + max(ends, default=0)
    if size != expected:
        raise CorruptFileError(f"{path} is {'truncated' if size < expected else 'too long'}: {size:,} bytes, its "
                               f"header says {expected:,}")
    return header


def verify_model_folder(folder: str | Path) -> None:
    """Every safetensors weight file of a `save_pretrained` folder is intact (named when it is not)."""
    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors"))
    if not files and not any(folder.glob("*.bin")):
        raise CorruptFileError(f"model folder {folder} holds no weights (no model.safetensors)")
    for f in files:
        verify_safetensors(f)


def unique_state_dict(model) -> dict[str, torch.Tensor]:
    """The state dict without the second name of a tied tensor (the LM head shares the embedding), as
    safetensors requires; loading restores the tie."""
    out, seen = {}, set()
    for k, v in model.state_dict().items():
        if v.data_ptr() in seen:
            continue
        seen.add(v.data_ptr())
        out[k] = v.contiguous()
    return out


def list_checkpoints(out_dir: Path) -> list[Path]:
    """Complete checkpoint folders (with their `state.json`), oldest first. Leftover `.tmp-*` folders of a
    killed save are removed."""
    root = out_dir / "checkpoints"
    if not root.is_dir():
        return []
    for tmp in root.glob(".tmp-step-*"):  # a save killed before its rename; the next save would redo it anyway
        shutil.rmtree(tmp, ignore_errors=True)
    return sorted((p for p in root.glob("step-*") if (p / "state.json").is_file()), key=lambda p: int(p.name[5:]))


def save_checkpoint(out_dir: Path, model, opt, state: dict, keep: int) -> None:
    root = out_dir / "checkpoints"
    final = root / f"step-{state['step']:08d}"
    tmp = root / f".tmp-{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(unique_state_dict(model), str(tmp / "model.safetensors"))
    torch.save(opt.state_dict(), tmp / "optimizer.pt")
    save_file(rng_tensors(), str(tmp / "rng.safetensors"))
    (tmp / "state.json").write_text(json.dumps(state, indent=2))  # written last: marks the folder complete
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in list_checkpoints(out_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def rng_tensors() -> dict[str, torch.Tensor]:
    """This process's RNG states as named tensors (`torch`, `cuda.0`, `cuda.1`, ...), for safetensors."""
    out = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        out.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return out


def load_tensors(path: Path) -> Any:
    """`torch.load(path, weights_only=True)`: tensors and plain containers only, never code; a
    `CorruptFileError` naming the file as unsafe (a pickle that would run code) or damaged otherwise."""
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        called = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        what = f"it would call {called.group(1)}" if called else "it is not plain tensors"
        raise CorruptFileError(f"{path} is unsafe or damaged: {what}; a pickle that would run code is never "
                               f"loaded") from None
    except (OSError, RuntimeError, EOFError, ValueError, AttributeError, ImportError) as e:
        raise CorruptFileError(f"{path} is damaged ({str(e).splitlines()[0][:120]})") from None


def _read_rng(path: Path) -> dict:
    if (path / "rng.safetensors").is_file() or not (path / "rng.pt").is_file():
        verify_safetensors(path / "rng.safetensors")
        flat = load_file(str(path / "rng.safetensors"))
        cuda = [flat[f"cuda.{i}"] for i in range(sum(k.startswith("cuda.") for k in flat))]
        return {"torch": flat["torch"], "cuda": cuda or None}
    rng = load_tensors(path / "rng.pt")  # written by an earlier version of the kit
    if not isinstance(rng, dict) or "torch" not in rng:
        raise CorruptFileError(f"{path / 'rng.pt'} is damaged (no RNG state in it)")
    return rng


def read_checkpoint(path: Path) -> tuple[dict, dict, dict, dict]:
    """(state, weights, optimizer state, RNG states) of a checkpoint folder, every file read and checked; a
    `CorruptFileError` naming the damaged file otherwise."""
    try:
        state = json.loads((path / "state.json").read_text())
    except (OSError, ValueError):
        raise CorruptFileError(f"{path / 'state.json'} is damaged (not JSON)") from None
    verify_safetensors(path / "model.safetensors")
    weights = load_file(str(path / "model.safetensors"))
    opt_state = load_tensors(path / "optimizer.pt")
    if not isinstance(opt_state, dict):
        raise CorruptFileError(f"{path / 'optimizer.pt'} is damaged (not an optimizer state)")
    return state, weights, opt_state, _read_rng(path)


def load_latest(out_dir: Path, model, opt, fingerprint: dict, say=None) -> dict | None:
    """Load the newest intact checkpoint of `out_dir` into `model`, `opt` and the RNGs; returns its state, or
    None when there is none. Damaged newer ones are passed over with a line (`say`, default stderr) naming them;
    a checkpoint of another configuration is an error (`ValueError`)."""
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    skipped = []
    for path in reversed(list_checkpoints(out_dir)):
        try:
            state, weights, opt_state, rng = read_checkpoint(path)
        except CorruptFileError as e:
            skipped.append(path.name)
            say(f"checkpoint {path.name} is damaged: {e}; trying the one before")
            continue
        if state["fingerprint"] != fingerprint:
            diff = first_difference(state["fingerprint"], fingerprint)
            raise ValueError(f"checkpoint {path} was written by another configuration ({diff}); use a new output "
                             f"folder, or delete its checkpoints/ to start over")
        missing, unexpected = model.load_state_dict(weights, strict=False)
        if unexpected or [k for k in missing if k != "lm_head.weight"]:  # the LM head is tied to the embedding
            raise ValueError(f"checkpoint {path} does not fit the model (missing {missing[:3]}, unexpected "
                             f"{unexpected[:3]})")
        opt.load_state_dict(opt_state)
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        passed = f" (passed over damaged {', '.join(skipped)})" if skipped else ""
        say(f"resuming from step {state['step']} ({path.name}){passed}")
        return state
    if skipped:
        say(f"no intact checkpoint in {out_dir / 'checkpoints'} ({', '.join(skipped)} damaged); starting from step 0")
    return None


def first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else k)
    return f"{path}: checkpoint has {a!r}, this run has {b!r}"


def save_best(out_dir: Path, weights: dict[str, torch.Tensor]) -> None:
    """The best weights so far, atomically, as `<out_dir>/best/model.safetensors`."""
    folder = out_dir / "best"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".model.safetensors.tmp"
    save_file(weights, str(tmp))
    os.replace(tmp, folder / "model.safetensors")


def load_best(out_dir: Path) -> dict[str, torch.Tensor]:
    path = out_dir / "best" / "model.safetensors"
    verify_safetensors(path)
    return load_file(str(path))
