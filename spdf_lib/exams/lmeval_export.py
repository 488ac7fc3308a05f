"""`spdf exam --export-lmeval DIR`: the certification questions as lm-evaluation-harness tasks, so that any model
lm-eval can load answers the same questions with the kit's prompts.

DIR gets `certification_exams.jsonl` (one selected question a line: data row, certification, field, stem, options,
the key's index) and two task files:

- `spdf_certify_cf.yaml`: the cloze formulation, `Question: {stem}\\nAnswer:` and the option texts as choices
  (lm-eval's `acc` is the kit's `cf` with `norm: none`, `acc_norm` its `char`); a question with an option that
  names other options gets the lettered prompt instead, as the kit's `cf` scores it (`hybrid`);
- `spdf_certify_mcf.yaml`: the lettered prompt of `prompts.loglik_prompt` with the letters as choices (`acc` is
  the kit's `mcf` log-likelihood choice).

lm-eval's `multiple_choice` takes one answer per question (a list target counts any key letter as right, not
the kit's k best), so questions whose key has several letters are left out, and the export says how many. The
data file is named by its absolute path (lm-eval reads `data_files` relative to the working directory).

    lm_eval --model hf --model_args pretrained=PATH --include_path DIR --tasks spdf_certify_cf,spdf_certify_mcf
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from spdf_lib.exams.cloze import reference_reason
from spdf_lib.exams.parse import LETTERS, Question
from spdf_lib.owned import make_room, write_owned

DATA_NAME = "certification_exams.jsonl"
TASKS = ("spdf_certify_cf", "spdf_certify_mcf")
_MCF = ("{{question.strip()}}\n{% for c in choices %}{{letters[loop.index0]}}. {{c}}\n{% endfor %}Answer:")
_CF = "{% if hybrid %}" + _MCF + "{% else %}Question: {{question.strip()}}\nAnswer:{% endif %}"


def doc(q: Question, field: str = "") -> dict:
    """One lm-eval document: the kit's question with its options, the key's index and whether `cf` scores it with
    the options shown (`hybrid`, an option names others)."""
    return {"row": int(q.qid), "certification": q.certification, "field": field, "question": q.stem,
            "choices": list(q.options), "letters": list(LETTERS[: len(q.options)]),
            "answer": LETTERS.index(next(iter(q.key))), "hybrid": reference_reason(q) is not None}


def task_config(name: str, data_file: Path, text: str, choice: str, metrics: list[str]) -> dict:
    return {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": text,
        "doc_to_choice": choice,
        "doc_to_target": "answer",
        "target_delimiter": " ",
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in metrics],
        "metadata": {"version": 1.0, "source": "spdf-kit exams (Noever & Ciolino, arXiv 2312.10603)"},
    }


def write_tasks(folder: str | Path, questions: list[Question], fields: dict[str, str] | None = None,
                overwrite: bool = False) -> tuple[list[Path], int]:
    """Write the data and both task files into `folder`; returns their paths and how many multi-answer
    questions were left out. A file there that the kit did not write (a user's edited task) is refused before
    anything is written, or with `overwrite` moved aside (`spdf_lib.owned`)."""
    folder = Path(folder).resolve()
    single = [q for q in questions if q.scored and len(q.key) == 1]
    if not single:
        raise ValueError("export-lmeval: the selection has no single-answer question to export")
    data = folder / DATA_NAME
    paths = [data, *(folder / f"{name}.yaml" for name in TASKS)]
    for path in paths:
        make_room(path, overwrite)
    folder.mkdir(parents=True, exist_ok=True)
    write_owned(data, "".join(json.dumps(doc(q, (fields or {}).get(q.certification, "")), ensure_ascii=False)
                              + "\n" for q in single).encode("utf-8"))
    for path, (name, text, choice, metrics) in zip(paths[1:], (
            ("spdf_certify_cf", _CF, "choices", ["acc", "acc_norm"]), ("spdf_certify_mcf", _MCF, "letters", ["acc"])),
            strict=True):
        write_owned(path, yaml.safe_dump(task_config(name, data, text, choice, metrics), sort_keys=False,
                                         allow_unicode=True, width=1000).encode("utf-8"))
    return paths, sum(q.scored and len(q.key) > 1 for q in questions)


def export_lmeval(folder: str | Path, p, overwrite: bool = False) -> list[Path]:
    """The questions `p` selects (every scorable question unless it selects fewer) as lm-eval tasks in `folder`."""
    from spdf_lib.exams.run import prepare, select

    questions, _, _, fields = prepare(p)
    chosen = select(questions, p, fields)
    paths, multi = write_tasks(folder, chosen, fields, overwrite)
    n = sum(1 for _ in paths[0].open(encoding="utf-8"))
    print(f"exported {n} single-answer questions ({multi} with several key letters left out: lm-eval's "
          f"multiple_choice takes one answer) as {', '.join(TASKS)}; run:\n  lm_eval --model hf --model_args "
          f"pretrained=PATH --include_path {Path(folder).resolve()} --tasks {','.join(TASKS)}")
    return paths
