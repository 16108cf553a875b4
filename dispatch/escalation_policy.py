"""Pure escalation decisions: which step comes next, and when.

A policy is the ordered list of steps for one service (settings
``escalation.policies``). Delays are relative to the previous step's actual
execution, so a step that fires late (the service was down) does not drag the
rest of the round into a burst of pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from foundation.settings import EscalationStep


@dataclass(frozen=True)
class StepRef:
    round: int
    seq: int


def following(
    policy: Sequence[EscalationStep], current: StepRef, *, repeat: int, round_gap_s: float
) -> tuple[StepRef, float] | None:
    """The step after ``current`` and its delay in seconds, or None when the policy is exhausted."""
    if current.seq + 1 < len(policy):
        delay = policy[current.seq + 1].after_s - policy[current.seq].after_s
        return StepRef(current.round, current.seq + 1), delay
    if current.round < repeat:
        return StepRef(current.round + 1, 0), round_gap_s
    return None


def after_decline(policy: Sequence[EscalationStep], current_round: int) -> StepRef:
    """Where a decline jumps to: the policy's first ``next_unit`` step, at once.

    Without one, the first step again (which pages the newly picked nearest unit).
    """
    for seq, step in enumerate(policy):
        if step.action == "next_unit":
            return StepRef(current_round, seq)
    return StepRef(current_round, 0)


def incident_state(assignment_states: Sequence[str]) -> str | None:
    """The incident's state as the least advanced of its live assignments.

    An exhausted assignment (every step of the policy ran and nobody accepted) makes the
    incident ``unanswered``: nobody is coming for that service, and it must never read as
    ``dispatched``. None when there is no assignment yet (the incident keeps its own state).
    """
    live = [s for s in assignment_states if s != "cancelled"]
    if not live:
        return "cancelled" if assignment_states else None
    if all(s == "resolved" for s in live):
        return "resolved"
    if "exhausted" in live:
        return "unanswered"
    if "active" in live:
        return "dispatched"
    if all(s in ("on_scene", "resolved") for s in live):
        return "on_scene"
    return "acknowledged"
