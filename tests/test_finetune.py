"""Fine-tuning: the training subset, and bad input stopped before any work."""

from __future__ import annotations

import pytest

from spdf_lib.data.registry import DataError
from spdf_lib.data.tasks import Example
from spdf_lib.params import ParamsError, validate
from spdf_lib.spdf.finetune import check_checkpoint, run_finetune, training_subset
from spdf_lib.spdf.params import FinetuneParams


def _examples(n: int) -> list[Example]:
    return [Example(f"x/{i}", f"s{i}", tuple(f"r{i}.{j}" for j in range(1 + i % 3)), {}) for i in range(n)]


def test_training_subset_is_fixed_and_capped_in_whole_inputs():
    ex = _examples(50)
    a = training_subset(ex, 0.5, None, seed=0)
    assert len(a) == 25 and a == training_subset(ex, 0.5, None, seed=0) != training_subset(ex, 0.5, None, seed=1)
    capped = training_subset(ex, 1.0, 10, seed=0)
    pairs = sum(len(e.references) for e in capped)
    assert 10 <= pairs < 10 + 3  # whole inputs until the cap is reached
    assert training_subset(ex, 1.0, None, seed=0) == ex


def test_bad_input_fails_before_any_work(tmp_path):
    with pytest.raises(ParamsError, match="task"):
        validate(FinetuneParams, {"task": "xsum"})
    with pytest.raises(ParamsError, match="is not a folder"):
        check_checkpoint(tmp_path / "missing")
    with pytest.raises(ParamsError, match="not a model folder"):
        check_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "gpt2", "vocab_size": 10}')
    with pytest.raises(ParamsError, match="not the kit's 'spdf_gpt'"):
        check_checkpoint(tmp_path)
    with pytest.raises(ParamsError, match="is not a folder"):
        run_finetune(FinetuneParams(checkpoint=str(tmp_path / "nope")), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_an_empty_checkpoint_is_the_same_error_on_every_path(tmp_path):
    """Notebook kernel, `spdf run` and `python -m spdf_lib.experiments` (torchrun) all refuse it, before work."""
    import subprocess
    import sys

    from spdf_lib.experiments import notebook_params
    from spdf_lib.params import preset_path

    message = "checkpoint: is empty: name the `model` folder of a spdf_pretrain run"
    with pytest.raises(ParamsError, match=message):
        notebook_params("spdf_finetune", {"checkpoint": "", "task": "e2e"})
    smoke = str(preset_path("spdf_finetune", "smoke"))
    for cmd in (["spdf_lib.experiments", "spdf_finetune", "--params", smoke, "--run-dir", str(tmp_path / "a")],
                ["spdf_lib.cli", "run", "spdf_finetune", "--params", smoke, "--run-dir", str(tmp_path / "b")]):
        res = subprocess.run([sys.executable, "-m", *cmd, "-p", "checkpoint=''"], capture_output=True, text=True)
        assert res.returncode == 2 and message in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_checkpoint_with_another_tokenizer_is_refused(tmp_path, shakespeare_tokens):
    from conftest import tiny_model

    tok = shakespeare_tokens[0]
    model = tiny_model(vocab_size=len(tok) + 3)  # a model whose vocabulary is not this tokenizer's
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with pytest.raises(ParamsError, match="tokenizer belongs to another model"):
        check_checkpoint(tmp_path)


def test_an_empty_split_is_a_clear_error():
    from spdf_lib.data.tasks import load_task

    with pytest.raises(DataError):
        load_task("webnlg", "offline", max_train=0)


def test_the_epoch_guard_refuses_a_paper_budget_on_a_small_corpus(tmp_path):
    """Yesterday's paper preset: GPT-2 Small's 2.505e9 tokens on WikiText-2 (here the mirror's split)."""
    from spdf_lib.experiments import load
    from spdf_lib.params import preset_path
    from spdf_lib.pretrain import run_pretrain

    p = load("spdf_pretrain", preset_path("spdf_pretrain", "paper"),
             {"corpus": "wikitext-2-mirror", "tokenizer": "", "vocab_size": 50257})
    with pytest.raises(ParamsError) as e:
        run_pretrain(p, tmp_path / "run")
    assert "\n" not in str(e.value)
    assert str(e.value).startswith("tokens=2.505e+09 is ") and "passes over corpus 'wikitext-2-mirror' (" in str(
        e.value
    )
    assert "more than max_epochs=1; pre-train on a larger corpus" in str(e.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_best_of_several_checkpoints_is_the_lowest_validation_loss(tmp_path):
    """`best:a,b` (a per-sparsity learning-rate sweep): the folder whose pre-training run ended lowest, with the
    table it was chosen from; a folder without a finished run is an error."""
    from spdf_lib.jsonio import write_json
    from spdf_lib.spdf.finetune import candidates, choose_checkpoint

    for name, lr, loss in (("a", 0.003, 4.8), ("b", 0.006, 4.7)):
        write_json(tmp_path / name / "results.json", {"eval_loss": loss})
        write_json(tmp_path / name / "manifest.json", {"params": {"lr": lr}})
    folders = candidates(f"best:{tmp_path / 'a' / 'model'}, {tmp_path / 'b' / 'model'}")
    chosen, table = choose_checkpoint(folders)
    assert chosen == tmp_path / "b" / "model" and [r["lr"] for r in table] == [0.003, 0.006]
    with pytest.raises(ParamsError, match="no results.json"):
        choose_checkpoint([tmp_path / "c" / "model"])


def test_validation_inputs_are_held_out_of_training():
    from spdf_lib.spdf.finetune import held_out

    ex = _examples(30)
    val, rest = held_out(ex, 5, seed=0)
    assert len(val) == 5 and len(rest) == 25 and not {e.id for e in val} & {e.id for e in rest}
    assert held_out(ex, 5, seed=0) == (val, rest) and held_out(ex, 0, seed=0) == ([], ex)
    with pytest.raises(ParamsError, match="leaves no training inputs"):
        held_out(ex, 30, seed=0)
    with pytest.raises(ParamsError, match="patience > 0 needs held-out validation inputs"):
        validate(FinetuneParams, {"checkpoint": "x", "patience": 2})


def test_per_example_test_losses_sum_to_the_training_loops_evaluation():
    """`example_losses` (the test loss, per input for the bootstrap) scores the same next tokens as the
    training loop's own `evaluate` on the same (prompt, first reference) pairs."""
    from conftest import tiny_model

    from spdf_lib.data.encoding import encode_pair
    from spdf_lib.data.streams import PairData
    from spdf_lib.spdf.finetune import example_losses
    from spdf_lib.tokenizer import train_tokenizer
    from spdf_lib.train import evaluate

    ex = [Example(f"x/{i}", f"name[Place {i}] | area[riverside]", (f"Place {i} is by the river.", "x"), {})
          for i in range(7)]
    tok = train_tokenizer([e.source for e in ex] + [r for e in ex for r in e.references], 300)
    model = tiny_model(vocab_size=len(tok))
    per_example = example_losses(model, tok, ex, max_len=48, batch_size=3, precision="fp32")
    assert per_example.shape == (7, 2) and (per_example[:, 1] > 0).all()
    pairs = [encode_pair(tok, e.source, e.references[0], 48) for e in ex]
    expected = evaluate(model, PairData(pairs, pairs, tok.pad_token_id, 48), 4, "cpu", "fp32")
    assert per_example[:, 0].sum() / per_example[:, 1].sum() == pytest.approx(expected, rel=1e-5)
    assert per_example[:, 1].sum() == sum(len(t) for _, t in pairs)  # every target token, EOS included
