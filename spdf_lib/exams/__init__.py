"""The professional-certification exam evaluation (Noever & Ciolino, arXiv 2312.10603).

Modules, in the order the data flows:

- `parse`: load `certify/certification_exams.csv`, repair text, parse options and keys, exclusion reasons;
- `fields`: the field of each certification, from the editable rules in `fields.yaml`;
- `prompts`: the MMLU-style prompt, chat prompts (system line + question) and plain prompts, option rotations;
- `extract`: `extract_answer(reply, n_options)`, the letters a generated reply commits to, or why none;
- `backends`: `LocalLM` (HF folders, the kit's GPTs, SmolLM2 from its wheel) and, in `api`, `ApiLM` (OpenAI-compatible);
  `completions`: `CompletionsLM`, log-likelihoods through a completions endpoint; `pool`: polite concurrent requests
  (bounded concurrency, rate budgets, retries); `resume`: replies appended as they arrive, never asked twice;
- `scoring`: per-question records (`QuestionRecord`, `ScoreOptions`), plain and CircularEval, with a progress bar;
  `cloze`: the option-text formulations (cf, hybrid) and their normalisations; `pride`: PriDe's letter debiasing;
- `cost`: the scorer's work (tokens and forward calls) of an exam point and its price, for the plan
  (`spdf_lib.sweep_cost`); `price`: a served exam priced and planned before compute (`spdf exam --plan`);
- `baselines`: the pass rule, exact random-guessing pass probabilities, always-X (strict single letter / as
  many letters as the key) and majority letters;
- `intervals`: bootstrap intervals of accuracies and pass shares;
- `tables`: certification scores, pass shares by field over whole certifications beside the baselines,
  accuracy beside pass share, letter distribution and its distance to the keys', unanswered replies, results.json;
- `run`: `run_exam(params, run_dir)`, what the notebook, `spdf exam` and sweeps call (question selection, run
  records); `params`: its parameter schema; `summary`: the printed summary;
  `cli`: `spdf exam`; `lmeval_export`: the questions as lm-evaluation-harness tasks;
- `plots`, `report_section`: the exam study's figures and its part of the report.
"""
