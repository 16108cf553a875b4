"""Specifications for dispatch.geocoding: offline gazetteer and self-hosted Nominatim.

Nominatim is exercised with geopy's real client over real HTTP against a local
fake server (tests/nominatim_fake.py); nothing leaves the machine.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from geopy.distance import geodesic
from geopy.exc import GeocoderQueryError, GeocoderTimedOut
from geopy.geocoders import Nominatim
from geopy.geocoders.base import Geocoder
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch.geocoding import (
    GazetteerEntry,
    GazetteerError,
    GazetteerGeocoder,
    GeocodeResult,
    RoadPoint,
    geocode_address,
    make_geocoder,
)
from dispatch.matcher import geodesic_at_least_m
from tests.nominatim_fake import FakeNominatim, FakePlace

GAZETTEER = Path(__file__).resolve().parent.parent / "config" / "gazetteer.yaml"
PROBOLINGGO_BBOX = (-7.82, 113.17, -7.70, 113.25)
USER_AGENT = "probolinggo-dispatch-test/1.0"

SUROYO = FakePlace(
    -7.7505,
    113.2150,
    "Jalan Suroyo, Tisnonegaran, Kanigaran, Probolinggo, Jawa Timur, 67211, Indonesia",
    importance=0.42,
    address={"road": "Jalan Suroyo", "suburb": "Tisnonegaran", "city": "Probolinggo"},
)
# Same street name, wrong city: what a free-text search can return first.
PAHLAWAN_SURABAYA = FakePlace(-7.2458, 112.7378, "Jalan Pahlawan, Surabaya, Jawa Timur, Indonesia", importance=0.61)
PORT = FakePlace(-7.7295, 113.2215, "Pelabuhan Tanjung Tembaga, Mayangan, Probolinggo", importance=1.7)
MASTRIP = FakePlace(-7.7690, 113.2070, "Jalan Mastrip, Kedopok, Probolinggo", importance=None)


@pytest.fixture(scope="module")
def gazetteer() -> GazetteerGeocoder:
    return GazetteerGeocoder.from_file(GAZETTEER)


@pytest.fixture
def fake() -> Iterator[FakeNominatim]:
    server = FakeNominatim(
        {
            "Jl. Suroyo, Probolinggo": SUROYO,
            "Jl. Pahlawan": PAHLAWAN_SURABAYA,
            "Pelabuhan Tanjung Tembaga": PORT,
            "Jl. Mastrip": MASTRIP,
        }
    )
    with server:
        yield server


@pytest.fixture
def nominatim(fake: FakeNominatim) -> Geocoder:
    return make_geocoder(
        "nominatim",
        gazetteer_path=str(GAZETTEER),
        nominatim_domain=fake.domain,
        nominatim_scheme="http",
        user_agent=USER_AGENT,
    )


def raw_of(geocoder: GazetteerGeocoder, text: str) -> dict[str, object]:
    location = geocoder.geocode(text)
    assert location is not None and not isinstance(location, list), text
    raw: dict[str, object] = location.raw
    return raw


# ---------------------------------------------------------------------------
# Gazetteer geocoder
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Kebonsari Kulon",
        "kel. kebonsari kulon",
        "Kelurahan Kebonsari Kulon",
        "KEBONSARI  KULON RT 03/RW 05",
        "Kel. Kebonsari Kulon, Kec. Kanigaran, Kota Probolinggo",
        "Kebonsari Kuln",
        "Kebonsari Kuln, Kanigaran",
    ],
)
def test_gazetteer_finds_kelurahan_with_prefixes_and_typos(gazetteer: GazetteerGeocoder, text: str) -> None:
    location = gazetteer.geocode(text)

    assert location is not None and not isinstance(location, list)
    assert location.raw["source"] == "gazetteer"
    assert location.raw["kind"] == "kelurahan"
    assert location.raw["matched_name"] == "Kebonsari Kulon"
    assert 0.0 < location.raw["confidence"] <= 1.0
    assert (location.latitude, location.longitude) == (location.raw["lat"], location.raw["lon"])
    assert "Kec. Kanigaran" in location.address


def test_gazetteer_confidence_ranks_exact_over_typo(gazetteer: GazetteerGeocoder) -> None:
    exact = raw_of(gazetteer, "kel. kebonsari kulon")
    typo = raw_of(gazetteer, "Kebonsari Kuln")

    assert (exact["match"], exact["confidence"]) == ("exact", 1.0)
    assert typo["match"] == "fuzzy"
    assert isinstance(typo["confidence"], float) and typo["confidence"] < 0.9


@pytest.mark.parametrize("text", ["RSUD", "rs saleh", "RSUD dr. Mohamad Saleh", "rumah sakit moh. saleh"])
def test_gazetteer_finds_landmark_by_alias(gazetteer: GazetteerGeocoder, text: str) -> None:
    raw = raw_of(gazetteer, text)

    assert raw["kind"] == "landmark"
    assert raw["matched_name"] == "RSUD dr. Mohamad Saleh"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("depan RSUD, Kel. Mangunharjo", "RSUD dr. Mohamad Saleh"),
        ("Pasar Wonoasih", "Pasar Wonoasih"),
        ("Stasiun, Kel. Mayangan", "Stasiun Probolinggo"),
        ("Jl. Suroyo dekat RSUD", "RSUD dr. Mohamad Saleh"),
    ],
)
def test_gazetteer_prefers_landmark_over_kelurahan_and_road(
    gazetteer: GazetteerGeocoder, text: str, expected: str
) -> None:
    raw = raw_of(gazetteer, text)

    assert (raw["kind"], raw["matched_name"]) == ("landmark", expected)


def test_gazetteer_reads_kec_prefix_as_kecamatan(gazetteer: GazetteerGeocoder) -> None:
    assert raw_of(gazetteer, "Mayangan")["kind"] == "kelurahan"  # most specific by default
    assert raw_of(gazetteer, "Kec. Mayangan")["kind"] == "kecamatan"
    assert raw_of(gazetteer, "kecamatan wonoasih")["kind"] == "kecamatan"


def test_gazetteer_street_named_after_an_area_does_not_name_the_area(gazetteer: GazetteerGeocoder) -> None:
    raw = raw_of(gazetteer, "Gg. Jati 3, Kel. Sukabumi")

    assert raw["matched_name"] == "Sukabumi"


def test_gazetteer_full_address_resolves_to_the_road(gazetteer: GazetteerGeocoder) -> None:
    raw = raw_of(gazetteer, "Jl. Soekarno-Hatta No. 12 RT.02/RW.03 Kel. Pilang Kec. Kademangan 67221")

    assert (raw["kind"], raw["matched_name"]) == ("road", "Jl. Soekarno-Hatta")
    assert raw["conflicts"] == []


def test_gazetteer_flags_contradicting_areas(gazetteer: GazetteerGeocoder) -> None:
    consistent = raw_of(gazetteer, "RSUD, Kel. Mangunharjo")
    contradicted = raw_of(gazetteer, "RSUD, Kel. Kanigaran")

    assert contradicted["matched_name"] == "RSUD dr. Mohamad Saleh"
    assert contradicted["conflicts"] == ["kelurahan Kanigaran"]
    assert isinstance(contradicted["confidence"], float) and isinstance(consistent["confidence"], float)
    assert contradicted["confidence"] < consistent["confidence"]


def test_gazetteer_ambiguous_text_lists_alternatives_and_lowers_confidence(
    gazetteer: GazetteerGeocoder,
) -> None:
    raw = raw_of(gazetteer, "antara stasiun dan terminal")

    assert {raw["matched_name"], *raw["alternatives"]} == {"Stasiun Probolinggo", "Terminal Bayuangga"}  # type: ignore[misc]
    assert isinstance(raw["confidence"], float) and raw["confidence"] < 0.5


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "Jl. Antah Berantah 99",
        "Kota Probolinggo",
        "Surabaya",
        "Kebonsari",
        "SMA Negeri 2",
        "Triwung",
    ],
)
def test_gazetteer_unknown_or_incomplete_text_is_none(gazetteer: GazetteerGeocoder, text: str) -> None:
    assert gazetteer.geocode(text) is None
    assert geocode_address(gazetteer, text, timeout_s=1.0) is None


def test_gazetteer_exactly_one_false_lists_matches_best_first(gazetteer: GazetteerGeocoder) -> None:
    locations = gazetteer.geocode("RSUD, Kel. Mangunharjo, Kec. Mayangan", exactly_one=False)

    assert isinstance(locations, list)
    names = [(loc.raw["kind"], loc.raw["matched_name"]) for loc in locations]
    assert names[0] == ("landmark", "RSUD dr. Mohamad Saleh")
    assert {("kelurahan", "Mangunharjo"), ("kecamatan", "Mayangan")} <= set(names)


def test_gazetteer_every_name_and_alias_finds_its_own_entry(gazetteer: GazetteerGeocoder) -> None:
    for entry in gazetteer.entries:
        for text in (entry.name, *entry.aliases):
            query = f"Kec. {text}" if entry.kind == "kecamatan" else text
            raw = raw_of(gazetteer, query)
            assert (raw["kind"], raw["matched_name"]) == (entry.kind, entry.name), query


# ---------------------------------------------------------------------------
# Gazetteer data file
# ---------------------------------------------------------------------------

KELURAHAN_BY_KECAMATAN = {
    "Mayangan": {"Mayangan", "Mangunharjo", "Jati", "Sukabumi", "Wiroborang"},
    "Kanigaran": {
        "Kanigaran",
        "Kebonsari Kulon",
        "Kebonsari Wetan",
        "Sukoharjo",
        "Tisnonegaran",
        "Curahgrinting",
    },
    "Kademangan": {"Kademangan", "Ketapang", "Pilang", "Pohsangit Kidul", "Triwung Kidul", "Triwung Lor"},
    "Wonoasih": {"Wonoasih", "Jrebeng Kidul", "Kedunggaleng", "Kedungasem", "Pakistaji", "Sumber Taman"},
    "Kedopok": {"Kedopok", "Jrebeng Kulon", "Jrebeng Lor", "Jrebeng Wetan", "Kareng Lor", "Sumber Wetan"},
}


def test_gazetteer_file_is_marked_illustrative_and_unverified(gazetteer: GazetteerGeocoder) -> None:
    head = GAZETTEER.read_text(encoding="utf-8").splitlines()[:12]

    assert any("ILLUSTRATIVE" in line for line in head)
    assert gazetteer.verified is False
    assert raw_of(gazetteer, "RSUD")["verified"] is False


def test_gazetteer_covers_the_city_administratively(gazetteer: GazetteerGeocoder) -> None:
    kecamatan = {e.name for e in gazetteer.entries if e.kind == "kecamatan"}
    kelurahan: dict[str, set[str]] = {}
    for e in gazetteer.entries:
        if e.kind == "kelurahan":
            kelurahan.setdefault(e.kecamatan, set()).add(e.name)

    assert kecamatan == set(KELURAHAN_BY_KECAMATAN)
    assert kelurahan == KELURAHAN_BY_KECAMATAN
    assert sum(len(v) for v in kelurahan.values()) == 29
    assert sum(e.kind in ("landmark", "road") for e in gazetteer.entries) >= 30


def test_gazetteer_coordinates_are_inside_the_city(gazetteer: GazetteerGeocoder) -> None:
    south, west, north, east = PROBOLINGGO_BBOX
    assert gazetteer.bbox == PROBOLINGGO_BBOX
    for e in gazetteer.entries:
        assert south <= e.lat <= north and west <= e.lon <= east, e.name
        assert 0 < e.radius_m <= 3000, e.name


def entry_yaml(**overrides: object) -> str:
    fields: dict[str, object] = {
        "name": "X",
        "kind": "kecamatan",
        "aliases": "[]",
        "parent": "null",
        "lat": -7.75,
        "lon": 113.21,
        "radius_m": 500,
    }
    fields.update(overrides)
    return "- {" + ", ".join(f"{k}: {v}" for k, v in fields.items() if v is not None) + "}"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([entry_yaml(kind="kelurahan", parent="Nowhere")], "parent"),
        ([entry_yaml(kind="hamlet")], "kind"),
        ([entry_yaml(lat=-6.2, lon=106.8)], "bbox"),  # Jakarta
        ([entry_yaml(radius_m=None, radius=500)], "keys"),
        ([entry_yaml(name="A", aliases="[Pusat]"), entry_yaml(name="B", aliases="[pusat]")], "also an alias"),
        ([entry_yaml(name="Kota Probolinggo")], "empty"),
        ([entry_yaml(radius_m=0)], "radius_m"),
    ],
)
def test_gazetteer_loader_rejects_bad_data(tmp_path: Path, entries: list[str], message: str) -> None:
    path = tmp_path / "gazetteer.yaml"
    meta = "meta: {region: Test, verified: true, bbox: [-7.82, 113.17, -7.70, 113.25]}"
    path.write_text("\n".join([meta, "entries:", *entries]) + "\n", encoding="utf-8")

    with pytest.raises(GazetteerError, match=message):
        GazetteerGeocoder.from_file(path)


def test_gazetteer_loader_warns_while_unverified(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dispatch.geocoding"):
        GazetteerGeocoder.from_file(GAZETTEER)

    assert "not verified" in caplog.text


# ---------------------------------------------------------------------------
# geocode_address with the gazetteer
# ---------------------------------------------------------------------------


def test_geocode_address_with_gazetteer(gazetteer: GazetteerGeocoder) -> None:
    text = "  depan rs saleh, kel. mangunharjo "
    result = geocode_address(gazetteer, text, timeout_s=1.0, bounded_to=PROBOLINGGO_BBOX)

    assert isinstance(result, GeocodeResult)
    assert result.query == text
    assert result.source == "gazetteer"
    assert result.raw["matched_name"] == "RSUD dr. Mohamad Saleh"
    assert result.confidence == result.raw["confidence"]
    assert "RSUD dr. Mohamad Saleh" in result.display_name


def test_geocode_address_rejects_gazetteer_hit_outside_bounds(gazetteer: GazetteerGeocoder) -> None:
    southern_half = (-7.82, 113.17, -7.77, 113.25)

    assert geocode_address(gazetteer, "Pelabuhan Tanjung Tembaga", timeout_s=1.0, bounded_to=southern_half) is None
    assert geocode_address(gazetteer, "Pakistaji", timeout_s=1.0, bounded_to=southern_half) is not None


# ---------------------------------------------------------------------------
# geocode_address with geopy's real Nominatim client against the fake server
# ---------------------------------------------------------------------------


def test_make_geocoder_builds_real_nominatim_for_self_hosted_server(nominatim: Geocoder, fake: FakeNominatim) -> None:
    assert type(nominatim) is Nominatim
    assert nominatim.api == f"http://{fake.domain}/search"
    assert nominatim.headers["User-Agent"] == USER_AGENT


def test_nominatim_result_has_source_and_confidence_from_importance(nominatim: Geocoder, fake: FakeNominatim) -> None:
    result = geocode_address(nominatim, "Jl. Suroyo, Probolinggo", timeout_s=2.0, bounded_to=PROBOLINGGO_BBOX)

    assert result is not None
    assert result.source == "nominatim"
    assert result.confidence == pytest.approx(0.42)
    assert (result.lat, result.lon) == pytest.approx((-7.7505, 113.2150))
    assert result.display_name == SUROYO.display_name
    assert result.raw["lat"] == "-7.7505000"  # Nominatim's strings, untouched
    assert result.raw["class"] == "highway"
    [request] = fake.requests
    assert request.path == "/search"
    assert request.params["q"] == "Jl. Suroyo, Probolinggo"
    assert (request.params["format"], request.params["limit"]) == ("json", "1")


def test_nominatim_is_asked_for_results_inside_the_service_area(nominatim: Geocoder, fake: FakeNominatim) -> None:
    geocode_address(nominatim, "Jl. Suroyo, Probolinggo", timeout_s=2.0, bounded_to=PROBOLINGGO_BBOX)

    [request] = fake.requests
    west, south, east, north = (float(v) for v in request.params["viewbox"].split(","))
    assert (south, west, north, east) == pytest.approx(PROBOLINGGO_BBOX)
    assert request.params["bounded"] == "1"


@pytest.mark.parametrize(("text", "expected"), [("Pelabuhan Tanjung Tembaga", 1.0), ("Jl. Mastrip", 0.0)])
def test_nominatim_importance_is_clamped_or_zero_when_missing(nominatim: Geocoder, text: str, expected: float) -> None:
    result = geocode_address(nominatim, text, timeout_s=2.0)

    assert result is not None
    assert result.confidence == expected


def test_nominatim_requests_carry_the_configured_user_agent(nominatim: Geocoder, fake: FakeNominatim) -> None:
    geocode_address(nominatim, "Jl. Suroyo, Probolinggo", timeout_s=2.0)
    geocode_address(nominatim, "tidak dikenal", timeout_s=2.0)

    assert [r.user_agent for r in fake.requests] == [USER_AGENT, USER_AGENT]


def test_nominatim_unknown_query_is_none(nominatim: Geocoder, fake: FakeNominatim) -> None:
    assert geocode_address(nominatim, "Jl. Tidak Ada 1", timeout_s=2.0, bounded_to=PROBOLINGGO_BBOX) is None
    assert len(fake.requests) == 1


def test_nominatim_result_outside_bounding_box_is_none(nominatim: Geocoder, fake: FakeNominatim) -> None:
    assert geocode_address(nominatim, "Jl. Pahlawan", timeout_s=2.0, bounded_to=PROBOLINGGO_BBOX) is None
    # Without a bound the same answer is returned as is: the filter is ours.
    unbounded = geocode_address(nominatim, "Jl. Pahlawan", timeout_s=2.0)
    assert unbounded is not None and unbounded.lat == pytest.approx(-7.2458)


def test_nominatim_503_then_success_is_retried_with_bounded_backoff(nominatim: Geocoder, fake: FakeNominatim) -> None:
    fake.fail_next(2, status=503)
    sleeps: list[float] = []

    result = geocode_address(nominatim, "Jl. Suroyo, Probolinggo", timeout_s=2.0, attempts=3, sleep=sleeps.append)

    assert result is not None and result.source == "nominatim"
    assert len(fake.requests) == 3
    assert sleeps == [0.5, 1.0]


def test_nominatim_backoff_is_capped(nominatim: Geocoder, fake: FakeNominatim) -> None:
    fake.fail_next(4, status=502)
    sleeps: list[float] = []

    result = geocode_address(
        nominatim,
        "Jl. Suroyo, Probolinggo",
        timeout_s=2.0,
        attempts=5,
        backoff_s=1.0,
        max_backoff_s=1.5,
        sleep=sleeps.append,
    )

    assert result is not None
    assert sleeps == [1.0, 1.5, 1.5, 1.5]


def test_nominatim_outage_longer_than_attempts_raises(nominatim: Geocoder, fake: FakeNominatim) -> None:
    fake.fail_next(5, status=503)
    sleeps: list[float] = []

    # geopy maps 503 to GeocoderTimedOut; it is re-raised so that "service
    # down" is never mistaken for "no such place".
    with pytest.raises(GeocoderTimedOut):
        geocode_address(nominatim, "Jl. Suroyo, Probolinggo", timeout_s=2.0, attempts=3, sleep=sleeps.append)

    assert len(fake.requests) == 3
    assert len(sleeps) == 2


def test_nominatim_read_timeout_is_retried(nominatim: Geocoder, fake: FakeNominatim) -> None:
    fake.stall_next(1, seconds=1.5)

    result = geocode_address(nominatim, "Jl. Suroyo, Probolinggo", timeout_s=0.3, attempts=2, sleep=lambda _s: None)

    assert result is not None
    assert len(fake.requests) == 2


def test_nominatim_query_error_is_not_retried(nominatim: Geocoder, fake: FakeNominatim) -> None:
    fake.fail_next(1, status=400)

    with pytest.raises(GeocoderQueryError):
        geocode_address(nominatim, "Jl. Suroyo, Probolinggo", timeout_s=2.0, attempts=3, sleep=lambda _s: None)

    assert len(fake.requests) == 1


def test_geocode_address_logs_without_phone_numbers(
    nominatim: Geocoder, fake: FakeNominatim, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_next(1)
    with caplog.at_level(logging.INFO, logger="dispatch.geocoding"):
        geocode_address(nominatim, "Jl. Melati 4, hub 081234567890", timeout_s=2.0, sleep=lambda _s: None)

    assert "retrying" in caplog.text
    assert "no match" in caplog.text
    assert "081234567890" not in caplog.text


# ---------------------------------------------------------------------------
# Argument checking
# ---------------------------------------------------------------------------


def test_empty_text_does_not_reach_the_server(nominatim: Geocoder, fake: FakeNominatim) -> None:
    assert geocode_address(nominatim, "  ", timeout_s=2.0) is None
    assert fake.requests == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout_s": 1.0, "attempts": 0},
        {"timeout_s": 0.0},
        {"timeout_s": 1.0, "bounded_to": (-7.70, 113.17, -7.82, 113.25)},  # south > north
    ],
)
def test_geocode_address_rejects_bad_arguments(gazetteer: GazetteerGeocoder, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        geocode_address(gazetteer, "RSUD", **kwargs)  # type: ignore[arg-type]


def test_make_geocoder_gazetteer_and_errors() -> None:
    built = make_geocoder("gazetteer", gazetteer_path=str(GAZETTEER), nominatim_domain=None)
    assert isinstance(built, GazetteerGeocoder)

    with pytest.raises(ValueError, match="nominatim_domain"):
        make_geocoder("nominatim", gazetteer_path=str(GAZETTEER), nominatim_domain=None)
    with pytest.raises(ValueError, match="unknown geocoder kind"):
        make_geocoder("google", gazetteer_path=str(GAZETTEER), nominatim_domain="x")


@pytest.mark.parametrize(
    ("lat", "lon", "expected"),
    [
        (-7.7493, 113.2112, "Masjid Agung Roudlotul Jannah"),  # inside a landmark: the landmark
        (-7.7466, 113.2236, "Kel. Jati"),  # no landmark close: the kelurahan
        (-7.6000, 113.0000, None),  # far from everything: nothing is guessed
    ],
)
def test_the_nearest_place_of_a_pin(gazetteer: GazetteerGeocoder, lat: float, lon: float, expected: str | None) -> None:
    assert gazetteer.nearest_place(lat, lon) == expected


# -- addresses whose parts disagree ------------------------------------------------------------


def one_point_per_road(gazetteer: GazetteerGeocoder) -> GazetteerGeocoder:
    """The gazetteer as it was when every road had a single point."""
    entries = [replace(e, points=()) for e in gazetteer.entries]
    return GazetteerGeocoder(entries, region=gazetteer.region, bbox=gazetteer.bbox)


def test_a_road_whose_only_point_is_outside_the_named_kelurahan_is_not_found_with_confidence(
    gazetteer: GazetteerGeocoder,
) -> None:
    """Seen: this resolved to the road's point 2.8 km away in Kademangan, confidence 0.83, shown as found."""
    result = geocode_address(one_point_per_road(gazetteer), "Jl. Soekarno-Hatta, Kel. Jati", timeout_s=1.0)
    assert result is not None
    assert result.conflicts == ["kelurahan Jati"]
    assert result.confidence < 0.6  # below geocoding.auto_dispatch_min_confidence
    assert [(c["name"], c["kind"], c["lat"], c["lon"]) for c in result.candidates] == [
        ("Jl. Soekarno-Hatta", "road", -7.7490, 113.1960),
        ("Kel. Jati", "kelurahan", -7.7470, 113.2240),
    ]
    assert 3000 < result.raw["apart_m"] < 3200
    assert result.candidates[0]["area"] == "Kec. Kademangan"  # where the pick lies, for the warning


