"""`precision: auto`: bf16 only where the device computes it natively (flags confirmed by a measured probe), the
one warning line of an explicit bf16 on an emulating CPU, and what every manifest records."""

from __future__ import annotations

import json

import pytest

from spdf_lib import precision

AVX2 = {"device": "cpu", "cpu_model": "AMD EPYC", "capability": "AVX2", "avx512_bf16": False, "amx_tile": False,
        "arm_bf16": False}
AMX = {**AVX2, "cpu_model": "Intel Xeon Sapphire Rapids", "capability": "AVX512", "amx_tile": True}
CUDA = {"device": "cuda", "name": "NVIDIA H200", "bf16_supported": True}


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """Pretend to be a machine with the given flags whose probe measures bf16 at `speedup` times fp32."""
    monkeypatch.setenv("SPDF_CACHE", str(tmp_path))
    precision.probe.cache_clear()
    precision._warn_emulated.cache_clear()
    calls = []

    def set_machine(flags: dict, speedup: float):
        monkeypatch.setattr(precision, "capability_flags", lambda device="cpu": dict(flags))

        def measure(device="cpu"):
            calls.append(device)
            return {"fp32_gflops": 40.0, "bf16_gflops": 40.0 * speedup, "bf16_speedup": speedup, "shape": [1, 1, 1]}

        monkeypatch.setattr(precision, "measure", measure)
        precision.probe.cache_clear()
        return calls

    yield set_machine
    precision.probe.cache_clear()
    precision._warn_emulated.cache_clear()


@pytest.mark.parametrize("flags, speedup, device, auto", [
    (AMX, 2.1, "cpu", "bf16"),  # native and measured fast
    (AVX2, 0.012, "cpu", "fp32"),  # emulated: 80x slower
    (AMX, 0.03, "cpu", "fp32"),  # the flags say native, the probe says otherwise (a hypervisor's fake flags)
    (AVX2, 1.5, "cpu", "fp32"),  # no flag: a fast probe alone does not make bf16 native
    (CUDA, 3.0, "cuda:0", "bf16"),
    ({**CUDA, "bf16_supported": False}, 0.5, "cuda:0", "fp32"),  # a GPU before Ampere
])
def test_the_precision_rule_on_injected_machines(machine, flags, speedup, device, auto):
    machine(flags, speedup)
    assert precision.resolve("auto", device) == auto
    assert precision.resolve("fp32", device) == "fp32"
    assert precision.resolve("bf16", device, warn=False) == "bf16"  # explicit bf16 runs as asked


def test_the_probe_is_measured_once_per_machine_and_cached_on_disk(machine, tmp_path):
    calls = machine(AVX2, 0.012)
    precision.resolve("auto")
    precision.resolve("auto")
    assert calls == ["cpu"]  # once per process
    precision.probe.cache_clear()
    assert precision.probe("cpu")["cached"] is True and calls == ["cpu"]  # and once per machine
    saved = json.loads(next((tmp_path / "precision").glob("probe-*.json")).read_text())
    assert saved["flags"] == AVX2 and saved["native"] is False


def test_explicit_bf16_on_an_emulating_cpu_warns_once_and_auto_says_nothing(machine, capsys):
    machine(AVX2, 0.0125)
    assert precision.resolve("auto") == "fp32"
    assert capsys.readouterr().err == ""
    precision.resolve("bf16")
    precision.resolve("bf16")
    err = capsys.readouterr().err.splitlines()
    assert err == ["warning: precision bf16 on AMD EPYC (cpu), which has no native bf16: its matmuls measured 80x "
                   "slower than fp32 here; precision: auto (or fp32) runs in fp32"]
    machine(AMX, 2.0)
    precision.resolve("bf16")
    assert capsys.readouterr().err == ""  # native: nothing to say


def test_the_real_probe_on_this_machine_resolves_to_a_precision(monkeypatch, tmp_path):
    monkeypatch.setenv("SPDF_CACHE", str(tmp_path))
    precision.probe.cache_clear()
    info = precision.probe("cpu")
    assert info["cached"] is False and info["fp32_gflops"] > 0 and info["bf16_gflops"] > 0
    assert info["flags"]["capability"] and info["flags"]["cpu_model"]
    assert precision.resolve("auto") == ("bf16" if info["native"] else "fp32")
    precision.probe.cache_clear()


def test_a_manifest_records_the_cpu_the_probe_and_the_resolved_precision(tmp_path):
    import torch

    from spdf_lib.data.streams import PackedStream
    from spdf_lib.jsonio import read_json
    from spdf_lib.modeling_gpt import GPTForCausalLM, gpt_config
    from spdf_lib.records import Run
    from spdf_lib.results import record_row
    from spdf_lib.train import TrainConfig, train

    torch.manual_seed(0)
    ids = torch.randint(0, 64, (2000,))
    model = GPTForCausalLM(gpt_config("nano", vocab_size=64, n_positions=32))
    run = Run(tmp_path / "run", "spdf_pretrain", {"precision": "auto"}, seed=0)
    train(model, PackedStream(ids, ids, 16, eval_windows=2), TrainConfig(max_steps=2, batch_size=2, progress=False),
          run=run)
    run.finish({"x": 1.0})
    manifest = read_json(tmp_path / "run" / "manifest.json")
    hw = manifest["device"]["precision"]
    assert hw["cpu_model"] == precision.cpu_model() and hw["capability"] == torch.backends.cpu.get_cpu_capability()
    assert {"fp32_gflops", "bf16_gflops", "bf16_speedup"} <= set(hw["probe"])
    assert manifest["info"]["precision"] == hw["auto"] and manifest["info"]["precision_requested"] == "auto"
    assert record_row(tmp_path / "run")["resolved_precision"] == hw["auto"]  # the results table's column
