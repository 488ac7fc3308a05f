"""SPDF's compute claim (Thangarasa et al. 2023, §4.1): pre-training FLOPs of the paper's models at their
reference budgets, and the reduction against sparsity for every size, from the kit's FLOP counter."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from spdf_lib import flops
from spdf_lib.locations import new_run_dir
from spdf_lib.records import Run
from spdf_lib.run_status import ends_runs_on_error
from spdf_lib.spdf.params import FlopsParams

# The paper's reference budgets (≈20 tokens per parameter): name -> (model size, tokens, context).
PAPER_BUDGETS = {
    "gpt2-small (ctx 1024)": ("gpt2-small", 2.505e9, 1024),
    "gpt2-small (ctx 2048)": ("gpt2-small-2048", 2.505e9, 2048),
    "gpt3-xl (ctx 2048)": ("gpt3-xl", 26.3e9, 2048),
}


def paper_flop_tables(convention: str = "spdf") -> pd.DataFrame:
    """SPDF's pre-training FLOPs at the reference budgets (GPT-2 Small at context 1024 and 2048, GPT-3 XL), at
    sparsity 0, 0.5 and 0.75."""
    return flops.breakdown_table(PAPER_BUDGETS, convention=convention)


def flops_by_size(sizes: list[str], sparsities: list[float], convention: str = "spdf") -> pd.DataFrame:
    """For each size and sparsity: the reduction vs dense and each term's share of one sequence's FLOPs."""
    from spdf_lib.modeling_gpt import gpt_config

    rows = []
    for size in sizes:
        cfg = gpt_config(size)
        for s in sparsities:
            terms = flops.count(cfg, cfg.n_positions, s, convention=convention)  # one sequence
            rows.append({"model": size, "sparsity": s, "reduction_vs_dense": flops.reduction_factor(cfg, s),
                         **{f"share_{k}": v / terms["total"] for k, v in terms.items() if k != "total"}})
    return pd.DataFrame(rows)


@ends_runs_on_error
def run_flops(p: FlopsParams, run_dir: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The FLOP tables (paper budgets; reduction vs sparsity for every size); writes them and the records."""
    run = Run(Path(run_dir or p.run_dir or new_run_dir("flops")), "flops", p.model_dump(), p.seed)
    paper = paper_flop_tables(p.convention)
    by_size = flops_by_size(p.sizes, p.sparsities, p.convention)
    run.write_table("flops_paper", paper)
    run.write_table("flops_by_size", by_size)
    results = {f"reduction_{r.model.split()[0]}_ctx{r.seq_len}_s{r.sparsity}": r.reduction_vs_dense
               for r in paper.itertuples()}
    results |= {f"train_flops_{r.model.split()[0]}_ctx{r.seq_len}_s{r.sparsity}": r.train_flops
                for r in paper.itertuples()}
    run.finish(results)
    return paper, by_size
