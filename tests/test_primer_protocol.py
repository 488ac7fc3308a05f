"""Primer in its regime (issue 34): the speedup read from annealed endpoints, its interval, the preconditions of
its verdicts on run records, and the conv taps' parameter group."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from conftest import tiny_model

from spdf_lib.primer.speedup import (
    Curve,
    OutsideBudgets,
    gap_speedup,
    speedup_interval,
    token_speedup,
    tokens_to_reach,
)
from spdf_lib.stats import SeedNoise

NOISE = SeedNoise(sd=0.009, df=24)  # the SPDF nano runs' measured seed sd, df of a 4-variant grid


def law(tokens):
    """A baseline's annealed final loss against its budget: a power law plus a floor (slope ~0.15 per doubling)."""
    return 2.9 + 11.0 * np.asarray(tokens, float) ** -0.17


def curve(tokens, factor=1.0, noise=None, n=2):
    """Endpoints of an arm that needs `factor` times fewer tokens than the baseline for the same loss."""
    loss = law(np.asarray(tokens, float) * factor) + (0 if noise is None else noise)
    return Curve.of({t: (x, n) for t, x in zip(tokens, loss, strict=True)})


@pytest.mark.parametrize("factor, budgets", [(1.0, [2.5e6, 5e6]), (1.3, [2.5e6, 5e6]), (2.0, [1.25e6, 2.5e6, 5e6])])
def test_the_endpoint_reading_recovers_a_known_factor_and_its_interval_covers_it(factor, budgets):
    base, variant = curve([2.5e6, 5e6]), curve(budgets, factor)
    assert token_speedup(base, variant) == pytest.approx(factor, rel=0.01)  # log-linear interpolation: ~0.3% bias
    s = speedup_interval(base, variant, NOISE, n_draw=2000)
    assert s.interval.lo < factor < s.interval.hi
    assert not s.point_open


@pytest.mark.parametrize("factor", [1.0, 1.3, 2.0])
def test_the_gap_cross_check_is_exact_where_loss_is_linear_in_log_tokens(factor):
    def pure(tokens, f=1.0):  # 0.148 nats per doubling, the SPDF nano runs' slope
        return Curve.of({t: (7.0 - 0.148 * np.log2(t * f), 2) for t in tokens})

    assert gap_speedup(pure([2.5e6, 5e6]), pure([2.5e6, 5e6], factor)) == pytest.approx(factor, rel=1e-9)
    # a loss floor (as real curves have) flattens the slope beyond the budgets, and the cross-check reads low
    assert gap_speedup(curve([2.5e6, 5e6]), curve([2.5e6, 5e6], 2.0)) < 2.0


def test_the_interval_covers_the_factor_in_about_95_percent_of_noisy_studies():
    rng = np.random.default_rng(1)
    covered, n_studies = 0, 80
    for _ in range(n_studies):
        runs = lambda k: rng.normal(0, NOISE.sd, size=(k, 2)).mean(1)  # noqa: E731  (2 seeds an endpoint)
        base = curve([2.5e6, 5e6], noise=runs(2))
        variant = curve([2.5e6, 5e6], 1.3, noise=runs(2))
        s = speedup_interval(base, variant, NOISE, n_draw=600, seed=int(rng.integers(1 << 30)))
        covered += s.interval.lo <= 1.3 <= s.interval.hi
    assert covered / n_studies >= 0.85


def test_an_extrapolation_is_refused():
    base, fast = curve([2.5e6, 5e6]), curve([2.5e6, 5e6], 3.0)
    with pytest.raises(OutsideBudgets, match="before the smallest budget"):
        tokens_to_reach(fast, base.loss[-1])
    with pytest.raises(OutsideBudgets, match="add a smaller budget"):
        token_speedup(base, fast)
    with pytest.raises(OutsideBudgets, match="add a smaller budget"):  # the baseline would need one
        token_speedup(base, curve([2.5e6, 5e6], 1 / 3.0))
    with pytest.raises(OutsideBudgets, match="add a larger budget"):
        tokens_to_reach(base, base.loss[-1] - 0.05)
    with pytest.raises(ValueError, match=">= 2 token budgets"):
        Curve.of({5e6: (3.9, 2)})
    s = speedup_interval(base, fast, NOISE, n_draw=500)  # only a bound is read, and it says so
    assert s.point_open == "above" and s.hi_open and s.text().startswith("≥ 2.00x")


def test_a_slower_variant_is_read_from_the_other_side():
    base, slow = curve([2.5e6, 5e6]), curve([2.5e6, 5e6], 0.8)
    assert token_speedup(base, slow) == pytest.approx(0.8, rel=0.01)


# --- preconditions on run records ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _packages_read_once(monkeypatch):
    """Each manifest lists the installed packages, a ~1 s scan: read them once for a grid's runs."""
    from spdf_lib import records

    monkeypatch.setattr(records, "package_versions", functools.cache(records.package_versions))


