"""Shared test set-up: offline data from the mirror that `SPDF_DATA_MIRROR` names (as the kit finds it; `.ci/run`
sets it), a private cache and runs folder."""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parent.parent
# A private cache and runs folder for the whole session (notebook kernels inherit them).
_TMP = Path(tempfile.mkdtemp(prefix="spdf-tests-"))
os.environ.setdefault("SPDF_CACHE", str(_TMP / "cache"))
os.environ.setdefault("SPDF_RUNS_DIR", str(_TMP / "runs"))
os.environ.setdefault("SPDF_FIGURES_DIR", str(_TMP / "figures"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# pytest-xdist's workers ignore SIGINT, and a child process inherits an ignored signal: the subprocesses the tests
# send Ctrl-C to would never see it. Give this process Python's handler, so its children start with the default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Property tests draw the same examples on every run: a suite that passes once passes again (CI is a fresh clone).
# HYPOTHESIS_PROFILE=explore draws new ones (with `--hypothesis-seed N`) to look for cases the fixed draw misses.
settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


@pytest.fixture(scope="session")
def mirror() -> Path:
    path = Path(os.environ.get("SPDF_DATA_MIRROR", ""))
    if not os.environ.get("SPDF_DATA_MIRROR") or not path.is_dir():
        pytest.skip("these tests need the data mirror folder (SPDF_DATA_MIRROR)")
    return path


@pytest.fixture(scope="session")
def shakespeare_tokens():
    """(tokenizer, train ids, val ids) of the offline Shakespeare corpus at a small vocabulary."""
    from spdf_lib.pretrain import tokenized_corpus

    tok, train, val, _ = tokenized_corpus("shakespeare", 512, seed=0, max_chars=300_000)
    return tok, train, val


def tiny_model(vocab_size: int = 97, seed: int = 0, **overrides):
    """A 2-layer, 32-wide GPT for fast tests."""
    import torch

    from spdf_lib.modeling_gpt import GPTForCausalLM, gpt_config

    torch.manual_seed(seed)
    cfg = gpt_config("nano", n_embd=32, n_head=4, vocab_size=vocab_size, n_positions=64,
                     bos_token_id=0, eos_token_id=0, pad_token_id=1, **overrides)
    return GPTForCausalLM(cfg).eval()
