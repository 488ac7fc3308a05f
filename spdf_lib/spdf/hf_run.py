"""`spdf_hf`: SPDF end to end on a Hugging Face model with the tools researchers already use.

SmolLM2-135M's architecture (Llama: 9 query heads, 3 key/value heads, SwiGLU, RMSNorm, rotary, tied head),
scaled down, built from a config, pre-trained with HF `Trainer` on the kit's corpus dense and at `sparsity`
(`spdf_lib.sparsity.sparsify` + `spdf_lib.hf.SPDFCallback`), saved with `save_pretrained`, then fine-tuned
densely from its exact zeros (stock `from_pretrained`: SPDF's dense fine-tuning) on a kit task. Everything the
notebook plots is in `results.json`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, Trainer, TrainingArguments

from spdf_lib.hf import SPDFCallback
from spdf_lib.jsonio import write_json
from spdf_lib.sparsity import load_masks, sparsify, sparsity_report
from spdf_lib.spdf.hf_params import HFParams

# SmolLM2-135M(-Instruct)'s config.json (checked against the real checkpoint in tests/test_exams_smollm2.py)
SMOLLM2_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, rms_norm_eps=1e-5, tie_word_embeddings=True, vocab_size=49152,
                    max_position_embeddings=8192, hidden_act="silu")


def smollm2_scaled(p: HFParams, tok) -> LlamaConfig:
    """SmolLM2-135M's layout with `n_layer` layers and heads of `head_dim` (width = 9 · head_dim, FFN 8/3 wider)."""
    s = SMOLLM2_135M
    d = s["num_attention_heads"] * p.head_dim
    ffn = round(d * s["intermediate_size"] / s["hidden_size"])
    return LlamaConfig(**(s | dict(hidden_size=d, intermediate_size=ffn,
                                   num_hidden_layers=p.n_layer, vocab_size=len(tok), max_position_embeddings=p.seq_len,
                                   bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                   pad_token_id=tok.pad_token_id)))


class Windows(torch.utils.data.Dataset):
    """Consecutive `seq_len` windows of a token stream, as causal-LM examples."""

    def __init__(self, ids: torch.Tensor, seq_len: int):
        self.ids, self.T = ids.long(), seq_len

    def __len__(self) -> int:
        return len(self.ids) // self.T

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x = self.ids[i * self.T: (i + 1) * self.T]
        return {"input_ids": x, "labels": x}


def _args(p: HFParams, out: Path, steps: int, lr: float) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=p.batch_size, per_device_eval_batch_size=16,
        learning_rate=lr, weight_decay=p.weight_decay, warmup_steps=max(1, steps // 10), lr_scheduler_type="cosine",
        logging_steps=p.log_every, eval_strategy="steps", eval_steps=p.eval_every, save_strategy="no", report_to=[],
        use_cpu=True, seed=p.seed, disable_tqdm=True, dataloader_num_workers=0)


def _curve(history: list[dict]) -> list[dict]:
    keep = ("step", "loss", "eval_loss", "spdf_sparse_flos", "spdf_dense_flos", "total_flos")
    return [{k: h[k] for k in keep if k in h} for h in history]


def pretrain(p: HFParams, tok, train, val, sparsity: float, out: Path) -> dict:
    """One pre-training with HF Trainer; the model is saved to `out` (with its masks sidecar when sparse)."""
    torch.manual_seed(p.seed)
    model = AutoModelForCausalLM.from_config(smollm2_scaled(p, tok))
    if sparsity:
        sparsify(model, sparsity, seed=p.seed)
    trainer = Trainer(model, _args(p, out / "trainer", p.steps, p.lr), train_dataset=Windows(train, p.seq_len),
                      eval_dataset=Windows(val[: 16 * p.seq_len * 4], p.seq_len),
                      callbacks=[SPDFCallback()] if sparsity else [])
    trainer.train()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return {"curve": _curve(trainer.state.log_history), "final_eval_loss": trainer.evaluate()["eval_loss"],
            "parameters": model.num_parameters()}


def task_examples(p: HFParams, tok) -> tuple[list[dict], list[dict]]:
    """`source = reference<eos>` examples of the task's training split, padded to `seq_len`, loss on every real
    token; the last 16 are held out."""
    from spdf_lib.data.tasks import load_split

    rows = []
    for ex in load_split(p.task, "train", limit=p.finetune_examples + 16):
        ids = tok(f"{ex.source} = {ex.references[0]}", add_special_tokens=False)["input_ids"][: p.seq_len - 1]
        ids = ids + [tok.eos_token_id]
        pad = p.seq_len - len(ids)
        rows.append({"input_ids": torch.tensor(ids + [tok.pad_token_id] * pad),
                     "attention_mask": torch.tensor([1] * len(ids) + [0] * pad),
                     "labels": torch.tensor(ids + [-100] * pad)})
    return rows[:-16], rows[-16:]


def finetune_dense(p: HFParams, pretrained: Path, data: tuple[list, list], out: Path) -> dict:
    """SPDF's dense fine-tuning: stock `from_pretrained` (dense, exact zeros where the masks were), HF Trainer."""
    model = AutoModelForCausalLM.from_pretrained(pretrained)
    zeros = {n: model.get_parameter(n) == 0 for n in sparsity_report(model).name[:-1]}
    trainer = Trainer(model, _args(p, out, p.finetune_steps, p.finetune_lr), train_dataset=data[0],
                      eval_dataset=data[1])
    trainer.train()
    moved = sum(int((model.get_parameter(n)[z] != 0).sum()) for n, z in zeros.items())
    return {"curve": _curve(trainer.state.log_history), "final_eval_loss": trainer.evaluate()["eval_loss"],
            "former_zeros": sum(int(z.sum()) for z in zeros.values()), "former_zeros_moved": moved}


def report_from_disk(folder: Path):
    """The sparsity report of a saved sparse model: weights and masks read back from `folder`."""
    model = AutoModelForCausalLM.from_pretrained(folder)
    load_masks(model, folder)  # an error when the folder holds no masks
    return sparsity_report(model)


def run_spdf_hf(p: HFParams, run_dir: str | Path) -> dict:
    from spdf_lib.precision import cpu_model
    from spdf_lib.pretrain import tokenized_corpus

    run_dir = Path(run_dir)
    tok, train, val, checksums = tokenized_corpus(p.corpus, p.vocab_size, seed=p.seed, max_chars=p.max_chars)
    res: dict = {"params": p.model_dump(), "data": checksums, "cpu": cpu_model(), "precision": "fp32",
                 "torch_threads": torch.get_num_threads()}
    res["pretrain"] = {name: pretrain(p, tok, train, val, s, run_dir / name)
                       for name, s in (("dense", 0.0), (f"sparse-{p.sparsity:g}", p.sparsity))}
    data = task_examples(p, tok)
    res["finetune"] = {name: finetune_dense(p, run_dir / name, data, run_dir / f"finetune-{name}")
                       for name in res["pretrain"]}
    res["sparsity_report"] = report_from_disk(run_dir / f"sparse-{p.sparsity:g}").to_dict("records")
    write_json(run_dir / "results.json", res)
    return res
