"""What a paper's verdicts presuppose, checked before any of them is read: the outcome type and the checks that
several papers' studies share (SPDF's and Primer's "each chosen learning rate inside its grid").

A failed precondition does not hide the verdicts: a report prints them under a line saying which precondition
failed and what the verdicts therefore cannot mean (`warning`). Each paper's own preconditions live in its package
(`spdf_lib.spdf.preconditions`, `spdf_lib.primer.preconditions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MET, FAILED, UNCHECKED = "met", "failed", "not checked"


@dataclass(frozen=True)
class Precondition:
    """One precondition's outcome: `what` it requires, `status` (met, failed, not checked), the measured `detail`,
    `meaning`: what the verdicts cannot mean when it fails, and the `task` whose verdicts it concerns (None: every
    verdict of the study rests on it)."""

    what: str
    status: str
    detail: str
    meaning: str = ""
    task: str | None = None

    @property
    def line(self) -> str:
        return f"- Precondition: {self.what}: **{self.status}** — {self.detail}."


def grid_position(rate: float, grid: Sequence[float]) -> str:
    """Where a chosen `rate` lies in the sorted `grid` it was chosen from: "inside", "its lower edge", "its upper
    edge", or "the only rate tried". Only "inside" shows that the best rate is not beyond the grid."""
    if len(grid) == 1:
        return "the only rate tried"
    return "its lower edge" if rate == grid[0] else "its upper edge" if rate == grid[-1] else "inside"


def warning(conditions: Sequence[Precondition], paper: str, task: str | None = None) -> str:
    """The line the verdicts are printed under when a precondition failed ('' when none did): which ones, and
    what the verdicts therefore cannot mean as evidence about `paper`. With `task`, only the preconditions those
    verdicts rest on count (the study-wide ones and that task's own)."""
    failed = [c for c in conditions if c.status == FAILED and (task is None or c.task in (None, task))]
    if not failed:
        return ""
    scope = f"the {task} verdicts" if task else "these verdicts"
    return (f"- **Precondition failed — {scope} are printed, but they cannot be read as evidence about {paper}.** "
            + " ".join(f"{c.what[0].upper()}{c.what[1:]} failed: {c.meaning}." for c in failed))
