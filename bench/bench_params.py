"""How fast a bad parameter is rejected: `spdf run` with an out-of-range value must fail in under a second,
before torch is imported (issue 13). Measured as whole processes, side by side with the import it avoids."""

from __future__ import annotations

import subprocess
import sys

from bench.common import Result, interleaved_median


def _run(args: list[str], expect: int) -> None:
    res = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    if res.returncode != expect:
        raise RuntimeError(f"{args}: exit {res.returncode}: {res.stderr[-500:]}")


def run() -> list[Result]:
    reject = ["-m", "spdf_lib.cli", "run", "spdf_pretrain", "-p", "sparsity=1.2"]
    t = interleaved_median({
        "reject": lambda: _run(reject, 2),
        "import": lambda: _run(["-c", "import torch, transformers"], 0),
    }, repeats=5, warmup=1)
    return [
        Result("bad parameter rejected (spdf run), s", "1-second budget", 1.0, "rejection", t["reject"], "s",
               higher_is_better=False, target=1.0),
        Result("rejection vs importing torch+transformers, s", "import torch+transformers", t["import"],
               "rejection", t["reject"], "s", higher_is_better=False,
               note="the cost a validation that imports the model code would pay first"),
    ]
