"""Shared fixtures: a real MQTT broker and a real database for every test that needs them.

By default the broker is the embedded one (Mosquitto if on PATH, else amqtt) and
the database a SQLite file. Set DISPATCH_TEST_MQTT_URL and
DISPATCH_TEST_DATABASE_URL to run the same suite against running services
(CI does: Mosquitto on 127.0.0.1:1883, PostgreSQL database "test").
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from devices.broker import EmbeddedBroker
from devices.gateway import BrokerAddress
from dispatch import database
from dispatch.roster import apply_roster, load_roster
from dispatch.service import DispatchService
from foundation.db import make_engine, make_session_factory, transaction
from foundation.settings import Settings, load_settings

# Real `dispatch serve` processes (the `processes` fixture) for crash, multi-worker and outage tests.
pytest_plugins = ["tests.fleet"]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_ROSTER = ROOT / "config" / "roster.example.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mqtt_login(client: mqtt.Client, url: str, fallback_user: str) -> BrokerAddress:
    """Log ``client`` in with the credentials in ``url`` (the embedded broker's), else as ``fallback_user``."""
    address = BrokerAddress.from_url(url)
    client.username_pw_set(address.username or fallback_user, address.password)
    return address


def eventually(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = check()
    assert value, f"condition not met within {timeout}s (last value: {value!r})"
    return value


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """{"url": ..., "kind": "mosquitto"|"amqtt"|"external"}"""
    url = os.environ.get("DISPATCH_TEST_MQTT_URL")
    if url:
        yield {"url": url, "kind": "external"}
        return
    prefer = os.environ.get("DISPATCH_TEST_EMBEDDED_BROKER")  # "amqtt" forces the fallback broker
    embedded = EmbeddedBroker(tmp_path_factory.mktemp("broker"), free_port(), prefer=prefer)
    embedded.start()
    yield {"url": embedded.url, "kind": embedded.kind}
    embedded.stop()


@pytest.fixture
def broker_url(broker: dict[str, str]) -> str:
    return broker["url"]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """A fresh, empty database per test."""
    url = os.environ.get("DISPATCH_TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{tmp_path / 'dispatch.sqlite3'}"
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP SCHEMA public CASCADE")
        connection.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()
    return url


@pytest.fixture
def make_settings(tmp_path: Path, database_url: str, broker_url: str) -> Callable[..., Settings]:
    """Settings for one test process; keyword overrides are nested dicts by section."""

    def build(**sections: Any) -> Settings:
        overrides: dict[str, Any] = {
            "data_dir": str(tmp_path / "var"),
            "database": {"url": database_url},
            "mqtt": {"url": broker_url, "client_id": f"test-{uuid.uuid4().hex[:10]}", "reconnect_min_s": 0.2},
            "web": {"port": 0},
            # The built-in Twilio sandbox plays the responders' phones (a test may pass real credentials).
            "twilio": {"sandbox": True},
        }
        if "account_sid" in sections.get("twilio", {}):
            overrides["twilio"]["sandbox"] = False
        for key, value in sections.items():
            if isinstance(value, dict):
                overrides.setdefault(key, {}).update(value)
            else:
                overrides[key] = value
        return load_settings(environ={}, overrides=overrides)

    return build


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    database.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def roster(sessions: sessionmaker[Session]) -> None:
    """The example roster, loaded."""
    with transaction(sessions) as session:
        apply_roster(session, load_roster(EXAMPLE_ROSTER))


@pytest.fixture
def start_service(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., DispatchService]]:
    """Start a full service (gateway, scheduler, web) and stop it after the test."""
    started: list[DispatchService] = []

    def start(**sections: Any) -> DispatchService:
        service = DispatchService(make_settings(**sections))
        started.append(service)
        service.start()
        assert service.gateway.wait_connected(10), "service did not connect to the broker"
        return service

    yield start
    for service in started:
        service.stop(forget_mqtt_session=True)


def count(sessions: sessionmaker[Session], model: Any, *where: Any) -> int:
    with sessions() as session:
        return int(session.execute(select(func.count()).select_from(model).where(*where)).scalar_one())
