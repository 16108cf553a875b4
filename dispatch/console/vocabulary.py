"""Catalogue keys the console builds at run time from domain values (``"state." ~ incident.state``),
and those only the browser scripts use (``Console.t("map.legend")``).

Listed literally, marked with ``N_``, so that ``pybabel extract`` (babel.cfg) finds every key the
catalogues need and ``pybabel update`` never marks one obsolete. A new state, delivery status,
timeline kind... gets its key here and its text in both ``dispatch/translations/*/LC_MESSAGES/messages.po``;
tests/test_console_i18n.py fails until it has both.
"""

from __future__ import annotations


def N_(key: str) -> str:
    """Mark a key for extraction; the key itself, unchanged."""
    return key


KEYS = (
    # action
    N_("action.error.already_accepted"),
    N_("action.error.already_owned"),
    N_("action.error.closed"),
    N_("action.error.no_incident"),
    N_("action.error.no_unit"),
    N_("action.error.nothing_to_escalate"),
    N_("action.error.nothing_to_own"),
    N_("action.error.wrong_service"),
    # actor
    N_("actor.auditor"),
    N_("actor.system"),
    N_("actor.twilio"),
    # alert
    N_("alert.new_press"),
    N_("alert.supervisor"),
    N_("alert.unanswered"),
    # assignment
    N_("assignment.accepted"),
    N_("assignment.active"),
    N_("assignment.cancelled"),
    N_("assignment.exhausted"),
    N_("assignment.on_scene"),
    N_("assignment.resolved"),
    # board
    N_("board.updated"),
    # bucket
    N_("bucket.attention"),
    N_("bucket.en_route"),
    N_("bucket.on_scene"),
    N_("bucket.paging"),
    # call
    N_("call.found"),
    N_("call.not_found"),
    # channel
    N_("channel.chat"),
    N_("channel.sms"),
    N_("channel.voice"),
    # classification
    N_("classification.ghost"),
    N_("classification.info"),
    N_("classification.normal"),
    N_("classification.prank"),
    # delivery
    N_("delivery.accepted"),
    N_("delivery.answered"),
    N_("delivery.busy"),
    N_("delivery.canceled"),
    N_("delivery.unconfirmed"),
    N_("delivery.cancelled"),
    N_("delivery.expired"),
    N_("delivery.completed"),
    N_("delivery.delivered"),
    N_("delivery.failed"),
    N_("delivery.in_progress"),
    N_("delivery.initiated"),
    N_("delivery.no_answer"),
    N_("delivery.pending"),
    N_("delivery.queued"),
    N_("delivery.read"),
    N_("delivery.ringing"),
    N_("delivery.scheduled"),
    N_("delivery.sending"),
    N_("delivery.sending_provider"),
    N_("delivery.sent"),
    N_("delivery.undelivered"),
    N_("delivery.unknown"),
    # disposition
    N_("disposition.cancelled"),
    N_("disposition.cancelled_within_grace"),
    N_("disposition.duplicate"),
    N_("disposition.false_alarm"),
    N_("disposition.ghost"),
    N_("disposition.handled_by_other_agency"),
    N_("disposition.info"),
    N_("disposition.no_action_needed"),
    N_("disposition.prank"),
    N_("disposition.resolved"),
    N_("disposition.unreachable"),
    # error
    N_("error.400"),
    N_("error.403"),
    N_("error.404"),
    # event
    N_("event.accepted"),
    N_("event.audit_no_pending_step"),
    N_("event.audit_step_overdue"),
    N_("event.call_logged"),
    N_("event.cancelled"),
    N_("event.cancelled_by_dispatcher"),
    N_("event.cancelled_by_resident"),
    N_("event.closed"),
    N_("event.declined"),
    N_("event.device_battery_ok"),
    N_("event.device_low_battery"),
    N_("event.device_recovered"),
    N_("event.device_silent"),
    N_("event.escalated_by_hand"),
    N_("event.escalation_exhausted"),
    N_("event.escalation_started"),
    N_("event.fallback"),
    N_("event.flagged_for_review"),
    N_("event.geocode_failed"),
    N_("event.geocoded"),
    N_("event.location_overridden"),
    N_("event.no_supervisor"),
    N_("event.no_unit_available"),
    N_("event.notification_unknown"),
    N_("event.notification_unconfirmed"),
    N_("why.permanent_sms_failure"),
    N_("why.failed"),
    N_("why.busy"),
    N_("why.no_answer"),
    N_("event.round_started"),
    N_("event.step_brought_forward"),
    N_("event.page_rerouted"),
    N_("event.call_ended"),
    N_("event.notification_cancelled"),
    N_("event.provider_outage_alerted"),
    N_("event.provider_unreachable"),
    N_("event.notification_resent_after_lookup"),
    N_("event.notification_in_doubt"),
    N_("event.on_scene"),
    N_("event.ownership_taken"),
    N_("event.press_received"),
    N_("event.press_repeated"),
    N_("event.resolved"),
    N_("event.chat_reply"),
    N_("event.sms_reply"),
    N_("event.state_changed"),
    N_("event.step_next_unit"),
    N_("event.step_notify_unit"),
    N_("event.step_supervisor"),
    N_("event.supervisor_replied"),
    N_("event.unit_assigned"),
    N_("event.unit_matched"),
    N_("event.unit_status"),
    N_("event.unit_timed_out"),
    # link (the link page's notices)
    N_("link.invalid"),
    N_("link.used"),
    # live
    N_("live.off"),
    N_("live.on"),
    N_("live.polling"),
    # location_source
    N_("location_source.device_gps"),
    N_("location_source.device_registered"),
    N_("location_source.geocoded"),
    N_("location_source.handset"),
    N_("location_source.none"),
    N_("location_source.operator"),
    # map
    N_("map.devices"),
    N_("map.fix_age"),
    N_("map.incidents"),
    N_("map.legend"),
    N_("map.no_tiles"),
    N_("map.tiles_failed"),
    N_("map.units"),
    # position
    N_("position.fix"),
    N_("position.station"),
    # priority
    N_("priority.1"),
    N_("priority.2"),
    N_("priority.3"),
    # recipient
    N_("recipient.resident"),
    N_("recipient.supervisor"),
    N_("recipient.unit"),
    # review
    N_("review.cancelled_late"),
    N_("review.exhausted"),
    N_("review.inactive_device"),
    N_("review.location_needed"),
    N_("review.unregistered_device"),
    # role
    N_("role.admin"),
    N_("role.call_taker"),
    N_("role.dispatcher"),
    # sentence
    N_("sentence.code"),
    N_("sentence.notification"),
    # service
    N_("service.ambulance"),
    N_("service.disaster"),
    N_("service.police"),
    # skip (why the matcher passed a unit over)
    N_("skip.declined"),
    N_("skip.no_answer"),
    N_("skip.other"),
    # sound
    N_("sound.active"),
    # source
    N_("source.call"),
    N_("source.press"),
    # stats (ranges and range errors, chosen by the request)
    N_("stats.range.today"),
    N_("stats.range.7d"),
    N_("stats.range.30d"),
    N_("stats.range.custom"),
    N_("stats.range_error.bad_date"),
    N_("stats.range_error.bad_choice"),
    N_("stats.range_error.missing_dates"),
    N_("stats.range_error.reversed"),
    N_("stats.range_error.too_long"),
    # state
    N_("state.acknowledged"),
    N_("state.cancelled"),
    N_("state.dispatched"),
    N_("state.on_scene"),
    N_("state.received"),
    N_("state.resolved"),
    N_("state.unanswered"),
    # unit_status
    N_("unit_status.available"),
    N_("unit_status.busy"),
    N_("unit_status.off_duty"),
    # what
    N_("what.next_unit"),
    N_("what.sms"),
    N_("what.sms_voice"),
    N_("what.supervisor"),
    N_("what.voice"),
)
