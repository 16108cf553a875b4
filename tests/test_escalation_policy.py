"""The escalation policy's pure decisions."""

from __future__ import annotations

import pytest

from dispatch.escalation_policy import StepRef, after_decline, following, incident_state
from foundation.settings import EscalationStep

POLICY = (
    EscalationStep(after_s=0, action="notify_unit", channels=("sms",)),
    EscalationStep(after_s=30, action="notify_unit", channels=("voice",)),
    EscalationStep(after_s=60, action="next_unit", channels=("sms", "voice")),
    EscalationStep(after_s=90, action="supervisor", channels=("sms", "voice")),
)


def test_each_step_follows_the_previous_by_the_difference_of_their_offsets() -> None:
    assert following(POLICY, StepRef(0, 0), repeat=0, round_gap_s=30) == (StepRef(0, 1), 30)
    assert following(POLICY, StepRef(0, 2), repeat=0, round_gap_s=30) == (StepRef(0, 3), 30)


def test_after_the_last_step_the_policy_repeats_then_is_exhausted() -> None:
    assert following(POLICY, StepRef(0, 3), repeat=2, round_gap_s=45) == (StepRef(1, 0), 45)
    assert following(POLICY, StepRef(1, 3), repeat=2, round_gap_s=45) == (StepRef(2, 0), 45)
    assert following(POLICY, StepRef(2, 3), repeat=2, round_gap_s=45) is None


def test_a_decline_jumps_to_the_next_unit_step_of_the_current_round() -> None:
    assert after_decline(POLICY, 1) == StepRef(1, 2)
    assert after_decline(POLICY[:2], 0) == StepRef(0, 0)


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([], None),
        (["active"], "dispatched"),
        (["exhausted"], "unanswered"),
        (["exhausted", "accepted"], "unanswered"),
        (["exhausted", "cancelled"], "unanswered"),
        (["accepted"], "acknowledged"),
        (["on_scene"], "on_scene"),
        (["resolved"], "resolved"),
        (["cancelled"], "cancelled"),
        (["accepted", "active"], "dispatched"),
        (["on_scene", "accepted"], "acknowledged"),
        (["on_scene", "resolved"], "on_scene"),
        (["resolved", "cancelled"], "resolved"),
    ],
)
def test_the_incident_is_as_far_as_its_least_advanced_assignment(states: list[str], expected: str | None) -> None:
    assert incident_state(states) == expected
