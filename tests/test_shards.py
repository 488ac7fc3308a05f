"""Token shards: header and counts, decoding gives back the text, determinism, `--tokens` and resume after a kill;
`ShardStream`: epochs, DDP (two processes read disjoint windows and compute what one computes), bitwise resume
mid-shard, the loss falls on a tiny model."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from data_fixtures import (
    build_corpora,
    register_corpora,
    shakespeare_documents,
    train_test_tokenizer,
    wiki_documents,
)
from safetensors.torch import load_file
from tokenizers import Tokenizer

from spdf_lib.data import corpora, registry
from spdf_lib.data.prepare import add_prepare_arguments, prepare_shards
from spdf_lib.data.registry import DataError
from spdf_lib.data.shard_stream import ShardStream
from spdf_lib.data.shards import ShardSet, shard_set_info
from spdf_lib.data.tokenizer_spec import resolve_tokenizer
from spdf_lib.jsonio import read_jsonl
from spdf_lib.modeling_gpt import GPTForCausalLM, gpt_config
from spdf_lib.train import TrainConfig, evaluate, train

HERE = Path(__file__).resolve().parent


def _env() -> dict[str, str]:
    """The environment for a subprocess, taken now (the fixtures set the mirror and cache)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}

KW = dict(shard_tokens=20_000, val_tokens=5_000, progress=False)