def test_a_road_with_a_point_in_the_named_kelurahan_resolves_to_that_point(gazetteer: GazetteerGeocoder) -> None:
    result = geocode_address(gazetteer, "Jl. Soekarno-Hatta, Kel. Jati", timeout_s=1.0)
    assert result is not None
    assert (result.lat, result.lon) == (-7.7479, 113.2231)
    assert result.display_name.startswith("Jl. Soekarno-Hatta, Kel. Jati, Kec. Mayangan")
    assert (result.conflicts, result.candidates) == ([], [])
    assert result.confidence >= 0.9
    plain = geocode_address(gazetteer, "Jl. Soekarno-Hatta", timeout_s=1.0)
    assert plain is not None and (plain.lat, plain.lon) == (-7.7490, 113.1960)  # the road's middle


@pytest.mark.parametrize(
    ("text", "agrees"),
    [
        ("Jl. Raya Bromo, Kel. Mayangan", False),  # the south of the city and the harbour
        ("Jl. Soekarno-Hatta, Kel. Kedopok", False),
        ("Jl. Soekarno-Hatta, Kel. Pilang", True),  # its middle lies within Pilang's radius
        ("Jl. Soekarno-Hatta, Kec. Mayangan", True),  # its point in Jati is in Kec. Mayangan
        ("Jl. Panglima Sudirman, Mangunharjo", True),
    ],
)
def test_a_road_and_an_area_agree_when_a_point_of_the_road_lies_in_the_area(
    gazetteer: GazetteerGeocoder, text: str, agrees: bool
) -> None:
    result = geocode_address(gazetteer, text, timeout_s=1.0)
    assert result is not None
    assert (result.conflicts == []) == agrees
    assert (result.confidence >= 0.6) == agrees
    assert (len(result.candidates) == 2) == (not agrees)


