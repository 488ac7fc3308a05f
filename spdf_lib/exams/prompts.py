"""Prompt formats and option rotations (CircularEval). Answer extraction lives in `extract`.

Log-likelihood prompts follow lm-evaluation-harness's MMLU task (`doc_to_text`), zero-shot:

    {stem}
    A. {option}
    B. {option}
    Answer:

and the continuations scored are " A", " B", … (`target_delimiter` " ").

Generation has two formats, chosen per run and recorded (manifest `info.prompt_format`, per-question `prompt`):

- `chat` (instruct models; every API model): a system message stating the answer format (`SYSTEM`), then one
  user message with the question, its lettered options and how many letters to give. A local model renders it
  with its own chat template, an API through its chat-completions endpoint.
- `plain` (base models, i.e. a model without a chat template): the same instruction as a first line, then the
  MMLU-style question ending in "Answer:", so that a base model continues with a letter.
"""

from __future__ import annotations

from typing import Literal

from spdf_lib.exams.parse import LETTERS, Question

PromptFormat = Literal["chat", "plain"]
_NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}

# No example letter in the instruction: an example ("for example B") would itself be a letter bias.
SYSTEM = (
    "You are taking a professional certification exam. Reply to each multiple-choice question with the letter of "
    "the correct option and nothing else. When a question asks for several options, reply with their letters "
    "separated by commas."
)


def rotation(n: int, r: int) -> tuple[int, ...]:
    """Option order for rotation `r` of `n` options: shown position i holds original option (i + r) mod n."""
    return tuple((i + r) % n for i in range(n))


def to_original(shown: frozenset[str], order: tuple[int, ...]) -> frozenset[str]:
    """Letters chosen among the shown (rotated) options -> the original options' letters."""
    return frozenset(LETTERS[order[LETTERS.index(s)]] for s in shown)


def question_block(q: Question, order: tuple[int, ...] | None = None) -> str:
    order = order if order is not None else tuple(range(len(q.options)))
    lines = [q.stem.strip()]
    lines += [f"{LETTERS[i]}. {q.options[j]}" for i, j in enumerate(order)]
    return "\n".join(lines)


def loglik_prompt(q: Question, order: tuple[int, ...] | None = None) -> str:
    """The MMLU-style zero-shot prompt: question, lettered options, `Answer:`."""
    return question_block(q, order) + "\nAnswer:"


def ask_line(n_answers: int) -> str:
    """The line that tells the model how many letters to give."""
    if n_answers == 1:
        return "Answer with the letter of the correct option."
    return f"Choose exactly {_NUMBER_WORDS.get(n_answers, n_answers)} options; answer with their letters."


def chat_messages(q: Question, n_answers: int, order: tuple[int, ...] | None = None) -> list[dict]:
    """The `chat` prompt: the system line (`SYSTEM`), then the question and how many letters to give."""
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"{question_block(q, order)}\n\n{ask_line(n_answers)}"},
    ]


def plain_prompt(q: Question, n_answers: int, order: tuple[int, ...] | None = None) -> str:
    """The `plain` prompt for base models: the instruction, the question, how many letters, then "Answer:"."""
    ask = "" if n_answers == 1 else f"({ask_line(n_answers)})\n"
    return f"{SYSTEM}\n\n{question_block(q, order)}\n{ask}Answer:"


def generation_prompt(q: Question, n_answers: int, fmt: PromptFormat, order: tuple[int, ...] | None = None):
    """The prompt of format `fmt`: chat messages (`chat`) or text (`plain`)."""
    if fmt == "chat":
        return chat_messages(q, n_answers, order)
    if fmt == "plain":
        return plain_prompt(q, n_answers, order)
    raise ValueError(f"prompt format {fmt!r}: choose chat or plain")
