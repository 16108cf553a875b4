"""Geocoding of free-text addresses from 112 call records, with geopy.

Two geocoders fit behind the same geopy interface:

* :class:`GazetteerGeocoder` -- fully offline; matches the text against a YAML
  gazetteer of Kota Probolinggo (``config/gazetteer.yaml``).
* geopy's own :class:`~geopy.geocoders.Nominatim`, pointed at a self-hosted
  Nominatim (nothing outside the dispatch network is reachable).

:func:`make_geocoder` builds either one from settings, and
:func:`geocode_address` is what callers use: it applies a timeout, retries
transient failures with bounded backoff, rejects results outside the service
area and returns a :class:`GeocodeResult` -- or ``None``, never a guess.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from types import MappingProxyType
from typing import Any, Literal, cast

import yaml
from geopy.adapters import BaseSyncAdapter
from geopy.distance import geodesic
from geopy.exc import (
    GeocoderAuthenticationFailure,
    GeocoderInsufficientPrivileges,
    GeocoderQueryError,
    GeocoderRateLimited,
    GeocoderServiceError,
    GeocoderUnavailable,
)
from geopy.geocoders import Nominatim
from geopy.geocoders.base import Geocoder
from geopy.location import Location

from dispatch.matcher import geodesic_at_least_m

log = logging.getLogger(__name__)

Kind = Literal["kecamatan", "kelurahan", "landmark", "road"]
Source = Literal["gazetteer", "nominatim"]
BBox = tuple[float, float, float, float]
"""(south, west, north, east) in decimal degrees."""

KINDS: tuple[Kind, ...] = ("kecamatan", "kelurahan", "landmark", "road")
# Lower is more specific: a landmark pins a spot, a kecamatan only a district.
_KIND_RANK: Mapping[str, int] = MappingProxyType({"landmark": 0, "road": 1, "kelurahan": 2, "kecamatan": 3})

# A pin this far outside a landmark's radius is still "near" it; a kelurahan reaches this many
# times its radius (its radius is rough, and kelurahan tile the city).
NEAR_SLACK_M = 150.0
NEAR_KELURAHAN_FACTOR = 1.5

FUZZY_MIN_RATIO = 0.85
# One typo in a 4-letter name already scores >= 0.85 against unrelated words
# ("jati" ~ "jatim"), so shorter aliases must match exactly or by tokens.
_FUZZY_MIN_CHARS = 5

# geopy errors that retrying cannot fix: a malformed query or a rejected
# credential / permission fails the same way every time. 403 is not in the
# usual "transient" family either, so it is treated as permanent too.
_PERMANENT_ERRORS: tuple[type[Exception], ...] = (
    GeocoderQueryError,
    GeocoderAuthenticationFailure,
    GeocoderInsufficientPrivileges,
)

# ----------------------------------------------------------------------------
# Text normalisation (pure functions and immutable tables)
# ----------------------------------------------------------------------------

Role = Literal["kec", "kel", "road"]
_SEP = "|"

# Words that announce what the next name is. They are dropped from the
# tokens but remembered, so "Kec. Mayangan" can mean the kecamatan and
# "Gg. Jati" does not mean kelurahan Jati.
_MARKERS: Mapping[str, Role] = MappingProxyType(
    {
        "kec": "kec",
        "kecamatan": "kec",
        "kel": "kel",
        "kelurahan": "kel",
        "desa": "kel",
        "ds": "kel",
        "jl": "road",
        "jln": "road",
        "jalan": "road",
        "gg": "road",
        "gang": "road",
    }
)
# Every address in the gazetteer is in this city, so naming it adds nothing;
# dropping it lets "Stasiun Probolinggo" and "stasiun" meet.
_NOISE = frozenset({"kota", "probolinggo", "jawa", "timur", "jatim", "indonesia", "prov", "provinsi"})
_SYNONYMS: Mapping[str, str] = MappingProxyType(
    {
        "moh": "mohamad",
        "mohd": "mohamad",
        "muh": "mohamad",
        "mhd": "mohamad",
        "mohammad": "mohamad",
        "mochamad": "mohamad",
        "mochammad": "mohamad",
        "muhamad": "mohamad",
        "muhammad": "mohamad",
        "psr": "pasar",
        "pkm": "puskesmas",
        "msj": "masjid",
        "msjd": "masjid",
        "mesjid": "masjid",
        "stsn": "stasiun",
        "dokter": "dr",
        "profesor": "prof",
        "professor": "prof",
        "jendral": "jend",
        "jenderal": "jend",
        "mayjend": "mayjen",
    }
)
# Applied to the space-joined tokens, longest first, before noise removal so
# that "wali kota" survives the dropping of "kota".
_PHRASES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(rf"\b{re.escape(src)}\b"), dst)
    for src, dst in (
        ("rumah sakit umum daerah", "rsud"),
        ("rumah sakit", "rs"),
        ("sma negeri", "sman"),
        ("smp negeri", "smpn"),
        ("smk negeri", "smkn"),
        ("wali kota", "walikota"),
        ("balai kota", "balaikota"),
        ("kereta api", "ka"),
    )
)
# Pre-1972 spelling is still common in names ("Soekarno", "Tjokro").
_OLD_SPELLING: tuple[tuple[str, str], ...] = (("oe", "u"), ("dj", "j"), ("tj", "c"))

_RT_RW_PAIR = re.compile(r"\brt\s*[./]?\s*rw\b[\s.:]*(?:\d+(?:\s*[/.\-]\s*\d+)?)?")
_RT_OR_RW = re.compile(r"\br[tw]\s*[.:]?\s*\d+\b")
_HOUSE_NO = re.compile(r"\b(?:no|nomor|nmr)\s*[.:]?\s*\d+[a-z]?\b")
_POSTCODE = re.compile(r"\b\d{5}\b")
_APOSTROPHE = re.compile(r"[\u2019'`]")
_SEPARATORS = re.compile(r"[,;/()|\n]")
_NON_ALNUM = re.compile(r"[^a-z0-9|]+")
_LETTER_DIGIT = re.compile(r"(?<=[a-z])(?=\d)")


@dataclass(frozen=True)
class _Query:
    tokens: tuple[str, ...]
    roles: tuple[Role | None, ...]


def _fold_token(token: str) -> str:
    for old, new in _OLD_SPELLING:
        token = token.replace(old, new)
    return _SYNONYMS.get(token, token)


def _parse(text: str) -> _Query:
    """Normalise free text into tokens, each tagged with the marker before it."""
    s = unicodedata.normalize("NFKD", text)
    s = "".join(ch for ch in s if not unicodedata.combining(ch)).lower()
    s = _APOSTROPHE.sub("", s)
    for pattern in (_RT_RW_PAIR, _RT_OR_RW, _HOUSE_NO, _POSTCODE):
        s = pattern.sub(" ", s)
    s = _SEPARATORS.sub(f" {_SEP} ", s)
    s = _NON_ALNUM.sub(" ", s)
    s = _LETTER_DIGIT.sub(" ", s)
    joined = " ".join(tok if tok == _SEP else _fold_token(tok) for tok in s.split())
    for pattern, replacement in _PHRASES:
        joined = pattern.sub(replacement, joined)

    tokens: list[str] = []
    roles: list[Role | None] = []
    role: Role | None = None
    for tok in joined.split():
        if tok == _SEP:
            role = None
        elif tok in _MARKERS:
            role = _MARKERS[tok]
        elif tok not in _NOISE:
            tokens.append(tok)
            roles.append(role)
    return _Query(tuple(tokens), tuple(roles))


# ----------------------------------------------------------------------------
# Gazetteer data
# ----------------------------------------------------------------------------


class GazetteerError(ValueError):
    """The gazetteer file is malformed; the message names the entry and the problem."""


@dataclass(frozen=True)
class RoadPoint:
    """A road's stretch inside one kelurahan: where to go when the caller names both."""

    kelurahan: str
    lat: float
    lon: float
    radius_m: float