@pytest.fixture(scope="module")
def data(mirror, tmp_path_factory):
    """Test corpora `fw` (parquet, like FineWeb-Edu) and `pile` (jsonl.zst) in a folder mirror, a kit tokenizer,
    and a private cache; `fw` and `pile` shards prepared once."""
    root = tmp_path_factory.mktemp("corpora")
    build_corpora(mirror, root)
    tok = train_test_tokenizer(mirror, tmp_path_factory.mktemp("tokenizer"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry, "REGISTRY", dict(registry.REGISTRY))
        mp.setattr(corpora, "CORPORA", dict(corpora.CORPORA))
        register_corpora(root)
        mp.setenv("SPDF_DATA_MIRROR", str(root))
        mp.setenv("SPDF_CACHE", str(tmp_path_factory.mktemp("cache")))
        shards = tmp_path_factory.mktemp("shards")
        fw = prepare_shards("fw", str(tok), out=shards / "fw", workers=2, **KW)
        pile = prepare_shards("pile", str(tok), out=shards / "pile", workers=2, **KW)
        yield SimpleNamespace(root=root, tok=tok, fw=fw, pile=pile, mirror=mirror,
                              decoder=Tokenizer.from_file(str(tok / "tokenizer.json")))


def _docs(ids: np.ndarray, eos: int, decoder: Tokenizer) -> list[str]:
    ends = np.flatnonzero(ids == eos)  # every document ends with EOS
    starts = [0, *(ends[:-1] + 1)]
    return [decoder.decode(ids[a:b].tolist()) for a, b in zip(starts, ends, strict=True)]


def _train_ids(s: ShardSet) -> np.ndarray:
    return np.concatenate([s.array(i) for i in range(len(s.shards))])


def test_shard_header_counts_and_files(data):
    s = ShardSet.load(data.fw.root)
    tok = resolve_tokenizer(str(data.tok))
    assert (s.dtype, s.vocab_size, s.eos_id, s.tokenizer_hash) == ("uint16", 512, tok.eos_id, tok.hash)
    assert [x.tokens for x in s.shards[:-1]] == [20_000] * (len(s.shards) - 1) and 0 < s.shards[-1].tokens <= 20_000
    assert s.val_tokens == 5_000 and s.exhausted and s.train_tokens == sum(x.tokens for x in s.shards)
    for x in s.shards + [s.val]:
        assert (s.root / x.file).stat().st_size == 2 * x.tokens
    assert sorted(s.sources) == ["fw/000.parquet", "fw/001.parquet"]
    assert all(v.startswith("sha256:") for v in s.sources.values())
    assert [x.start for x in s.shards[1:]] == [x.end for x in s.shards[:-1]]  # contiguous stream positions
    info = shard_set_info(s.root)
    assert info["train_tokens"] == s.train_tokens and info["bytes"] == 2 * (s.train_tokens + 5_000)
    index = json.loads((s.root / "index.json").read_text())
    assert index["format"] == "spdf-shards/1" and index["train_tokens"] == s.train_tokens


def test_decoding_the_shards_gives_back_the_documents(data):
    s, docs = data.fw, wiki_documents(data.mirror)
    k = s.val.documents  # the first k documents are held out (the last one cut at --val-tokens)
    val = data.decoder.decode(s.array("val").tolist())
    assert val == data.decoder.decode(np.concatenate(
        [data.decoder.encode(d).ids + [s.eos_id] for d in docs[:k]])[:5_000].tolist())
    train_ids = _train_ids(s)
    assert train_ids[-1] == s.eos_id
    assert _docs(train_ids, s.eos_id, data.decoder) == docs[k:]
    # windows of the ASCII corpus decode to pieces of its text
    text = "\n\n".join(shakespeare_documents(data.mirror))
    stream = ShardStream(data.pile, 64, seed=1)
    for row in stream.collate(stream.examples(3, 8))["input_ids"]:
        piece = data.decoder.decode(row.tolist(), skip_special_tokens=False).replace("<|endoftext|>", "\n\n")
        assert piece in text


def test_tokenizing_twice_gives_identical_shards(data, tmp_path):
    again = prepare_shards("fw", str(data.tok), out=tmp_path / "again", workers=0, **KW)  # one process this time
    assert [x.sha256 for x in again.shards] == [x.sha256 for x in data.fw.shards]
    for x in again.shards + [again.val]:
        assert (again.root / x.file).read_bytes() == (data.fw.root / x.file).read_bytes()


def test_tokens_stops_early_and_a_larger_run_extends_to_the_same_shards(data, tmp_path):
    s = prepare_shards("pile", str(data.tok), tokens=30_000, out=tmp_path / "a", workers=1, **KW)
    assert s.train_tokens == 30_000 and [x.tokens for x in s.shards] == [20_000, 10_000] and not s.exhausted
    assert s.val.sha256 == data.pile.val.sha256  # validation comes from val.jsonl.zst, whatever --tokens is
    first = (s.root / s.shards[0].file).stat().st_mtime_ns
    s = prepare_shards("pile", str(data.tok), tokens=50_000, out=tmp_path / "a", workers=1, shard_tokens=20_000,
                       progress=False)  # no --val-tokens: the set keeps its own
    assert s.train_tokens == 50_000 and (s.root / s.shards[0].file).stat().st_mtime_ns == first
    assert [x.sha256 for x in s.shards] == [x.sha256 for x in data.pile.shards[:2]] + [s.shards[2].sha256]
    assert _train_ids(s).tolist() == _train_ids(data.pile)[:50_000].tolist()
    with pytest.raises(DataError, match="shard_tokens=20000.*another --out"):
        prepare_shards("pile", str(data.tok), tokens=60_000, out=tmp_path / "a", workers=0, shard_tokens=10_000,
                       val_tokens=5_000, progress=False)


def test_prepare_resumes_after_a_kill_without_redoing_finished_shards(data, tmp_path):
    out = tmp_path / "killed"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; import data_fixtures as d; "
            "from spdf_lib.data.prepare import prepare_shards\n"
            "if __name__ == '__main__':\n"
            "    d.register_corpora(Path(sys.argv[2]))\n"
            "    prepare_shards('fw', sys.argv[3], out=sys.argv[4], workers=1, shard_tokens=4_000, val_tokens=5_000)")
    script = tmp_path / "prepare.py"
    script.write_text(code)
    p = subprocess.Popen([sys.executable, str(script), str(HERE), str(data.root), str(data.tok), str(out)],
                         env=_env(), stderr=subprocess.DEVNULL, start_new_session=True)
    index = out / "index.json"
    while p.poll() is None and (not index.is_file() or len(json.loads(index.read_text())["shards"]) < 3):
        time.sleep(0.01)
    os.killpg(p.pid, signal.SIGKILL)  # the whole group: the tokenizer workers too
    p.wait()
    killed = ShardSet.load(out)
    assert not killed.exhausted, "the preparation finished before it could be killed"
    done = {x.file: (out / x.file).stat().st_mtime_ns for x in killed.shards}
    s = prepare_shards("fw", str(data.tok), out=out, workers=1, shard_tokens=4_000, val_tokens=5_000, progress=False)
    assert s.exhausted and all((out / f).stat().st_mtime_ns == t for f, t in done.items())
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert _train_ids(s).tolist() == _train_ids(data.fw).tolist()  # the same stream as one uninterrupted run


