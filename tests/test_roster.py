"""Roster import: idempotent upsert, all or nothing, errors that name the entry and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session, sessionmaker

from devices.models import Device
from dispatch.cli import main
from dispatch.roster import RosterError, apply_roster, load_roster
from foundation.db import transaction
from responders.models import Supervisor, Unit
from tests.conftest import EXAMPLE_ROSTER, count

VALID_UNIT = '{id: POL-01, service: police, name: P1, phone: "+628110000101", station: [-7.75, 113.21]}'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "roster.yaml"
    path.write_text(text)
    return path


def test_the_example_roster_imports_and_a_second_import_changes_nothing(
    sessions: sessionmaker[Session],
) -> None:
    for _ in range(2):
        with transaction(sessions) as session:
            counts = apply_roster(session, load_roster(EXAMPLE_ROSTER))
    assert counts == {"units": 10, "supervisors": 3, "devices": 12}
    assert count(sessions, Unit) == 10
    assert count(sessions, Supervisor) == 3
    assert count(sessions, Device) == 12
    assert {count(sessions, Unit, Unit.service == s) for s in ("police", "disaster", "ambulance")} == {3, 4}


def test_reimport_updates_fields_but_keeps_the_units_live_status(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with transaction(sessions) as session:
        apply_roster(session, load_roster(write(tmp_path, f"units:\n  - {VALID_UNIT}\n")))
    with transaction(sessions) as session:
        session.get_one(Unit, "POL-01").status = "busy"
    renamed = VALID_UNIT.replace("name: P1", "name: Patroli Satu")
    with transaction(sessions) as session:
        apply_roster(session, load_roster(write(tmp_path, f"units:\n  - {renamed}\n")))
    with sessions() as session:
        unit = session.get_one(Unit, "POL-01")
        assert (unit.name, unit.status) == ("Patroli Satu", "busy")


def test_an_error_names_the_section_index_id_and_field(tmp_path: Path) -> None:
    bad = VALID_UNIT.replace("POL-01", "POL-02").replace('"+628110000101"', '"0811-000"')
    path = write(tmp_path, f"units:\n  - {VALID_UNIT}\n  - {bad}\n")
    with pytest.raises(RosterError) as caught:
        load_roster(path)
    assert "units[1] (id=POL-02).phone" in str(caught.value)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            "devices:\n  - {id: B1, service: fire, owner_name: X, location: [-7.7, 113.2]}",
            "devices[0] (id=B1).service",
        ),
        (
            "devices:\n  - {id: B1, service: police, owner_name: X, location: [-97, 113.2]}",
            "devices[0] (id=B1).location",
        ),
        (
            'supervisors:\n  - {id: S1, service: police, name: S, phone: "+62811"}',
            "supervisors[0] (id=S1).phone",
        ),
        (f"units:\n  - {VALID_UNIT}\n  - {VALID_UNIT}\n", "duplicate id"),
        ("units: [1, 2", "not valid YAML"),
        ("- just a list", "top level must be a mapping"),
        (f"units:\n  - {VALID_UNIT[:-1]}, colour: red}}\n", "units[0] (id=POL-01).colour"),
    ],
)
def test_invalid_rosters_are_rejected_with_a_precise_message(tmp_path: Path, entry: str, message: str) -> None:
    with pytest.raises(RosterError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        load_roster(write(tmp_path, entry))


def test_a_bad_entry_anywhere_means_nothing_is_imported(tmp_path: Path, database_url: str, engine: object) -> None:
    good_device = "{id: B1, service: police, owner_name: X, location: [-7.7, 113.2]}"
    bad_device = "{id: B2, service: police, owner_name: X, location: [-7.7, 213.2]}"
    path = write(tmp_path, f"units:\n  - {VALID_UNIT}\ndevices:\n  - {good_device}\n  - {bad_device}\n")
    result = CliRunner().invoke(
        main,
        ["roster", "import", str(path)],
        env={"DISPATCH_DATABASE_URL": database_url, "DISPATCH__DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 2
    assert "devices[1] (id=B2).location" in result.output
    from foundation.db import make_engine, make_session_factory

    sessions = make_session_factory(make_engine(database_url))
    assert count(sessions, Unit) == 0
    assert count(sessions, Device) == 0