@dataclass(frozen=True)
class GazetteerEntry:
    """One named place: a kecamatan, kelurahan, landmark or road.

    A road may also carry ``points``, one per kelurahan it runs through; its own lat/lon is
    the middle of its stretch in the city.
    """

    name: str
    kind: Kind
    aliases: tuple[str, ...]
    parent: str | None
    lat: float
    lon: float
    radius_m: float
    points: tuple[RoadPoint, ...] = ()

    @property
    def kecamatan(self) -> str:
        """The kecamatan this place lies in (itself, for a kecamatan)."""
        return self.name if self.kind == "kecamatan" else (self.parent or "")


@dataclass(frozen=True)
class _Alias:
    text: str
    tokens: tuple[str, ...]

    @property
    def norm(self) -> str:
        return " ".join(self.tokens)

    @property
    def digits(self) -> frozenset[str]:
        return frozenset(t for t in self.tokens if any(c.isdigit() for c in t))


_ENTRY_KEYS = frozenset({"name", "kind", "aliases", "parent", "lat", "lon", "radius_m", "points"})
_POINT_KEYS = frozenset({"kelurahan", "lat", "lon", "radius_m"})


def _coordinates(where: str, item: Mapping[str, Any]) -> tuple[float, float, float]:
    try:
        lat, lon, radius = float(item["lat"]), float(item["lon"]), float(item["radius_m"])
    except (TypeError, ValueError) as exc:
        raise GazetteerError(f"{where}: lat, lon and radius_m must be numbers") from exc
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise GazetteerError(f"{where}: lat/lon out of range: {lat}, {lon}")
    if not (math.isfinite(radius) and radius > 0):
        raise GazetteerError(f"{where}: radius_m must be positive, got {radius}")
    return lat, lon, radius


