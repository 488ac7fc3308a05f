"""Early stopping: the best weights are the ones kept, and an interrupted run resumes the same decisions."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model

from spdf_lib.checkpoints import unique_state_dict
from spdf_lib.data.streams import PairData
from spdf_lib.jsonio import read_jsonl
from spdf_lib.records import Run
from spdf_lib.train import TrainConfig, train

PAIRS = [([5, 6, i % 7 + 10], [20 + i % 5, 30, 0]) for i in range(24)]


class Interrupted(Exception):
    pass


class Validator:
    """A validation score that depends only on the weights (so a resumed run sees the same scores): a
    pseudo-random number derived from them. Records the weights seen at each score; can raise on its k-th call."""

    def __init__(self, fail_at: int | None = None):
        self.fail_at, self.calls, self.seen = fail_at, 0, {}

    def __call__(self, model) -> dict[str, float]:
        self.calls += 1
        if self.calls == self.fail_at:
            raise Interrupted
        w = next(m for m in model.modules() if isinstance(m, torch.nn.Linear)).weight.detach()
        score = float((w.double().sum() * 1e4) % 1.0)
        self.seen[score] = {k: v.clone() for k, v in unique_state_dict(model).items()}
        return {"score": score}


def _train(out, validate, steps: int = 40):
    cfg = TrainConfig(max_steps=steps, batch_size=4, lr=3e-3, eval_every=4, checkpoint_every=4, patience=3,
                      stop_metric="score", stop_mode="max", progress=False, precision="fp32", seed=0)
    model = tiny_model()
    data = PairData(PAIRS, PAIRS[:4], pad_id=1, max_len=16, seed=0)
    return model, train(model, data, cfg, out_dir=out, run=Run(out, "test", {}, 0), validate=validate)


def test_early_stopping_keeps_the_best_weights(tmp_path):
    v = Validator()
    model, last = _train(tmp_path, v)
    scores = [r["score"] for r in read_jsonl(tmp_path / "metrics.jsonl") if "score" in r]
    assert last["stopped_early"] and last["step"] < 40  # it stopped before the budget ...
    best = max(scores)
    assert scores.index(best) == len(scores) - 4  # ... three validations after the best one
    assert last["best"]["score"] == best and last["best"]["step"] == 4 * (scores.index(best) + 1)
    for k, t in unique_state_dict(model).items():  # and the model holds the best weights, not the last ones
        assert torch.equal(t, v.seen[best][k]), k
    assert (tmp_path / "best" / "model.safetensors").is_file()


def test_an_interrupted_run_resumes_to_the_same_best_model(tmp_path):
    straight_model, straight = _train(tmp_path / "a", Validator())
    with pytest.raises(Interrupted):  # killed at its 4th validation, after checkpoints at steps 4, 8, 12
        _train(tmp_path / "b", Validator(fail_at=4))
    resumed_model, resumed = _train(tmp_path / "b", Validator())
    untimed = lambda row: {k: v for k, v in row.items() if k != "elapsed_s"}  # noqa: E731
    assert untimed(resumed["best"]) == untimed(straight["best"]) and resumed["step"] == straight["step"]
    a, b = unique_state_dict(straight_model), unique_state_dict(resumed_model)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows_a, rows_b = read_jsonl(tmp_path / "a" / "metrics.jsonl"), read_jsonl(tmp_path / "b" / "metrics.jsonl")
    assert [r["step"] for r in rows_b] == [r["step"] for r in rows_a]  # no row twice, none missing


def test_a_stop_metric_the_evaluation_does_not_give_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="early stopping on 'bleu'"):
        train(tiny_model(), PairData(PAIRS, PAIRS[:4], pad_id=1, max_len=16),
              TrainConfig(max_steps=8, batch_size=4, eval_every=4, patience=2, stop_metric="bleu", progress=False))