def test_bad_input_is_one_clear_line(data, monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("SPDF_TOKENIZER_GPT2", raising=False)
    with pytest.raises(DataError) as e:  # offline: GPT-2's tokenizer.json is neither cached nor in the mirror
        resolve_tokenizer("gpt2")
    assert "SPDF_TOKENIZER_GPT2" in str(e.value) and "--tokenizer PATH" in str(e.value) and "\n" not in str(e.value)
    monkeypatch.setenv("SPDF_TOKENIZER_GPT2", str(data.tok))
    with pytest.raises(DataError, match="512 tokens, GPT-2's has 50257"):
        resolve_tokenizer("gpt2")
    from spdf_lib.cli import main

    assert main(["data", "prepare", "pile", "--tokenizer", str(tmp_path / "nope"), "--tokens", "1e4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("spdf data: error: ") and "nope" in err[0] and "tokenizer.json" in err[0]
    parser = argparse.ArgumentParser()
    add_prepare_arguments(parser)
    assert parser.parse_args(["pile", "--tokenizer", "x", "--tokens", "2.505e9"]).tokens == 2_505_000_000
    with pytest.raises(DataError, match="spdf data prepare pile-uncopyrighted"):
        corpora.load_corpus("pile-uncopyrighted")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="holds other files .notes.txt"):  # --out never deletes what is not ours
        prepare_shards("pile", str(data.tok), out=tmp_path / "mine", workers=0, **KW)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_shard_stream_epochs_are_permutations_and_pure_functions_of_the_step(data):
    s = ShardStream(data.fw, 32, seed=3)
    w = s.windows_per_epoch
    assert w == sum((x.tokens - 1) // 32 for x in data.fw.shards) and s.tokens_per_epoch == 32 * w
    epoch = [s.window(i) for i in range(w)]
    assert len(set(epoch)) == w  # every window once
    assert all(0 <= off <= data.fw.shards[sh].tokens - 33 and off % 32 == 0 for sh, off in epoch)
    assert sorted(epoch) != epoch  # shuffled
    assert [s.window(i) for i in range(w, 2 * w)] != epoch and set(s.window(i) for i in range(w, 2 * w)) == set(epoch)
    fresh = ShardStream(data.fw.root, 32, seed=3)
    assert fresh.examples(57, 8) == s.examples(57, 8)  # no state: a resumed run draws the same windows
    ranks = [s.examples(5, 8)[r::2] for r in range(2)]  # what train() gives each of 2 ranks
    assert not set(ranks[0]) & set(ranks[1]) and sorted(ranks[0] + ranks[1]) == sorted(s.examples(5, 8))
    batch = s.collate(s.examples(0, 4))
    assert batch["input_ids"].dtype == torch.int64 and batch["input_ids"].shape == (4, 32)
    assert torch.equal(batch["targets"][:, :-1], batch["input_ids"][:, 1:])  # windows of seq_len + 1 tokens
    shard, off = s.examples(0, 1)[0][1:]
    assert batch["targets"][0, -1] == int(data.fw.array(shard)[off + 32])


def test_in_memory_adapter_reads_like_a_shard_set(data):
    train, val = _train_ids(data.pile), np.asarray(data.pile.array("val"))
    mem = ShardStream(ShardSet.from_arrays(torch.from_numpy(train.astype(np.int64)), val, 512, data.pile.eos_id), 32)
    one = ShardStream(ShardSet.from_arrays(train, val, 512, data.pile.eos_id), 32)
    assert mem.examples(2, 8) == one.examples(2, 8)
    assert torch.equal(mem.collate(mem.examples(2, 8))["input_ids"], one.collate(one.examples(2, 8))["input_ids"])
    sh, off = mem.window(7)
    assert mem.collate([("train", sh, off)])["input_ids"][0].tolist() == train[off : off + 32].tolist()


def _model(seed: int = 0) -> GPTForCausalLM:
    torch.manual_seed(seed)
    return GPTForCausalLM(gpt_config("nano", n_embd=32, n_head=4, vocab_size=512, n_positions=32))


def test_loss_falls_training_on_shards(data):
    stream = ShardStream(data.pile, 32, eval_windows=8)
    model = _model()
    before = evaluate(model, stream, 8, "cpu", "fp32")
    assert before > 6.0  # ln(512) = 6.24: an untrained model knows nothing
    last = train(model, stream, TrainConfig(max_steps=30, batch_size=8, lr=1e-2, precision="fp32", progress=False))
    assert last["eval_loss"] < before - 0.7 and last["tokens"] == 30 * 8 * 32


class _Crash(ShardStream):
    """A stream whose reader dies at step `at` (the process is killed there)."""

    at = -1

    def examples(self, step: int, n: int) -> list:
        if step == self.at:
            raise KeyboardInterrupt
        return super().examples(step, n)


def test_resuming_mid_shard_gives_bitwise_the_same_weights(data, tmp_path):
    cfg = TrainConfig(max_steps=12, batch_size=8, lr=3e-3, checkpoint_every=4, precision="fp32", progress=False)
    straight = _model()
    train(straight, ShardStream(data.fw, 32), cfg, out_dir=tmp_path / "straight")
    crashing = _Crash(data.fw, 32)
    crashing.at = 7  # after the step-4 checkpoint, inside the first shard (625 windows, 8 per step)
    with pytest.raises(KeyboardInterrupt):
        train(_model(), crashing, cfg, out_dir=tmp_path / "resumed")
    resumed = _model(seed=1)  # a different init: everything must come from the checkpoint
    train(resumed, ShardStream(data.fw, 32), cfg, out_dir=tmp_path / "resumed")
    a, b = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_two_ddp_processes_read_disjoint_windows_and_match_one(data, tmp_path):
    import shard_worker

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker process does
    try:
        shard_worker.run(data.pile.root, tmp_path / "one", 5)  # one process: this one
    finally:
        torch.set_num_threads(threads)
    worker = HERE / "shard_worker.py"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(worker),
           str(data.pile.root), str(tmp_path / "two"), "5"]
    two = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    read = [{tuple(x) for x in json.loads((tmp_path / "two" / f"windows-rank{r}.json").read_text())} for r in (0, 1)]
    alone = {tuple(x) for x in json.loads((tmp_path / "one" / "windows-rank0.json").read_text())}
    assert not read[0] & read[1] and read[0] | read[1] == alone and len(alone) == 5 * 8
    l1 = [r["loss"] for r in read_jsonl(tmp_path / "one" / "metrics.jsonl")]
    l2 = [r["loss"] for r in read_jsonl(tmp_path / "two" / "metrics.jsonl")]
    torch.testing.assert_close(torch.tensor(l2), torch.tensor(l1), rtol=1e-5, atol=1e-5)
    a, b = load_file(tmp_path / "one" / "final.safetensors"), load_file(tmp_path / "two" / "final.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-4)


def test_pretraining_runs_from_prepared_shards_with_the_epoch_guard(data, tmp_path):
    """`spdf_pretrain` on a streamed corpus: the shards' tokenizer (with the fine-tuning specials added), the
    epoch guard on the shards' size, and one-line errors for missing or mismatched shards."""
    from spdf_lib.params import ParamsError, validate
    from spdf_lib.pretrain import run_pretrain
    from spdf_lib.pretrain_params import PretrainParams
    from spdf_lib.tokenizer import PAD, SEP, load_tokenizer

    base = dict(corpus="fw", tokenizer=str(data.tok), shards=str(data.fw.root), model_size="nano", n_embd=32,
                n_head=4, seq_len=32, batch_size=8, lr=1e-2, precision="fp32", progress=False, eval_windows=8)
    res = run_pretrain(PretrainParams(**base, tokens=8 * 32 * 20), tmp_path / "run")
    assert res["steps"] == 20 and res["corpus_tokens"] == ShardStream(data.fw, 32).tokens_per_epoch
    assert 0 < res["epochs"] < 1 and res["eval_loss"] < 6.0
    tok = load_tokenizer(tmp_path / "run" / "model")
    assert tok.pad_token == PAD and tok.sep_token == SEP and len(tok) == 512  # the kit tokenizer has them already
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert any(k.startswith("fw/") for k in manifest["data"]) and any(k.endswith(".bin") for k in manifest["data"])

    too_many = data.fw.train_tokens * 3
    with pytest.raises(ParamsError, match=r"passes over corpus 'fw' .* more than max_epochs=1"):
        run_pretrain(PretrainParams(**base, tokens=too_many), tmp_path / "guard")
    with pytest.raises(ParamsError, match=f"no token shards of 'fw' in {tmp_path / 'none'}; prepare them first: "
                                          f"spdf data prepare fw --tokenizer "):
        run_pretrain(PretrainParams(**{**base, "shards": str(tmp_path / "none")}, tokens=1e4), tmp_path / "x")
    with pytest.raises(ParamsError, match="holds shards of 'pile'"):
        run_pretrain(PretrainParams(**{**base, "shards": str(data.pile.root)}, tokens=1e4), tmp_path / "y")
    assert not (tmp_path / "guard" / "checkpoints").exists()
    with pytest.raises(ParamsError, match="is read from token shards: set tokenizer"):
        validate(PretrainParams, {"corpus": "fw"})


def test_the_data_stage_prepares_shards_with_records(data, tmp_path):
    from spdf_lib.data.prepare import PrepareParams, run_prepare

    res = run_prepare(PrepareParams(corpus="pile", tokenizer=str(data.tok), tokens=30_000, shard_tokens=20_000,
                                    val_tokens=5_000, workers=0, progress=False), tmp_path / "prep")
    s = ShardSet.load(tmp_path / "prep" / "shards")
    assert res["train_tokens"] == s.train_tokens == 30_000 and res["shards"] == 2
    assert json.loads((tmp_path / "prep" / "manifest.json").read_text())["data"] == s.sources