def _points_from(where: str, kind: object, points: object) -> tuple[RoadPoint, ...]:
    if points is None:
        return ()
    if kind != "road" or not isinstance(points, list):
        raise GazetteerError(f"{where}: points must be a list, and only roads have them")
    parsed = []
    for index, point in enumerate(points):
        at = f"{where}.points[{index}]"
        if not isinstance(point, Mapping) or set(point) != _POINT_KEYS:
            raise GazetteerError(f"{at}: expected the keys {sorted(_POINT_KEYS)}")
        if not isinstance(point["kelurahan"], str) or not point["kelurahan"].strip():
            raise GazetteerError(f"{at}: kelurahan must be a kelurahan name")
        parsed.append(RoadPoint(point["kelurahan"].strip(), *_coordinates(at, point)))
    return tuple(parsed)


def _entry_from_mapping(index: int, item: object) -> GazetteerEntry:
    where = f"entries[{index}]"
    if not isinstance(item, Mapping):
        raise GazetteerError(f"{where}: expected a mapping, got {type(item).__name__}")
    where = f"{where} ({item.get('name')!r})"
    unknown = set(item) - _ENTRY_KEYS
    missing = (_ENTRY_KEYS - {"aliases", "points"}) - set(item)
    if unknown or missing:
        raise GazetteerError(f"{where}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
    name, kind, parent, aliases = item["name"], item["kind"], item["parent"], item.get("aliases") or []
    if not isinstance(name, str) or not name.strip():
        raise GazetteerError(f"{where}: name must be a non-empty string")
    if kind not in KINDS:
        raise GazetteerError(f"{where}: kind must be one of {KINDS}, got {kind!r}")
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise GazetteerError(f"{where}: aliases must be a list of strings")
    if parent is not None and not isinstance(parent, str):
        raise GazetteerError(f"{where}: parent must be a kecamatan name or null")
    lat, lon, radius = _coordinates(where, item)
    return GazetteerEntry(
        name=name.strip(),
        kind=cast(Kind, kind),
        aliases=tuple(a.strip() for a in aliases),
        parent=parent.strip() if parent else None,
        lat=lat,
        lon=lon,
        radius_m=radius,
        points=_points_from(where, kind, item.get("points")),
    )


def _check_bbox(bbox: Sequence[float], what: str) -> BBox:
    if len(bbox) != 4:
        raise ValueError(f"{what}: expected (south, west, north, east), got {bbox!r}")
    south, west, north, east = (float(v) for v in bbox)
    if not (-90.0 <= south < north <= 90.0 and -180.0 <= west < east <= 180.0):
        raise ValueError(f"{what}: need south < north and west < east, got {bbox!r}")
    return south, west, north, east


def _inside(bbox: BBox, lat: float, lon: float) -> bool:
    south, west, north, east = bbox
    return south <= lat <= north and west <= lon <= east


# ----------------------------------------------------------------------------
# Matching
# ----------------------------------------------------------------------------

_EXACT, _TOKENS, _FUZZY = 0, 1, 2
_LEVEL_NAMES = MappingProxyType({_EXACT: "exact", _TOKENS: "tokens", _FUZZY: "fuzzy"})
# A role that contradicts a kind: "Kec. X" is not kelurahan X, "Gg. X" is not
# the area X. Landmarks are never contradicted -- "Jl. Suroyo dekat RSUD"
# still names the hospital.
_CONTRADICTS: Mapping[str, frozenset[Role]] = MappingProxyType(
    {
        "kecamatan": frozenset({"kel", "road"}),
        "kelurahan": frozenset({"kec", "road"}),
        "road": frozenset({"kec", "kel"}),
        "landmark": frozenset(),
    }
)
_AGREES: Mapping[str, Role | None] = MappingProxyType(
    {
        "kecamatan": "kec",
        "kelurahan": "kel",
        "road": "road",
        "landmark": None,
    }
)


@dataclass
class _Candidate:
    entry: GazetteerEntry
    alias: _Alias
    level: int
    positions: frozenset[int]
    ratio: float = 1.0
    contradicted: bool = False
    agreement: int = 0
    shadowed: bool = False
    confidence: float = 0.0
    conflicts: list[str] = field(default_factory=list)
    alternatives: list[str] = field(default_factory=list)
    point: RoadPoint | None = None  # a road's point that agrees with the areas named with it
    disagrees: list[GazetteerEntry] = field(default_factory=list)  # areas no point of the road lies in

    def rank_key(self) -> tuple[int, int, int, int, int, float]:
        kind_rank = _KIND_RANK["kecamatan"] if self.shadowed else _KIND_RANK[self.entry.kind]
        return (
            int(self.contradicted),
            kind_rank,
            self.level,
            -self.agreement,
            -len(self.alias.tokens),
            -round(self.ratio, 4),
        )


def _match_alias(query: _Query, entry: GazetteerEntry, alias: _Alias, *, fuzzy: bool) -> _Candidate | None:
    """Match one alias of ``entry`` against the query: exact or all-tokens, else fuzzy if asked."""
    q = query.tokens
    if not q or not alias.tokens:
        return None
    if q == alias.tokens:
        return _Candidate(entry, alias, _EXACT, frozenset(range(len(q))))
    if set(alias.tokens) <= set(q):
        wanted = set(alias.tokens)
        return _Candidate(entry, alias, _TOKENS, frozenset(i for i, t in enumerate(q) if t in wanted))
    if not fuzzy or len(alias.norm) < _FUZZY_MIN_CHARS:
        return None
    best: tuple[float, int, int] | None = None
    n = len(alias.tokens)
    # SequenceMatcher caches its analysis of seq2, so the alias goes there.
    matcher = SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(alias.norm)
    for size in sorted({max(1, n - 1), n, n + 1}):
        for start in range(0, len(q) - size + 1):
            window = q[start : start + size]
            # A different number is a different place: "SMAN 2" is not "SMAN 1".
            if frozenset(t for t in window if any(c.isdigit() for c in t)) != alias.digits:
                continue
            matcher.set_seq1(" ".join(window))
            # The quick ratios are upper bounds of ratio(); they prune most windows.
            if matcher.real_quick_ratio() < FUZZY_MIN_RATIO or matcher.quick_ratio() < FUZZY_MIN_RATIO:
                continue
            ratio = matcher.ratio()
            if ratio >= FUZZY_MIN_RATIO and (best is None or ratio > best[0]):
                best = (ratio, start, size)
    if best is None:
        return None
    ratio, start, size = best
    return _Candidate(entry, alias, _FUZZY, frozenset(range(start, start + size)), ratio=ratio)


class _OfflineAdapter(BaseSyncAdapter):
    """Adapter that refuses network I/O: the gazetteer must never leave the machine."""

    def __init__(self, *, proxies: object = None, ssl_context: object = None) -> None:
        super().__init__(proxies=proxies, ssl_context=ssl_context)

    def get_text(self, url: str, *, timeout: float | None, headers: Mapping[str, str]) -> str:
        raise GeocoderUnavailable(f"offline gazetteer makes no HTTP requests (asked for {url})")

    def get_json(self, url: str, *, timeout: float | None, headers: Mapping[str, str]) -> Any:
        raise GeocoderUnavailable(f"offline gazetteer makes no HTTP requests (asked for {url})")


class GazetteerGeocoder(Geocoder):
    """A geopy geocoder that answers from an in-memory gazetteer, offline.

    Matching, on normalised text (case, punctuation, old spelling, RT/RW,
    house numbers and the words jl/jln/jalan/gg/kel/kelurahan/kec/kecamatan/
    desa removed; the city's own name ignored):

    1. *exact* -- the whole text is an alias;
    2. *tokens* -- every word of an alias occurs in the text;
    3. *fuzzy* -- a run of words is within difflib ratio >= 0.85 of an alias.

    Matches that compete for the same words keep only the best level. Between
    matches on different words the most specific kind wins (landmark > road >
    kelurahan > kecamatan), so "RSUD, Kel. Mangunharjo" gives the hospital.
    "Kec. X" selects kecamatan X over the same-named kelurahan, and a
    kelurahan named like a kecamatan yields to a place inside that kecamatan.

    ``Location.raw`` carries ``source="gazetteer"``, ``kind``,
    ``matched_name``, ``matched_alias``, ``match``, ``confidence`` (0..1),
    ``kecamatan``, ``radius_m``, ``alternatives`` (equally good other
    entries, which lower the confidence) and ``conflicts`` (areas named in
    the text that contradict the result).
    """

    def __init__(
        self,
        entries: Iterable[GazetteerEntry],
        *,
        region: str = "",
        bbox: Sequence[float] | None = None,
        verified: bool = False,
        user_agent: str | None = None,
    ) -> None:
        """Index ``entries``; raise :class:`GazetteerError` if they are inconsistent."""
        super().__init__(user_agent=user_agent, adapter_factory=_OfflineAdapter)
        self.region = region
        self.verified = verified
        self.bbox: BBox | None = _check_bbox(bbox, "gazetteer bbox") if bbox is not None else None
        self.entries: tuple[GazetteerEntry, ...] = tuple(entries)
        self._kelurahan = {e.name: e for e in self.entries if e.kind == "kelurahan"}
        self._aliases: tuple[tuple[GazetteerEntry, tuple[_Alias, ...]], ...] = self._index()

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> GazetteerGeocoder:
        """Load a gazetteer YAML file (see ``config/gazetteer.yaml`` for the schema)."""
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
        if not isinstance(doc, Mapping) or not isinstance(doc.get("entries"), list):
            raise GazetteerError(f"{path}: expected a mapping with an 'entries' list")
        meta = doc.get("meta") or {}
        if not isinstance(meta, Mapping):
            raise GazetteerError(f"{path}: 'meta' must be a mapping")
        if meta.get("bbox") is not None and not isinstance(meta["bbox"], list):
            raise GazetteerError(f"{path}: meta.bbox must be a list [south, west, north, east]")
        entries = [_entry_from_mapping(i, item) for i, item in enumerate(doc["entries"])]
        try:
            geocoder = cls(
                entries,
                region=str(meta.get("region") or ""),
                bbox=meta.get("bbox"),
                verified=meta.get("verified") is True,
            )
        except GazetteerError as exc:
            raise GazetteerError(f"{path}: {exc}") from exc
        except ValueError as exc:
            raise GazetteerError(f"{path}: meta: {exc}") from exc
        if not geocoder.verified:
            # Loud on every start, so nobody dispatches on placeholder
            # coordinates without having been told.
            log.warning(
                "gazetteer %s is not verified (meta.verified is not true): coordinates are "
                "illustrative approximations and must be checked before operational use",
                path,
            )
        return geocoder

    def _index(self) -> tuple[tuple[GazetteerEntry, tuple[_Alias, ...]], ...]:
        kecamatan = {e.name for e in self.entries if e.kind == "kecamatan"}
        seen_names: set[tuple[str, str]] = set()
        owner: dict[tuple[str, str], str] = {}
        index: list[tuple[GazetteerEntry, tuple[_Alias, ...]]] = []
        for e in self.entries:
            if (e.kind, e.name) in seen_names:
                raise GazetteerError(f"duplicate {e.kind} {e.name!r}")
            seen_names.add((e.kind, e.name))
            if (e.kind == "kecamatan") != (e.parent is None):
                raise GazetteerError(f"{e.name!r}: parent must be null exactly for a kecamatan")
            if e.parent is not None and e.parent not in kecamatan:
                raise GazetteerError(f"{e.name!r}: parent {e.parent!r} is not a kecamatan in the gazetteer")
            if self.bbox is not None and not _inside(self.bbox, e.lat, e.lon):
                raise GazetteerError(f"{e.name!r}: {e.lat}, {e.lon} lies outside the gazetteer bbox")
            for point in e.points:
                if point.kelurahan not in self._kelurahan:
                    raise GazetteerError(f"{e.name!r}: point in {point.kelurahan!r}, which is not a kelurahan")
                if self.bbox is not None and not _inside(self.bbox, point.lat, point.lon):
                    raise GazetteerError(f"{e.name!r}: its point in {point.kelurahan} lies outside the bbox")
            aliases: dict[tuple[str, ...], _Alias] = {}
            for text in (e.name, *e.aliases):
                tokens = _parse(text).tokens
                if not tokens:
                    raise GazetteerError(f"{e.name!r}: alias {text!r} is empty once normalised")
                aliases.setdefault(tokens, _Alias(text, tokens))
                key = (e.kind, " ".join(tokens))
                if owner.setdefault(key, e.name) != e.name:
                    raise GazetteerError(f"{e.name!r}: alias {text!r} is also an alias of {e.kind} {owner[key]!r}")
            index.append((e, tuple(aliases.values())))
        return tuple(index)

    def geocode(
        self, query: str, exactly_one: bool = True, timeout: float | None = None
    ) -> Location | list[Location] | None:
        """Find ``query`` in the gazetteer.

        Returns the best :class:`geopy.location.Location` (or, with
        ``exactly_one=False``, every match best first), or ``None``.
        ``timeout`` is accepted for geopy compatibility; the lookup is local.
        """
        if not isinstance(query, str):
            raise TypeError(f"query must be a string, got {type(query).__name__}")
        ranked = self._rank(_parse(query))
        if not ranked:
            return None
        locations = [self._location(c) for c in ranked]
        return locations[0] if exactly_one else locations

    def nearest_place(self, lat: float, lon: float) -> str | None:
        """The named place a pin is at, as a responder would say it; None when it is near none.

        A landmark whose extent (plus ``NEAR_SLACK_M``) holds the pin, else the kelurahan
        whose centre is nearest, if the pin is within ``NEAR_KELURAHAN_FACTOR`` times its
        radius. Roads are never named: their one point says little about where along them.
        """
        best: tuple[float, str] | None = None
        for kind, reach, label in (
            ("landmark", lambda e: e.radius_m + NEAR_SLACK_M, lambda e: e.name),
            ("kelurahan", lambda e: e.radius_m * NEAR_KELURAHAN_FACTOR, lambda e: f"Kel. {e.name}"),
        ):
            for entry in (e for e in self.entries if e.kind == kind):
                limit = reach(entry)
                if geodesic_at_least_m(lat, lon, entry.lat, entry.lon) > limit:
                    continue  # the geodesic is the slow part of each escalation step: skip it when it cannot matter
                metres = float(geodesic((lat, lon), (entry.lat, entry.lon)).meters)
                if metres <= limit and (best is None or metres < best[0]):
                    best = (metres, label(entry))
            if best is not None:
                return best[1]
        return None

    def _rank(self, query: _Query) -> list[_Candidate]:
        found: list[_Candidate] = []
        for entry, aliases in self._aliases:
            matches = [c for a in aliases if (c := _match_alias(query, entry, a, fuzzy=False))]
            if not matches:
                # Fuzzy matching is the slow part; it is only needed for an
                # entry none of whose aliases matched word for word.
                matches = [c for a in aliases if (c := _match_alias(query, entry, a, fuzzy=True))]
            if matches:
                found.append(min(matches, key=lambda c: (c.level, -len(c.alias.tokens), -c.ratio)))
        if not found:
            return []

        # Competing for the same words, the better match level wins outright.
        found = [
            c for c in found if not any(o.level < c.level and o.positions & c.positions for o in found if o is not c)
        ]
        for c in found:
            roles = {query.roles[i] for i in c.positions}
            c.contradicted = bool(roles) and roles <= _CONTRADICTS[c.entry.kind]
            agree = _AGREES[c.entry.kind]
            c.agreement = int(agree is not None and agree in roles)
        # "Kebonsari Kuln, Kanigaran": the word "kanigaran" is the kecamatan of
        # the place named before it, not kelurahan Kanigaran.
        kecamatan_names = {c.alias.norm for c in found if c.entry.kind == "kecamatan"}
        for c in found:
            if c.entry.kind != "kelurahan" or c.agreement or c.alias.norm not in kecamatan_names:
                continue
            c.shadowed = any(
                o.entry.kind != "kecamatan"
                and o is not c
                and not o.contradicted
                and o.entry.kecamatan == c.entry.name
                and not (o.positions & c.positions)
                for o in found
            )

        found.sort(key=lambda c: (c.rank_key(), c.entry.name))
        for c in found:
            self._score(c, found, len(query.tokens))
        return found

    def _score(self, c: _Candidate, found: Sequence[_Candidate], n_tokens: int) -> None:
        areas = [
            o
            for o in found
            if o is not c and o.level != _FUZZY and not o.contradicted and o.entry.kind in ("kelurahan", "kecamatan")
        ]
        explained = set(c.positions)
        # A kelurahan says more than a kecamatan about where along a road to go.
        for o in sorted(areas, key=lambda o: o.entry.kind == "kelurahan"):
            if o.positions & c.positions:
                continue
            if c.entry.kind == "road":
                # Roads cross boundaries: the road agrees with an area when one of its points
                # lies in it; otherwise the parts of the address disagree, and both are candidates.
                point = self._road_point_in(c.entry, o.entry)
                if point is not None:
                    explained |= o.positions
                    c.point = point
                else:
                    c.conflicts.append(f"{o.entry.kind} {o.entry.name}")
                    c.disagrees.append(o.entry)
            elif o.entry.kecamatan == c.entry.kecamatan:
                explained |= o.positions
            else:
                c.conflicts.append(f"{o.entry.kind} {o.entry.name}")
        coverage = len(explained) / n_tokens
        if c.level == _EXACT:
            confidence = 1.0
        elif c.level == _TOKENS:
            confidence = 0.6 + 0.35 * coverage
        else:
            confidence = c.ratio * (0.55 + 0.35 * coverage)
        if c.contradicted:
            confidence *= 0.6
        if c.conflicts:
            confidence *= 0.6
        ties = [o for o in found if o is not c and o.rank_key() == c.rank_key()]
        c.alternatives = [o.entry.name for o in ties]
        confidence /= 1 + len(ties)
        c.confidence = round(min(1.0, max(0.0, confidence)), 3)

    def _road_points(self, road: GazetteerEntry) -> tuple[RoadPoint, ...]:
        """Every point of a road: its middle (in its parent kecamatan), then one per kelurahan."""
        return (RoadPoint("", road.lat, road.lon, road.radius_m), *road.points)

    def _road_point_in(self, road: GazetteerEntry, area: GazetteerEntry) -> RoadPoint | None:
        """The road's point in ``area``, if it has one: named for it, or within its radius."""
        points = self._road_points(road)

        def in_area(point: RoadPoint) -> bool:
            if area.kind == "kelurahan":
                return point.kelurahan == area.name
            if point.kelurahan:
                return self._kelurahan[point.kelurahan].kecamatan == area.name
            return road.parent == area.name

        named = [point for point in points if in_area(point)]
        if named:
            return named[-1]  # a point for the kelurahan beats the road's middle
        near = [(_metres(point.lat, point.lon, area), point) for point in points]
        metres, point = min(near, key=lambda pair: pair[0])
        return point if metres <= area.radius_m else None

    def _location(self, c: _Candidate) -> Location:
        e = c.entry
        point = c.point
        if point is None and c.disagrees:
            # Still the road's point nearest to the area named with it: the best there is.
            area = c.disagrees[0]
            point = min(self._road_points(e), key=lambda p: _metres(p.lat, p.lon, area))
        lat, lon, radius = (point.lat, point.lon, point.radius_m) if point else (e.lat, e.lon, e.radius_m)
        kelurahan = point.kelurahan if point else ""
        kecamatan = self._kelurahan[kelurahan].kecamatan if kelurahan else e.kecamatan
        parts = {
            "kecamatan": [f"Kec. {e.name}"],
            "kelurahan": [f"Kel. {e.name}", f"Kec. {e.kecamatan}"],
        }.get(e.kind, [e.name, *([f"Kel. {kelurahan}"] if kelurahan else []), f"Kec. {kecamatan}"])
        display = ", ".join([*parts, self.region] if self.region else parts)
        raw: dict[str, Any] = {
            "source": "gazetteer",
            "kind": e.kind,
            "matched_name": e.name,
            "matched_alias": c.alias.text,
            "match": _LEVEL_NAMES[c.level],
            "confidence": c.confidence,
            "kecamatan": kecamatan,
            "lat": lat,
            "lon": lon,
            "radius_m": radius,
            "alternatives": list(c.alternatives),
            "conflicts": list(c.conflicts),
            "verified": self.verified,
        }
        if c.disagrees:
            # The parts of the address point to different places: the call-taker chooses.
            # "area" says where the result lies, so the warning can name both places.
            lies_in = f"Kel. {kelurahan}" if kelurahan else f"Kec. {kecamatan}"
            here = {"name": parts[0], "kind": e.kind, "lat": lat, "lon": lon, "radius_m": radius, "area": lies_in}
            raw["candidates"] = [
                here,
                *(
                    {"name": _area_label(a), "kind": a.kind, "lat": a.lat, "lon": a.lon, "radius_m": a.radius_m}
                    for a in c.disagrees
                ),
            ]
            raw["apart_m"] = round(_metres(lat, lon, c.disagrees[0]))
        return Location(display, (lat, lon), raw)


def _metres(lat: float, lon: float, place: GazetteerEntry) -> float:
    return float(geodesic((lat, lon), (place.lat, place.lon)).meters)


def _area_label(area: GazetteerEntry) -> str:
    return f"{'Kel.' if area.kind == 'kelurahan' else 'Kec.'} {area.name}"


# ----------------------------------------------------------------------------
# The caller-facing API
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GeocodeResult:
    """A geocoded address, with where it came from and how sure the source is."""

    query: str
    lat: float
    lon: float
    display_name: str
    source: Source
    confidence: float
    raw: dict[str, Any]

    @property
    def conflicts(self) -> list[str]:
        """Areas named in the text that the result does not lie in, e.g. ``["kelurahan Jati"]``."""
        return [str(c) for c in self.raw.get("conflicts") or []]

    @property
    def candidates(self) -> list[dict[str, Any]]:
        """When the parts of the address disagree: each place they point to, the result first.

        Each is ``{"name", "kind", "lat", "lon", "radius_m"}``, the result's also ``"area"`` (the
        kelurahan or kecamatan it lies in, e.g. ``"Kec. Kademangan"``); empty when they agree.
        """
        return [dict(c) for c in self.raw.get("candidates") or []]


def _clamp01(value: object) -> float:
    try:
        number = float(cast(Any, value))
    except (TypeError, ValueError):
        return 0.0
    return min(1.0, max(0.0, number)) if math.isfinite(number) else 0.0


def _for_log(text: str) -> str:
    """A caller's address as the log may name it: a reference, never the words.

    Call-record addresses are personal data (and sometimes carry a phone number typed into
    the wrong field). The incident's timeline keeps the address for the people allowed to
    see it; the log only needs to tell one lookup from another.
    """
    digest = hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:10]
    return f"address#{digest} ({len(text)} chars)"


