"""Which floating-point precision a run computes in: `auto` picks bf16 only where the hardware computes it.

bf16 autocast halves the memory traffic of every matrix product, which is a ~2x gain where the device has bf16
arithmetic (CUDA GPUs from Ampere on; x86 CPUs with AVX512-BF16 or AMX; ARM CPUs with the BF16 extension). A CPU
without it emulates bf16 through fp32 conversions: on an AVX2-only AMD EPYC its matmuls ran 30-80x slower than
fp32 and a tiny pre-training step 8.5x slower. So the rule is (`resolve`):

- `fp32` and `bf16` are taken as asked; an explicit `bf16` on a CPU that emulates it runs, after one line on
  stderr that says so with the measured slowdown;
- `auto` is bf16 where torch's capability queries say the device computes it natively *and* a measured probe
  agrees, fp32 elsewhere. The probe times one fp32 and one bf16 matrix product (well under a second) because
  the flags can lie under virtualisation (a hypervisor may hide or fake CPU features); its result is cached per
  machine (CPU model, torch capability, torch version, threads) under `$SPDF_CACHE/precision/`.

`describe(device)` is what every run manifest records: CPU model, torch capability, the flags, the probe's figures.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Literal

PRECISIONS = ("auto", "bf16", "fp32")
Precision = Literal["auto", "bf16", "fp32"]
# `auto` takes bf16 only when the probe measures bf16 matmuls at least this fast relative to fp32: native bf16 is
# 1.5-3x faster; emulated is 30-80x slower. Anything in between is not worth its rounding.
MIN_BF16_SPEEDUP = 0.9
PROBE_SHAPE = (512, 256, 512)  # (m, k, n): 134 MFLOP a product; emulated bf16 does one in ~0.1 s
PROBE_SECONDS = 0.05  # time each dtype for about this long


def cpu_model() -> str:
    """The CPU's model name (`/proc/cpuinfo`, else `platform.processor()`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("flags", "features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def capability_flags(device: str = "cpu") -> dict[str, Any]:
    """What torch (and, on ARM, the kernel) says about bf16 on `device`: the inputs of the precision rule."""
    import torch

    if device.startswith("cuda"):
        return {"device": "cuda", "name": torch.cuda.get_device_name(device),
                "bf16_supported": bool(torch.cuda.is_bf16_supported())}
    arm = platform.machine().lower() in ("aarch64", "arm64")
    return {
        "device": "cpu",
        "cpu_model": cpu_model(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "avx512_bf16": bool(torch.cpu._is_avx512_bf16_supported()) if not arm else False,
        "amx_tile": bool(torch.cpu._is_amx_tile_supported()) if not arm else False,
        "arm_bf16": arm and "bf16" in _cpu_flags(),
    }


def flags_say_native(flags: dict[str, Any]) -> bool:
    """Whether the capability flags claim native bf16 arithmetic."""
    if flags["device"] == "cuda":
        return bool(flags["bf16_supported"])
    return bool(flags["avx512_bf16"] or flags["amx_tile"] or flags["arm_bf16"])


def _gflops(dtype, device: str) -> float:
    import torch

    m, k, n = PROBE_SHAPE
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(m, k, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(k, n, generator=g).to(device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    a @ b  # warm-up: kernel selection, caches
    sync()
    reps, t0 = 0, time.perf_counter()
    while True:
        a @ b
        reps += 1
        sync()
        elapsed = time.perf_counter() - t0
        if elapsed >= PROBE_SECONDS:
            return 2 * m * k * n * reps / elapsed / 1e9


def _cache_path(flags: dict[str, Any]) -> Path:
    import torch

    key = json.dumps({**flags, "torch": torch.__version__, "threads": torch.get_num_threads()}, sort_keys=True)
    root = Path(os.environ.get("SPDF_CACHE") or Path.home() / ".cache" / "spdf-kit") / "precision"
    return root / f"probe-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def measure(device: str = "cpu") -> dict[str, float]:
    """Time one fp32 and one bf16 matrix product on `device` (no cache): GFLOP/s of each and their ratio."""
    import torch

    fp32, bf16 = _gflops(torch.float32, device), _gflops(torch.bfloat16, device)
    return {"fp32_gflops": round(fp32, 2), "bf16_gflops": round(bf16, 2), "bf16_speedup": round(bf16 / fp32, 3),
            "shape": list(PROBE_SHAPE)}


@functools.cache
def probe(device: str = "cpu") -> dict[str, Any]:
    """The capability flags and the measured probe of `device`, cached on disk per machine and in memory per
    process: `{flags..., fp32_gflops, bf16_gflops, bf16_speedup, native, cached}`."""
    from spdf_lib.atomic import atomic_write_text

    flags = capability_flags(device)
    path = _cache_path(flags)
    try:
        found = json.loads(path.read_text())
        if found.get("flags") == flags:
            return {**found, "cached": True}
    except (OSError, ValueError):
        pass
    figures = measure(device)
    result = {"flags": flags, **figures,
              "native": flags_say_native(flags) and figures["bf16_speedup"] >= MIN_BF16_SPEEDUP}
    with contextlib.suppress(OSError):  # a read-only cache only costs the next process its own probe
        atomic_write_text(path, json.dumps(result, indent=2, sort_keys=True) + "\n")
    return {**result, "cached": False}


def _device_kind(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if device.startswith("cuda") else "cpu"


def resolve(requested: str, device: str = "cpu", warn: bool = True) -> str:
    """The precision (`bf16` or `fp32`) a run asking for `requested` computes in on `device` (see the module
    docstring). An explicit `bf16` where bf16 is emulated prints one warning line (once per process)."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested == "fp32":
        return "fp32"
    kind = _device_kind(device)
    info = probe(kind if kind == "cpu" else device if device.startswith("cuda") else "cuda")
    if requested == "auto":
        return "bf16" if info["native"] else "fp32"
    if not info["native"] and warn:
        _warn_emulated(kind, info["bf16_speedup"], info["flags"].get("cpu_model") or info["flags"].get("name"))
    return "bf16"


@functools.cache
def _warn_emulated(kind: str, speedup: float, model: str) -> None:
    print(f"warning: precision bf16 on {model} ({kind}), which has no native bf16: its matmuls measured "
          f"{1 / speedup:.0f}x slower than fp32 here; precision: auto (or fp32) runs in fp32", file=sys.stderr)


def describe(device: str = "auto") -> dict[str, Any]:
    """What a manifest records about precision on `device`: CPU model, capability, flags, probe figures, and
    what `auto` resolves to."""
    kind = _device_kind(device)
    info = probe("cuda" if kind == "cuda" else "cpu")
    return {**info["flags"], "probe": {k: info[k] for k in ("fp32_gflops", "bf16_gflops", "bf16_speedup", "shape")},
            "native_bf16": info["native"], "auto": "bf16" if info["native"] else "fp32"}


def torch_dtype(precision: str, device: str = "cpu"):
    """The weights' dtype (`torch.bfloat16` or `torch.float32`) for a precision, `auto` resolved on `device`."""
    import torch

    return torch.bfloat16 if resolve(precision, device) == "bf16" else torch.float32