def test_road_points_are_checked_when_the_gazetteer_loads() -> None:
    jati = GazetteerEntry("Jati", "kelurahan", (), "Mayangan", -7.747, 113.224, 700)
    mayangan = GazetteerEntry("Mayangan", "kecamatan", (), None, -7.74, 113.218, 2000)
    road = GazetteerEntry(
        "Jl. X", "road", (), "Mayangan", -7.74, 113.22, 900, (RoadPoint("Jatii", -7.747, 113.224, 300),)
    )
    with pytest.raises(GazetteerError, match="'Jatii', which is not a kelurahan"):
        GazetteerGeocoder([mayangan, jati, road])
    assert GazetteerGeocoder([mayangan, jati, replace(road, points=(RoadPoint("Jati", -7.747, 113.224, 300),))])


def test_the_log_names_a_lookup_but_never_the_callers_address(gazetteer: GazetteerGeocoder, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="dispatch.geocoding")
    found = geocode_address(gazetteer, "Jl. Soekarno-Hatta, Kel. Jati, dekat rumah Pak Budi 081234567890", timeout_s=1)
    nothing = geocode_address(gazetteer, "Gang Mawar belakang pasar", timeout_s=1)
    assert found is not None and nothing is None
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "address#" in logged
    for private in ("Soekarno", "Budi", "081234567890", "Mawar", f"{found.lat:.5f}"):
        assert private not in logged


@given(
    lat=st.floats(-80, 80),
    lon=st.floats(-180, 180),
    north=st.floats(-2, 2),
    east=st.floats(-2, 2),
    metres=st.floats(1, 400_000),  # reaches are 150 m and more
)
@settings(max_examples=500, deadline=None)
def test_the_shortcut_that_skips_far_places_never_skips_one_within_reach(
    lat: float, lon: float, north: float, east: float, metres: float
) -> None:
    other = (max(-89.9, min(89.9, lat + north)), (lon + east + 180) % 360 - 180)
    if geodesic_at_least_m(lat, lon, *other) > metres:
        assert geodesic((lat, lon), other).meters > metres