def geocode_address(
    geocoder: Geocoder,
    text: str,
    *,
    timeout_s: float,
    attempts: int = 3,
    bounded_to: tuple[float, float, float, float] | None = None,
    backoff_s: float = 0.5,
    max_backoff_s: float = 4.0,
    sleep: Callable[[float], None] = time.sleep,
) -> GeocodeResult | None:
    """Geocode one free-text address; ``None`` when there is no acceptable answer.

    Each attempt calls ``geocoder.geocode(text, exactly_one=True,
    timeout=timeout_s)``. Transient geopy errors (timeouts, 5xx, unavailable,
    rate limiting) are retried up to ``attempts`` tries in all, sleeping
    ``backoff_s`` doubled per retry and capped at ``max_backoff_s`` (a
    server's Retry-After is honoured within that cap).

    ``bounded_to`` is (south, west, north, east); a result outside it is
    discarded rather than returned. For Nominatim it is also sent as a bounded
    viewbox so that the single result asked for is an in-area one.

    Confidence comes from the gazetteer's own score, or for Nominatim from
    the result's ``importance`` clamped to 0..1 (0 when absent).

    Raises the geopy error at once when it is permanent (query rejected,
    authentication or permission refused), or the last one when every
    attempt failed -- so "the service is down" never looks like "no such
    place".
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    bbox = _check_bbox(bounded_to, "bounded_to") if bounded_to is not None else None
    query = text.strip()
    if not query:
        log.info("geocode skipped: empty address text")
        return None

    extra: dict[str, Any] = {}
    if bbox is not None and isinstance(geocoder, Nominatim):
        south, west, north, east = bbox
        extra = {"viewbox": [(south, west), (north, east)], "bounded": True}

    shown = _for_log(query)
    kind = type(geocoder).__name__
    location: Any = None
    for attempt in range(1, attempts + 1):
        try:
            location = geocoder.geocode(query, exactly_one=True, timeout=timeout_s, **extra)
            break
        except _PERMANENT_ERRORS as exc:
            log.error("geocode %s via %s failed permanently: %s", shown, kind, type(exc).__name__)
            raise
        except GeocoderServiceError as exc:
            if attempt == attempts:
                log.error("geocode %s via %s failed after %d attempts: %s", shown, kind, attempts, type(exc).__name__)
                raise
            delay = min(max_backoff_s, backoff_s * 2 ** (attempt - 1))
            if isinstance(exc, GeocoderRateLimited) and exc.retry_after:
                delay = min(max_backoff_s, max(delay, float(exc.retry_after)))
            log.warning(
                "geocode %s via %s attempt %d/%d failed (%s); retrying in %.2fs",
                shown,
                kind,
                attempt,
                attempts,
                type(exc).__name__,
                delay,
            )
            sleep(delay)

    if location is None:
        log.info("geocode %s via %s: no match", shown, kind)
        return None
    lat, lon = float(location.latitude), float(location.longitude)
    if not (math.isfinite(lat) and math.isfinite(lon)):
        log.warning("geocode %s via %s: result has no usable coordinates", shown, kind)
        return None
    if bbox is not None and not _inside(bbox, lat, lon):
        log.warning("geocode %s via %s: discarded a result outside the service area", shown, kind)
        return None

    raw = dict(location.raw)
    source: Source
    if raw.get("source") == "gazetteer":
        source, confidence = "gazetteer", _clamp01(raw.get("confidence"))
    else:
        # Anything else make_geocoder builds is Nominatim-shaped.
        source, confidence = "nominatim", _clamp01(raw.get("importance"))
    result = GeocodeResult(
        query=text,
        lat=lat,
        lon=lon,
        display_name=str(location.address),
        source=source,
        confidence=confidence,
        raw=raw,
    )
    # The place found is as telling as the address asked for: only the confidence goes to the log.
    log.info("geocode %s via %s: found (%s), confidence %.2f", shown, kind, source, confidence)
    return result


def make_geocoder(
    kind: str,
    *,
    gazetteer_path: str,
    nominatim_domain: str | None,
    nominatim_scheme: str = "https",
    user_agent: str = "probolinggo-dispatch",
) -> Geocoder:
    """Build the geocoder named by ``kind``: ``"gazetteer"`` or ``"nominatim"``.

    ``"nominatim"`` is geopy's real client for a self-hosted server, e.g.
    ``nominatim_domain="nominatim.internal:8080"``; ``user_agent`` is sent on
    every request so the server's logs show who asked.
    """
    if kind == "gazetteer":
        return GazetteerGeocoder.from_file(gazetteer_path)
    if kind == "nominatim":
        if not nominatim_domain:
            raise ValueError("nominatim_domain is required for the nominatim geocoder")
        if nominatim_scheme not in ("http", "https"):
            raise ValueError(f"nominatim_scheme must be http or https, got {nominatim_scheme!r}")
        if "nominatim.openstreetmap.org" in nominatim_domain:
            # The public server's usage policy forbids bulk/systematic use and
            # it is unreachable from the dispatch network anyway.
            log.warning("nominatim_domain points at the public OSM server, not a self-hosted one")
        return Nominatim(domain=nominatim_domain, scheme=nominatim_scheme, user_agent=user_agent)
    raise ValueError(f"unknown geocoder kind {kind!r}; expected 'gazetteer' or 'nominatim'")
