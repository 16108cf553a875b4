"""The default policy, second by second, for a press nobody answers (README's worked timeline).

Calls ring out after 25 s (no-answer), which brings each following step forward; the
clock is simulated (tests/escalation_walk.py), everything else is the real engine,
database and Twilio status webhook.
"""

from __future__ import annotations

from pathlib import Path

from tests.escalation_walk import walk

# (seconds after the press, event, who): what the README's timeline promises.
DEFAULT_POLICY_UNANSWERED = [
    (0, "step_notify_unit", "POL-01"),  # SMS to the nearest unit
    (30, "step_notify_unit", "POL-01"),  # call
    (55, "voice_no_answer", "POL-01"),  # rang 25 s
    (55, "step_brought_forward", "no-answer"),  # the next-unit step, due at 60 s
    (55, "unit_timed_out", "POL-01"),
    (55, "step_next_unit", "POL-02"),  # SMS and call to the next-nearest
    (80, "voice_no_answer", "POL-02"),
    (80, "step_brought_forward", "no-answer"),  # the supervisor step, due at 85 s
    (80, "step_supervisor", "SUP-POL"),
    (105, "voice_no_answer", "SUP-POL"),
    (105, "step_brought_forward", "no-answer"),  # round 2, due at 110 s (round_gap_s 30)
    (105, "unit_timed_out", "POL-02"),
    (105, "round_started", "POL-01"),  # POL-01 may be paged again
    (105, "step_notify_unit", "POL-01"),  # the nearest unit first again, not POL-02
    (135, "step_notify_unit", "POL-01"),
    (160, "voice_no_answer", "POL-01"),
    (160, "step_brought_forward", "no-answer"),
    (160, "unit_timed_out", "POL-01"),
    (160, "step_next_unit", "POL-02"),
    (185, "voice_no_answer", "POL-02"),
    (185, "step_brought_forward", "no-answer"),
    (185, "step_supervisor", "SUP-POL"),  # once in round 2 as in round 1
    (185, "escalation_exhausted", "police"),
    (185, "state_changed", "unanswered"),
    (210, "voice_no_answer", "SUP-POL"),  # nothing left to bring forward
]
WHO = {
    "step_notify_unit": "unit_id",
    "step_next_unit": "unit_id",
    "unit_timed_out": "unit_id",
    "voice_no_answer": "recipient",
    "step_brought_forward": "reason",
    "escalation_exhausted": "service",
    "state_changed": "state",
}


def test_a_press_nobody_answers_on_the_default_policy(database_url: str, tmp_path: Path) -> None:
    result = walk(database_url, tmp_path)
    seen = []
    for row in result.rows:
        if row.kind == "step_supervisor":
            seen.append((row.second, row.kind, "SUP-POL" if row.data["notifications"] == 2 else "none"))
        elif row.kind == "round_started":
            seen.append((row.second, row.kind, ",".join(row.data["readmitted"])))
        elif row.kind in WHO:
            seen.append((row.second, row.kind, row.data[WHO[row.kind]]))
    assert seen == DEFAULT_POLICY_UNANSWERED
    assert result.incident_state == "unanswered"
    assert result.device_states == ["dispatched", "unanswered"]  # never "dispatched" at the end
