"""Settings: defaults, overlay file, environment; bad values stop start-up with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from dispatch.cli import main
from foundation.settings import SettingsError, load_settings


def test_defaults_use_a_sqlite_file_in_the_data_dir_and_the_embedded_broker() -> None:
    settings = load_settings(environ={})
    assert settings.database_url.startswith("sqlite:///")
    assert settings.database_url.endswith("dispatch.sqlite3")
    assert settings.mqtt.url is None
    assert settings.timezone == "Asia/Jakarta"


def test_overlay_file_then_environment_then_shortcuts_win_in_that_order(tmp_path: Path) -> None:
    overlay = tmp_path / "site.yaml"
    overlay.write_text("mqtt:\n  client_id: from-file\n  keepalive_s: 45\nweb:\n  port: 9000\n")
    settings = load_settings(
        environ={
            "DISPATCH_CONFIG": str(overlay),
            "DISPATCH__MQTT__KEEPALIVE_S": "60",
            "DISPATCH__DATABASE__URL": "sqlite:///generic.db",
            "DISPATCH_DATABASE_URL": "postgresql+psycopg://u@db/dispatch",
            "DISPATCH_MQTT_URL": "mqtt://broker.example:1883",
        }
    )
    assert settings.mqtt.client_id == "from-file"
    assert settings.mqtt.keepalive_s == 60
    assert settings.web.port == 9000
    assert settings.database_url == "postgresql+psycopg://u@db/dispatch"
    assert settings.mqtt.url == "mqtt://broker.example:1883"


def test_each_worker_takes_its_broker_username_as_client_id_unless_told_otherwise() -> None:
    # The shipped Mosquitto config makes the client id the username, so the session is the user's.
    worker_2 = load_settings(environ={"DISPATCH_MQTT_URL": "mqtts://dispatch-2:secret@broker.example:8883"})
    assert worker_2.mqtt.client_id == "dispatch-2"
    assert load_settings(environ={}).mqtt.client_id == "dispatch-1"
    explicit = load_settings(
        environ={"DISPATCH_MQTT_URL": "mqtt://dispatch-2:x@b:1883", "DISPATCH__MQTT__CLIENT_ID": "w2"}
    )
    assert explicit.mqtt.client_id == "w2"


def test_an_empty_mqtt_url_means_the_embedded_broker() -> None:
    assert load_settings(environ={"DISPATCH_MQTT_URL": ""}).mqtt.url is None


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"DISPATCH__MQTT__KEEPALIVE_S": "soon"}, "mqtt.keepalive_s = 'soon'"),
        ({"DISPATCH_MQTT_URL": "http://broker"}, "mqtt.url = 'http://broker'"),
        ({"DISPATCH_DATABASE_URL": "mysql://x"}, "database.url = 'mysql://x'"),
        ({"DISPATCH__TIMEZONE": "Asia/Probolinggo"}, "timezone = 'Asia/Probolinggo'"),
        ({"DISPATCH__WEB__PORT": "70000"}, "web.port = '70000'"),
        ({"DISPATCH__MQTT__CLIENTID": "x"}, "unknown setting mqtt.clientid"),
    ],
)
def test_a_bad_value_is_reported_with_its_key_and_value(environ: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ=environ)
    assert named in str(caught.value)


def test_a_missing_overlay_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"cannot read settings file .*nope\.yaml"):
        load_settings(environ={"DISPATCH_CONFIG": str(tmp_path / "nope.yaml")})


def test_the_cli_stops_with_exit_code_2_and_the_message(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["db", "upgrade"],
        env={"DISPATCH__MQTT__KEEPALIVE_S": "-1", "DISPATCH__DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 2
    assert "mqtt.keepalive_s = '-1'" in result.output


def test_secrets_never_appear_in_settings_errors() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(
            environ={
                "TWILIO_ACCOUNT_SID": "AC" + "0" * 31,  # one digit short
                "TWILIO_AUTH_TOKEN": "hunter2-secret-token",
                "DISPATCH_DATABASE_URL": "mysql://dispatch:pg-password-123@db/x",
            }
        )
    message = str(caught.value)
    assert "twilio.account_sid" in message and "database.url" in message
    assert "hunter2" not in message and "pg-password-123" not in message


def test_twilio_needs_a_token_with_an_account_sid() -> None:
    with pytest.raises(SettingsError, match="TWILIO_AUTH_TOKEN is required"):
        load_settings(environ={"TWILIO_ACCOUNT_SID": "AC" + "0" * 32})


def test_escalation_steps_must_be_in_time_order() -> None:
    with pytest.raises(SettingsError, match="steps must be in order of after_s"):
        load_settings(
            environ={},
            overrides={
                "escalation": {
                    "policies": {
                        "police": [
                            {"after_s": 30, "action": "notify_unit"},
                            {"after_s": 0, "action": "supervisor"},
                        ]
                    }
                }
            },
        )


def test_whatsapp_is_off_until_a_sender_is_set_and_then_needs_the_template_in_both_languages() -> None:
    assert load_settings(environ={}).whatsapp.from_number is None
    with pytest.raises(SettingsError, match=r"whatsapp\.templates"):
        load_settings(environ={"WHATSAPP_FROM_NUMBER": "+6281234567890"})
    templates = {"id": "HX" + "1" * 32, "en": "HX" + "2" * 32}
    settings = load_settings(
        environ={"WHATSAPP_FROM_NUMBER": "+6281234567890"}, overrides={"whatsapp": {"templates": templates}}
    )
    assert (settings.whatsapp.from_number, settings.whatsapp.templates) == ("+6281234567890", templates)
