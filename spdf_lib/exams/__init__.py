"""The professional-certification exam evaluation (Noever & Ciolino, arXiv 2312.10603; papers.md §3).

Modules, in the order the data flows:

- `parse`: load `certify/certification_exams.csv`, repair text, parse options and keys, exclusion reasons;
- `fields`: the field of each certification, from the editable rules in `fields.yaml`;
- `prompts`: the MMLU-style prompt, chat messages, option rotations, answer extraction;
- `backends`: `LocalLM` (HF folders, the kit's GPTs, SmolLM2 from its wheel) and `ApiLM` (OpenAI-compatible);
- `scoring`: per-question records, plain and CircularEval;
- `baselines`: the pass rule, exact random-guessing pass probabilities, always-X and majority letters;
- `report`: certification scores, pass shares by field beside the baselines, letter bias, results.json;
- `run`: `run_exam(params, run_dir)`, what the notebook, `spdf exam` and sweeps call; `cli`: `spdf exam`.
"""