def write_runs(root, arms, seeds=(0, 1), eval_windows=256):
    """Real run folders (manifest.json, results.json) of spdf_pretrain runs: arms = {(variant, tokens): {lr: loss}}."""
    from spdf_lib.primer.params import VARIANTS
    from spdf_lib.records import Run

    for (variant, tokens), rates in arms.items():
        for lr, loss in rates.items():
            for seed in seeds:
                params = {"model_size": "nano", **VARIANTS[variant], "sparsity": 0.0, "tokens": tokens, "lr": lr,
                          "seed": seed, "eval_windows": eval_windows if variant != "baseline" else 256,
                          "batch_size": 4, "seq_len": 256}
                run = Run(root / f"{variant}-{tokens:g}-{lr:g}-s{seed}", "spdf_pretrain", params, seed)
                steps = int(tokens // 1024)
                run.finish({"eval_loss": loss + 0.004 * seed, "tokens": tokens, "steps": steps,
                            "train_seconds": steps * (0.03 if variant == "baseline" else 0.033),
                            "flops_per_token": 1.0e6 if variant == "baseline" else 1.02e6})


def grid_of(rates=(0.006, 0.012, 0.024)):
    def arm(offset):  # a valley with its minimum at 0.012
        return {lr: 3.9 + offset + 0.02 * abs(np.log2(lr / 0.012)) for lr in rates}
    return {("baseline", 5e6): arm(0.0), ("baseline", 2.5e6): arm(0.12),
            ("primer-ez", 5e6): arm(-0.04), ("primer-ez", 2.5e6): arm(0.08)}


def check(root):
    from spdf_lib.primer import grid
    from spdf_lib.primer.preconditions import check_size
    from spdf_lib.results import load_results

    table = grid.runs_table(load_results(root))
    return {c.what.split(" (")[0]: c for c in check_size(table, grid.chosen(table), "nano")}, table


def test_every_precondition_met_on_a_tuned_grid(tmp_path):
    from spdf_lib.primer.study import size_speedups

    write_runs(tmp_path, grid_of())
    found, table = check(tmp_path)
    assert {c.status for c in found.values()} == {"met"}, [c.line for c in found.values()]
    row = size_speedups(table, "nano", n_draw=500).set_index("variant").loc["primer-ez"]
    assert row["df"] == 12 - 6 + 12 - 6 and row["flop_ratio"] == pytest.approx(1 / 1.02)
    assert row["verdict"] == "agrees" and 1.1 < row["estimate"] < 2.0


def test_a_rate_at_the_edge_of_its_grid_fails(tmp_path):
    arms = grid_of()
    arms["primer-ez", 5e6] = {0.006: 3.95, 0.012: 3.90, 0.024: 3.86}  # still falling at the top rate
    write_runs(tmp_path, arms)
    found, _ = check(tmp_path)
    c = found["every chosen learning rate inside its grid"]
    assert c.status == "failed" and "primer-ez at 5M tokens: 0.024 of [0.006, 0.012, 0.024], its upper edge" in c.detail


def test_an_arm_with_two_rates_is_not_tuned(tmp_path):
    arms = grid_of()
    arms["primer-ez", 2.5e6] = {0.006: 4.05, 0.012: 4.0}
    write_runs(tmp_path, arms)
    found, _ = check(tmp_path)
    assert found["every arm tuned"].status == "failed" and "2 rate(s)" in found["every arm tuned"].detail


def test_a_baseline_with_fewer_seeds_than_primer_fails(tmp_path):
    arms = grid_of()
    write_runs(tmp_path, {k: v for k, v in arms.items() if k[0] != "baseline"}, seeds=(0, 1))
    write_runs(tmp_path / "b", {k: v for k, v in arms.items() if k[0] == "baseline"}, seeds=(0,))
    found, _ = check(tmp_path)
    c = found["the baseline's seeds as tight as Primer's"]
    assert c.status == "failed" and "2 seeds, baseline 1" in c.detail


def test_a_baseline_with_another_evaluation_fails_the_recipe(tmp_path):
    write_runs(tmp_path, grid_of(), eval_windows=32)  # the variants on the old 8k validation tokens
    found, _ = check(tmp_path)
    c = found["one recipe, data and evaluation for every run"]
    assert c.status == "failed" and "eval_windows" in c.detail


def test_nothing_to_check_is_said(tmp_path):
    from spdf_lib.primer import grid
    from spdf_lib.primer.preconditions import check_size

    table = grid.runs_table(__import__("pandas").DataFrame(columns=["experiment", "status"]))
    assert {c.status for c in check_size(table, grid.chosen(table), "micro")} == {"not checked"}


# --- the conv taps ------------------------------------------------------------------------------------------


def test_the_conv_taps_are_their_own_group_without_weight_decay_at_the_blocks_rate():
    from spdf_lib.train import TrainConfig, make_optimizer

    model = tiny_model(vocab_size=97, mdha=True, activation="relu2")
    names = {id(p): n for n, p in model.named_parameters()}
    cfg = TrainConfig(max_steps=1, lr=1e-2, matrix_lr_scale=0.25, weight_decay=0.1, progress=False)
    groups = {g["name"]: g for g in make_optimizer(model, cfg, "cpu").param_groups}
    taps = sorted(names[id(p)] for p in groups["conv_taps"]["params"])
    assert taps == sorted(n for n in names.values() if n.endswith("attn.mdha.weight")) and len(taps) == 2
    assert groups["conv_taps"]["weight_decay"] == 0.0 and groups["conv_taps"]["lr_scale"] == 0.25
    assert not any(names[id(p)].endswith("mdha.weight") for g in ("matrices", "embeddings", "norms_biases")
                   for p in groups[g]["params"])
    # every parameter in exactly one group; a model without MDHA has no such group
    assert sum(len(g["params"]) for g in groups.values()) == len(names)
    plain = make_optimizer(tiny_model(), cfg, "cpu").param_groups
    assert "conv_taps" not in {g["name"] for g in plain}


def test_weight_decay_does_not_shrink_the_taps():
    """With zero gradients, AdamW moves only decayed weights: the matrices shrink, the taps stay."""
    import torch

    from spdf_lib.train import TrainConfig, make_optimizer

    model = tiny_model(mdha=True)
    opt = make_optimizer(model, TrainConfig(max_steps=1, lr=0.1, weight_decay=0.5, progress=False), "cpu")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    after = dict(model.named_parameters())
    assert torch.equal(after["transformer.h.0.attn.mdha.weight"], before["transformer.h.0.attn.mdha.weight"])
    assert not torch.equal(after["transformer.h.0.attn.q_proj.weight"], before["transformer.h.0.attn.q_proj.weight"])


def test_the_report_reads_the_regime_from_run_records(tmp_path):
    from spdf_lib.primer import report_section
    from spdf_lib.report_document import Report
    from spdf_lib.results import load_results

    write_runs(tmp_path / "runs", grid_of())
    rep = Report(tmp_path / "runs", tmp_path / "figures")
    report_section.section(load_results(tmp_path / "runs"), rep)
    text = rep.markdown()
    assert "Precondition: every chosen learning rate inside its grid (nano): **met**" in text
    assert "| primer-ez |" in text and "agrees" in text and "1.75x–2.34x" in text and "biased" in text
    assert (tmp_path / "figures" / "primer_endpoints.png").is_file()
    assert set(rep.tables["primer_grid"]["variant"]) == {"baseline", "primer-ez"}


def test_a_diverged_rate_stays_in_the_grid_without_being_chosen(tmp_path):
    from spdf_lib.primer import grid
    from spdf_lib.results import load_results

    arms = grid_of((0.006, 0.012, 0.024, 0.048))
    write_runs(tmp_path, arms)
    for seed in (0, 1):  # the top rate diverged for primer-ez at 5M: its records say so, with no loss
        folder = tmp_path / f"primer-ez-{5e6:g}-0.048-s{seed}"
        manifest = __import__("json").loads((folder / "manifest.json").read_text())
        manifest["status"] = "diverged"
        (folder / "manifest.json").write_text(__import__("json").dumps(manifest))
    table = grid.runs_table(load_results(tmp_path))
    best = grid.chosen(table).set_index(["variant", "tokens"])
    assert best.loc[("primer-ez", 5e6), "grid"] == [0.006, 0.012, 0.024, 0.048]
    assert best.loc[("primer-ez", 5e6), "lr"] == 0.012


# --- diagnosis ----------------------------------------------------------------------------------------------


def test_diagnosis_reads_ffn_scales_and_tap_drift():
    import torch

    from spdf_lib.primer.diagnosis import ffn_scales, tap_drift

    x = torch.randint(2, 97, (2, 16))
    gelu, relu2 = ffn_scales(tiny_model(), x), ffn_scales(tiny_model(activation="relu2"), x)
    assert [r["layer"] for r in gelu] == [0, 1]
    assert gelu[0]["pre_rms"] == pytest.approx(relu2[0]["pre_rms"])  # same init, same fc_in
    assert relu2[0]["out_rms"] < gelu[0]["out_rms"]  # squaring small pre-activations: a smaller FFN output
    model = tiny_model(mdha=True)
    assert tap_drift(tiny_model()) == []
    assert [r["drift"] for r in tap_drift(model)] == [0.0, 0.0]
    assert tap_drift(model)[0]["current"] == 0.5 and tap_drift(model)[0]["past"] == pytest.approx(0.5 / 3)
    with torch.no_grad():
        model.transformer.h[1].attn.mdha.weight.mul_(1.1)
    assert tap_drift(model)[1]["drift"] == pytest.approx(0.1, rel=1e-5) and tap_drift(model)[0]["drift"] == 0.0
