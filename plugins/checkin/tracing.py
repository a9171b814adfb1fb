"""Contact tracing: cases (F0), their F1 and F2 contacts, risk scores, narrow zoning, notices.

A case opens by hand (an epidemiologist) or from a positive result that the
testing plugin announces (``open_case_from_result``: one case per sample,
however often the event is delivered). Its infectious window runs from
``infectious_days_before`` days before symptom onset (or the sample date) to
isolation.

F1 are the people whose visits overlapped the case's visits at the same
venue (or the same sub-location when both visits name one), counting a
``tail_minutes`` after the case left, for at least ``min_overlap_minutes``
in all. F2 are found the same way from each F1, over the time since that
F1 was exposed. Each degree takes two statements, whatever the number of
sources: the sources' visits in their windows (by person and arrival), then
every other visit at those venues that overlapped one of them (by venue,
arrival and departure, from an index that carries the visitor's identity, so
the table itself is not read), summed per person in SQL: overlaps, minutes,
risk and the strongest overlap. A person therefore appears once, at their
closest degree (the sources and those found closer are left out).

The risk of one overlap is its hours times its venue type's weight (halved,
by default, for F2), kept to 4 decimals. It depends only on the weight and
the overlap's whole minutes, so the statement looks it up in a table of
those (``_VenueWeights.scores``), and sums integers of 0.0001: the sums are
exactly those of adding the scores one by one. Venues in a province whose
plugins weigh risk (``checkin_risk_weight``) are the exception: their
overlaps come back grouped by person, venue and minutes, and the province's
rules weigh each group once.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from core import Message, NotFound, Principal, Resource, clock
from core.errors import InvalidInput
from core.exports import CSV_MEDIA_TYPE, JSON_MEDIA_TYPE, to_csv, to_json
from core.identity import normalize_phone
from core.tables import Citizen
from plugins.checkin.schemas import CaseBody, CaseView, ContactView, NotifyResult, ZoneView
from plugins.checkin.settings import CheckinSettings
from plugins.checkin.tables import Contact, TracingCase, Venue, Visit, Zone
from plugins.checkin.venues import VenueFacts, facts_of, venue_types
from plugins.checkin.visits import id_card_subject, settings_of

if TYPE_CHECKING:
    from core.platform import Platform

log = structlog.get_logger("checkin.tracing")

PURPOSE = "checkin.tracing"
TESTING_ACTOR = Principal(id="service:testing", kind="service")
# For the contact query on PostgreSQL (see ``_contact_rows``).
POSTGRES_SETTINGS = {
    "max_parallel_workers_per_gather": "0",
    "jit": "off",
    "work_mem": "64MB",
    "plan_cache_mode": "force_custom_plan",
}
# Venue facts are loaded this many per query, well under SQLite's and PostgreSQL's parameter limits.
VENUES_PER_QUERY = 500
# Risk scores have 4 decimals; they are added up as integers of this many per point, so exactly.
RISK_UNITS = 10_000
# The weight class of a venue whose province's rules weigh its overlaps (no table of scores).
WEIGHED_BY_RULES = -1

VENUE_FACTS_SQL = """
SELECT id, name, province, district, ward, venue_type, capacity, site, default_stay_minutes
FROM checkin_venue WHERE id = ANY(CAST({} AS UUID[]))
"""

# What differs between the two databases: how arrays of values come in, and names of functions.
# The sources' visits come in as arrays (PostgreSQL) or one JSON array (SQLite): one statement for
# any number of them, planned once.
DIALECT = {
    "postgres": {
        "sql_sources": """
SELECT * FROM unnest(CAST({subjects} AS VARCHAR[]), CAST({starts} AS BIGINT[]), CAST({ends} AS BIGINT[]))""",
        "sql_visits": """
SELECT * FROM unnest(
    CAST({source_subjects} AS VARCHAR[]), CAST({venues} AS UUID[]), CAST({subs} AS UUID[]),
    CAST({arrivals} AS BIGINT[]), CAST({departures} AS BIGINT[]),
    CAST({starts} AS BIGINT[]), CAST({ends} AS BIGINT[]), CAST({classes} AS INT[])
)""",
        "sql_excluded": "SELECT unnest(CAST({excluded} AS VARCHAR[]))",
        "sql_score": "(CAST({scores} AS BIGINT[]))[CAST(weight_class * {width} + (end_at - start_at) / 60 + 1 AS INT)]",
        "sql_greatest": "GREATEST",
        "sql_least": "LEAST",
        "sql_bytewise": '"C"',
    },
    "sqlite": {
        "sql_sources": """
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]')
FROM json_each({sources_json})""",
        "sql_visits": """
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
    json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'),
    json_extract(value, '$[6]'), json_extract(value, '$[7]')
FROM json_each({visits_json})""",
        "sql_excluded": "SELECT value FROM json_each({excluded_json})",
        "sql_score": "json_extract({scores_json}, '$[' || (weight_class * {width} + (end_at - start_at) / 60) || ']')",
        "sql_greatest": "max",
        "sql_least": "min",
        "sql_bytewise": "BINARY",
    },
}

# Step 1: the sources' visits in their windows (a stay that began up to ``max_stay`` earlier counts).
# The bounds of all the windows together (``earliest``, ``latest``) are constants, which leave the
# daily partitions outside them out of the plan (steps 1 and 2).
SOURCE_VISITS_SQL = """
WITH src(subject_id, window_start, window_end) AS ({sql_sources})
SELECT src.subject_id AS source_subject, CAST(f.venue_id AS TEXT) AS venue_id,
    CAST(f.sub_location_id AS TEXT) AS sub_location_id, f.arrived_at AS arrived_at, f.left_at AS left_at,
    src.window_start AS window_start, src.window_end AS window_end
FROM src
JOIN checkin_visit f
    ON f.subject_id = src.subject_id
    AND f.arrived_at >= src.window_start - {max_stay}
    AND f.arrived_at < src.window_end
    AND f.left_at > src.window_start
    AND f.arrived_at >= {earliest}
    AND f.arrived_at < {latest}
"""

# Step 2: every overlap of another person's visit with one of those visits at the same venue (or
# sub-location when both name one), the tail counted after the source left, clipped to the source's
# window, and its score (whole minutes, weighed by the venue's class: NULL for venues weighed by
# rules); then, over each person's overlaps, ordered strongest first (ties: the earliest), their
# number, minutes, summed score and first moment. The index on (venue, arrival, departure) carries the
# other columns read here, so the visits of a busy venue are read from the index alone.
CONTACTS_SQL = """
WITH f(source_subject, venue_id, sub_location_id, arrived_at, left_at, window_start, window_end, weight_class) AS (
    {sql_visits}
),
pairs AS (
    SELECT
        c.subject_id AS subject_id,
        c.phone AS phone,
        c.id_number AS id_number,
        c.full_name AS full_name,
        c.venue_id AS venue_id,
        COALESCE(f.sub_location_id, c.sub_location_id) AS sub_location_id,
        f.source_subject AS source_subject,
        f.weight_class AS weight_class,
        {sql_greatest}(c.arrived_at, f.arrived_at, f.window_start) AS start_at,
        {sql_least}(c.left_at, f.left_at + {tail}, f.window_end + {tail}) AS end_at
    FROM f
    JOIN checkin_visit c
        ON c.venue_id = f.venue_id
        AND c.arrived_at >= f.arrived_at - {max_stay}
        AND c.arrived_at < f.left_at + {tail}
        AND c.left_at > f.arrived_at
        AND (f.sub_location_id IS NULL OR c.sub_location_id IS NULL OR c.sub_location_id = f.sub_location_id)
        AND c.arrived_at >= {earliest}
        AND c.arrived_at < {latest}
    WHERE c.subject_id NOT IN ({sql_excluded})
),
scored AS (
    SELECT
        pairs.*,
        (end_at - start_at) / 60 AS minutes,
        CASE WHEN weight_class >= 0 THEN {sql_score} END AS units
    FROM pairs
    WHERE end_at > start_at
),
people AS (
    SELECT
        scored.*,
        COUNT(*) OVER person AS exposures,
        CAST(SUM(minutes) OVER person AS BIGINT) AS overlap_minutes,
        CAST(SUM(units) OVER person AS BIGINT) AS risk_units,
        MIN(start_at) OVER person AS first_exposed,
        ROW_NUMBER() OVER person AS nth
    FROM scored
    WINDOW person AS (
        PARTITION BY subject_id COLLATE {sql_bytewise}
        ORDER BY units DESC NULLS LAST, start_at, end_at, venue_id, source_subject COLLATE {sql_bytewise}
        ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
    )
)
SELECT
    'person' AS kind, subject_id, phone, id_number, full_name, CAST(venue_id AS TEXT) AS venue_id,
    CAST(sub_location_id AS TEXT) AS sub_location_id, source_subject, start_at, end_at, minutes, units,
    1 AS times, exposures, overlap_minutes, risk_units, first_exposed
FROM people
WHERE nth = 1 AND overlap_minutes >= {min_overlap}
"""

# With venues weighed by rules, also their overlaps of each listed person, grouped by venue and whole
# minutes (they weigh the same), each group with its number and its earliest overlap.
RULE_GROUPS_SQL = """
UNION ALL
SELECT
    'group', subject_id, phone, id_number, full_name, CAST(venue_id AS TEXT), CAST(sub_location_id AS TEXT),
    source_subject, start_at, end_at, minutes, NULL, times, NULL, NULL, NULL, NULL
FROM (
    SELECT
        people.*,
        COUNT(*) OVER same AS times,
        ROW_NUMBER() OVER (same ORDER BY start_at, end_at, source_subject COLLATE {sql_bytewise}) AS nth_same
    FROM people
    WHERE units IS NULL AND overlap_minutes >= {min_overlap}
    WINDOW same AS (PARTITION BY subject_id, venue_id, minutes)
) same_minutes
WHERE nth_same = 1
"""


class Source(msgspec.Struct, frozen=True):
    """A person whose contacts are wanted, and the window in which they could infect."""

    subject_id: str
    window_start: int
    window_end: int


class Exposure(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A contact's overlap with a source at one venue (Unix seconds), or ``times`` of them.

    A group of ``times`` overlaps (same person, venue and whole minutes) weighs the same; ``start``,
    ``end``, the sub-location and the source are those of the earliest.
    """

    subject_id: str
    phone: str | None
    id_number: str | None
    full_name: str
    venue_id: str
    sub_location_id: str | None
    source_subject: str
    start: int
    end: int
    minutes: int
    times: int = 1


class Traced(msgspec.Struct, kw_only=True, gc=False):
    """One person found by tracing, at their closest degree, with their strongest exposure.

    Scores are integers of 1 / ``RISK_UNITS``; ``best_units`` is -1 while the strongest exposure
    found so far is one that the province's rules have not weighed yet.
    """

    degree: int
    best: Exposure
    best_units: int
    overlap_minutes: int
    exposures: int
    risk_units: int
    first_exposed: int

    @property
    def risk_score(self) -> float:
        return round(self.risk_units / RISK_UNITS, 4)


class ResultReleased(msgspec.Struct, kw_only=True):
    """The payload of ``testing_result_released`` (see ``plugins/testing/hookspecs.py``)."""

    sample_id: str
    province: str
    result: str
    collected_at: datetime
    subject_id: str | None = None
    phone: str | None = None
    symptom_onset: str | None = None


# -- opening cases ----------------------------------------------------------------------------


async def open_case(platform: Platform, principal: Principal, body: CaseBody) -> CaseView:
    """An epidemiologist opens a case for an F0 and traces it at once."""
    await platform.access.check(principal, "checkin.case.create", Resource(kind="case", province=body.province))
    if body.subject_id is None and body.phone is None and body.id_number is None:
        raise InvalidInput("subject_id: give the case's citizen id, phone or id_number")
    config = settings_of(platform)
    onset = _local_midnight(config, body.symptom_onset) if body.symptom_onset else None
    case_id, _ = await _insert_case(
        platform,
        principal,
        province=body.province,
        subject_id=body.subject_id,
        phone=normalize_phone(body.phone) if body.phone else None,
        id_number=body.id_number,
        sample_id=None,
        source="manual",
        symptom_onset=onset,
        sampled_at=body.sampled_at,
        isolated_at=body.isolated_at,
        note=body.note,
    )
    await trace_case(platform, case_id)
    return await read_case(platform, principal, case_id)


async def open_case_from_result(platform: Platform, payload: dict[str, Any]) -> uuid.UUID | None:
    """Handle a released result: a positive one opens (once), traces and notifies its case."""
    result = msgspec.convert(payload, ResultReleased)
    if result.result != "positive":
        return None
    config = settings_of(platform)
    onset = _parse_onset(config, result.symptom_onset)
    case_id, _ = await _insert_case(
        platform,
        TESTING_ACTOR,
        province=result.province,
        subject_id=result.subject_id,
        phone=result.phone,
        id_number=None,
        sample_id=result.sample_id,
        source="testing",
        symptom_onset=onset,
        sampled_at=clock.as_utc(result.collected_at),
        isolated_at=None,
        note="",
    )
    # Each step is idempotent, so a delivery that crashed half-way finishes on the retry.
    row = await TracingCase.select(TracingCase.traced_at).where(TracingCase.id == case_id).first()
    if row is not None and row["traced_at"] is None:
        await trace_case(platform, case_id)
    if config.notify_automatic_cases:
        await notify_contacts(platform, TESTING_ACTOR, case_id, check_access=False)
    return case_id


async def _insert_case(
    platform: Platform,
    principal: Principal,
    *,
    province: str,
    subject_id: str | None,
    phone: str | None,
    id_number: str | None,
    sample_id: str | None,
    source: str,
    symptom_onset: datetime | None,
    sampled_at: datetime | None,
    isolated_at: datetime | None,
    note: str,
) -> tuple[uuid.UUID, bool]:
    """Store the case; for a sample that already has one, return that case instead."""
    config = settings_of(platform)
    now = clock.now()
    anchor = symptom_onset or sampled_at or now
    start = anchor - timedelta(days=config.infectious_days_before)
    end = isolated_at or now
    if end > now + timedelta(seconds=config.clock_skew_seconds):
        raise InvalidInput("isolated_at: this time is in the future")
    if end <= start:
        raise InvalidInput("isolated_at: before the infectious window opens (symptom onset or sample date)")
    if subject_id is None and phone is not None:
        subject_id = await _citizen_by_phone(phone)
    case_id = uuid.uuid4()
    inserted = await (
        TracingCase.insert(
            TracingCase(
                id=case_id,
                province=province,
                subject_id=subject_id,
                phone=phone,
                id_number=id_number,
                sample_id=sample_id,
                source=source,
                symptom_onset=symptom_onset,
                sampled_at=sampled_at,
                window_start=int(start.timestamp()),
                window_end=int(end.timestamp()),
                opened_by=principal.id,
                opened_at=now,
                note=note,
            )
        )
        .on_conflict(action="DO NOTHING")
        .returning(TracingCase.id)
    )
    if inserted:
        log.info("checkin.case_opened", case=str(case_id), province=province, source=source)
        return case_id, True
    existing = await TracingCase.select(TracingCase.id).where(TracingCase.sample_id == sample_id).first()
    if existing is None:
        raise RuntimeError("case insert conflicted but no case holds the sample")
    return existing["id"], False


# -- tracing ----------------------------------------------------------------------------------


async def trace_case(platform: Platform, case_id: uuid.UUID) -> None:
    """Find the case's F1, F2 and zones and store them, replacing an earlier run's."""
    config = settings_of(platform)
    case = await TracingCase.select().where(TracingCase.id == case_id).first()
    if case is None:
        raise NotFound("case_id: no such case")
    f0 = _case_subjects(platform, case)
    window = (case["window_start"], case["window_end"])
    now = int(clock.now().timestamp())
    venues = _VenueWeights(platform, config)

    f1 = await find_contacts(platform, [Source(s, *window) for s in f0], config, venues, degree=1)
    f2: dict[str, Traced] = {}
    if config.trace_f2 and f1:
        # An F1 could pass it on from the moment they were exposed until they are isolated (now).
        sources = [Source(subject, t.first_exposed, max(now, window[1])) for subject, t in f1.items()]
        f2 = await find_contacts(platform, sources, config, venues, degree=2, known=f0)
    zones = await _zones(platform, config, f0, window)
    await _store_trace(platform, case, {**f1, **f2}, zones, venues)
    log.info("checkin.case_traced", case=str(case_id), f1=len(f1), f2=len(f2), zones=len(zones))


async def find_contacts(
    platform: Platform,
    sources: Sequence[Source],
    config: CheckinSettings,
    venues: _VenueWeights,
    *,
    degree: int,
    known: Iterable[str] = (),
) -> dict[str, Traced]:
    """The people whose visits overlapped the sources' visits in the sources' windows, at ``degree``.

    Each comes once, with their overlaps, minutes and risk summed and their strongest exposure, if
    they were together for ``min_overlap_minutes`` in all. The sources themselves, and the
    ``known`` people (found at a closer degree), are left out.
    """
    if not sources:
        return {}
    kind = platform.db.kind
    tail, max_stay = config.tail_minutes * 60, config.max_stay_minutes * 60
    columns = ("source_subject", "venue_id", "sub_location_id", "arrived_at", "left_at", "window_start", "window_end")
    found = [tuple(row[column] for column in columns) for row in await _source_visits(platform, sources, max_stay)]
    if not found:
        return {}
    await venues.load(visit[1] for visit in found)
    # No overlap with a visit lasts longer than the visit and its tail: the table of scores stops there.
    width = max(left + tail - arrived for _, _, _, arrived, left, _, _ in found) // 60 + 1
    classes, scores = venues.scores(degree, width)
    visits = [(*visit, classes[visit[1]]) for visit in found]
    excluded = sorted({s.subject_id for s in sources} | set(known))
    values: dict[str, Any] = {"tail": tail, "max_stay": max_stay, "width": width}
    values["earliest"] = min(arrived for _, _, _, arrived, _, _, _ in found) - max_stay
    values["latest"] = max(left for _, _, _, _, left, _, _ in found) + tail
    values["min_overlap"] = config.min_overlap_minutes
    if kind == "postgres":
        names = ("source_subjects", "venues", "subs", "arrivals", "departures", "starts", "ends", "classes")
        values |= {name: list(column) for name, column in zip(names, zip(*visits, strict=True), strict=True)}
        values |= {"excluded": excluded, "scores": scores}
    else:
        values |= {
            "visits_json": msgspec.json.encode(visits).decode(),
            "excluded_json": msgspec.json.encode(excluded).decode(),
            "scores_json": msgspec.json.encode(scores).decode(),
        }
    template = CONTACTS_SQL
    if any(visit[7] == WEIGHED_BY_RULES for visit in visits):
        template += RULE_GROUPS_SQL
    sql, args = _bind(_in_dialect(template, kind), values)
    return await _rank(await _contact_rows(platform, sql, args), degree=degree, venues=venues)


async def _source_visits(platform: Platform, sources: Sequence[Source], max_stay: int) -> list[Any]:
    kind = platform.db.kind
    values: dict[str, Any] = {"max_stay": max_stay}
    values["earliest"] = min(s.window_start for s in sources) - max_stay
    values["latest"] = max(s.window_end for s in sources)
    if kind == "postgres":
        values |= {
            "subjects": [s.subject_id for s in sources],
            "starts": [s.window_start for s in sources],
            "ends": [s.window_end for s in sources],
        }
    else:
        encoded = msgspec.json.encode([[s.subject_id, s.window_start, s.window_end] for s in sources])
        values["sources_json"] = encoded.decode()
    sql, args = _bind(_in_dialect(SOURCE_VISITS_SQL, kind), values)
    return await platform.db.fetch(sql, *args)


def _in_dialect(template: str, kind: str) -> str:
    """The statement for this database: its fragments (``{sql_visits}``, ``{sql_least}``...) filled in."""
    for name, fragment in DIALECT[kind].items():
        template = template.replace("{" + name + "}", fragment)
    return template


def _bind(template: str, values: dict[str, Any]) -> tuple[str, list[Any]]:
    """Named ``{placeholders}`` to Piccolo's positional ``{}``, with the arguments in order."""
    args: list[Any] = []

    def positional(match: re.Match[str]) -> str:
        args.append(values[match.group(1)])
        return "{}"

    return re.sub(r"\{(\w+)\}", positional, template), args


async def _contact_rows(platform: Platform, sql: str, args: list[Any]) -> list[Any]:
    if platform.db.kind != "postgres":
        return await platform.db.execute(sql, *args)
    async with platform.db.transaction():
        # Index look-ups: starting parallel workers costs more than the query (bench/tracing.py, 10M
        # check-ins: F1 p50 45 ms with them, 12 ms without), and so does compiling it (JIT took a
        # second for a heavy F2 search over the daily partitions, more than running it). The overlaps
        # of a busy place's F2 search are sorted in memory rather than on disk. The statement is planned
        # for its own arrays and bounds every time (under a millisecond), never as a generic plan that
        # knows neither how many visits come in nor which daily partitions they fall in.
        names, settings = list(POSTGRES_SETTINGS), list(POSTGRES_SETTINGS.values())
        await platform.db.fetch(
            "SELECT set_config(name, setting, true) FROM unnest({}::text[], {}::text[]) AS s(name, setting)",
            names,
            settings,
        )
        return await platform.db.fetch(sql, *args)


class _VenueWeights:
    """Venue facts and the weights of venue types and province rules, loaded once per trace."""

    def __init__(self, platform: Platform, config: CheckinSettings) -> None:
        self._platform = platform
        self._config = config
        self.facts: dict[str, VenueFacts] = {}
        self._type_weights: dict[str, dict[str, float]] = {}
        self._ruled: dict[str, bool] = {}
        # A weight depends only on the venue, the overlap and the degree: each is asked for once.
        self._scores: dict[tuple[str, int, int], int] = {}

    async def load(self, venue_ids: Iterable[str]) -> None:
        missing = sorted(set(venue_ids) - set(self.facts))
        if missing and self._platform.db.kind == "postgres":
            # All at once (an F2 search meets a thousand venues or more), without building Piccolo rows.
            for row in await self._platform.db.fetch(VENUE_FACTS_SQL, missing):
                self.facts[str(row["id"])] = facts_of(row)
            missing = []
        for start in range(0, len(missing), VENUES_PER_QUERY):
            ids = [uuid.UUID(v) for v in missing[start : start + VENUES_PER_QUERY]]
            for row in await Venue.select().where(Venue.id.is_in(ids)):
                self.facts[str(row["id"])] = facts_of(row)
        for province in {f.province for f in self.facts.values()} - set(self._type_weights):
            types = await venue_types(self._platform, province)
            self._type_weights[province] = {code: t.risk_weight for code, t in types.items()}
            self._ruled[province] = bool(self._platform.hooks.caller("checkin_risk_weight", province).get_hookimpls())

    def scores(self, degree: int, width: int) -> tuple[dict[str, int], list[int]]:
        """Each loaded venue's weight class, and each class's score of 0 to ``width - 1`` minutes.

        A class is a venue type weight; venues whose province's rules weigh risk have none
        (``WEIGHED_BY_RULES``). The scores come as one list, class after class, in ``RISK_UNITS``.
        """
        factor = self._factor(degree)
        weights: dict[float, int] = {}
        classes: dict[str, int] = {}
        for venue_id, venue in self.facts.items():
            if self._ruled[venue.province]:
                classes[venue_id] = WEIGHED_BY_RULES
            else:
                weight = self._type_weights[venue.province].get(venue.venue_type, 1.0)
                classes[venue_id] = weights.setdefault(weight, len(weights))
        table = [_units(_risk(minutes, weight, factor)) for weight in weights for minutes in range(width)]
        return classes, table

    async def units(self, exposure: Exposure, degree: int) -> int:
        """The risk of one of the exposure's overlaps in ``RISK_UNITS``, weighed by province rules."""
        key = (exposure.venue_id, exposure.minutes, degree)
        score = self._scores.get(key)
        if score is None:
            score = self._scores[key] = _units(await self._score(exposure.venue_id, exposure.minutes, degree))
        return score

    async def _score(self, venue_id: str, minutes: int, degree: int) -> float:
        venue = self.facts[venue_id]
        weight = self._type_weights[venue.province].get(venue.venue_type, 1.0)
        if self._ruled[venue.province]:
            answers = await self._platform.hooks.collect(
                "checkin_risk_weight",
                province=venue.province,
                venue=venue,
                overlap_minutes=minutes,
                degree=degree,
                platform=self._platform,
            )
            for answer in answers:
                if isinstance(answer, int | float) and answer >= 0:
                    weight *= float(answer)
        return _risk(minutes, weight, self._factor(degree))

    def _factor(self, degree: int) -> float:
        return 1.0 if degree == 1 else self._config.f2_risk_factor


def _risk(minutes: int, weight: float, factor: float) -> float:
    """The risk of one overlap: hours together times the venue's weight (and the degree's factor)."""
    return round(minutes / 60 * weight * factor, 4)


def _units(score: float) -> int:
    return round(score * RISK_UNITS)


async def _rank(rows: Iterable[Any], *, degree: int, venues: _VenueWeights) -> dict[str, Traced]:
    """One entry per person from the contact query's rows; groups weighed by province rules added in."""
    people: dict[str, Traced] = {}
    groups: list[Exposure] = []
    for row in rows:
        exposure = Exposure(
            subject_id=row["subject_id"],
            phone=row["phone"],
            id_number=row["id_number"],
            full_name=row["full_name"],
            venue_id=row["venue_id"],
            sub_location_id=row["sub_location_id"],
            source_subject=row["source_subject"],
            start=row["start_at"],
            end=row["end_at"],
            minutes=row["minutes"],
            times=row["times"],
        )
        if row["kind"] == "group":
            groups.append(exposure)
            continue
        units = row["units"]
        people[exposure.subject_id] = Traced(
            degree=degree,
            best=exposure,
            best_units=-1 if units is None else units,
            overlap_minutes=row["overlap_minutes"],
            exposures=row["exposures"],
            risk_units=row["risk_units"] or 0,
            first_exposed=row["first_exposed"],
        )
    for exposure in groups:
        traced = people[exposure.subject_id]
        units = await venues.units(exposure, degree)
        traced.risk_units += units * exposure.times
        if units > traced.best_units or (units == traced.best_units and _earlier(exposure, traced.best)):
            traced.best, traced.best_units = exposure, units
    return people


def _earlier(exposure: Exposure, other: Exposure) -> bool:
    """Between equally strong exposures the earliest is shown, whatever order the rows came in."""
    return (exposure.start, exposure.end, exposure.venue_id, exposure.source_subject) < (
        other.start,
        other.end,
        other.venue_id,
        other.source_subject,
    )


async def _zones(
    platform: Platform, config: CheckinSettings, f0: list[str], window: tuple[int, int]
) -> list[tuple[str, str | None, int, int]]:
    """(venue, sub-location, start, end) where the case was, overlapping stays merged, tail added."""
    if not f0:
        return []
    tail = config.tail_minutes * 60
    rows = await (
        Visit.select(Visit.venue_id, Visit.sub_location_id, Visit.arrived_at, Visit.left_at)
        .where(
            Visit.subject_id.is_in(f0)
            & (Visit.arrived_at >= window[0] - config.max_stay_minutes * 60)
            & (Visit.arrived_at < window[1])
            & (Visit.left_at > window[0])
        )
        .order_by(Visit.arrived_at)
    )
    merged: dict[tuple[str, str | None], list[list[int]]] = {}
    for row in rows:
        place = (str(row["venue_id"]), str(row["sub_location_id"]) if row["sub_location_id"] else None)
        spans = merged.setdefault(place, [])
        start, end = row["arrived_at"], row["left_at"] + tail
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    return [(venue, sub, start, end) for (venue, sub), spans in merged.items() for start, end in spans]


async def _store_trace(
    platform: Platform,
    case: dict[str, Any],
    people: dict[str, Traced],
    zones: list[tuple[str, str | None, int, int]],
    venues: _VenueWeights,
) -> None:
    await venues.load(venue for venue, _sub, _start, _end in zones)
    async with platform.db.transaction():
        notified = {
            row["subject_id"]: row["notified_at"]
            for row in await Contact.select(Contact.subject_id, Contact.notified_at).where(
                (Contact.case_id == case["id"]) & Contact.notified_at.is_not_null()
            )
        }
        await Contact.delete().where(Contact.case_id == case["id"])
        await Zone.delete().where(Zone.case_id == case["id"])
        contacts = [
            _contact_row(case, subject, traced, venues.facts[traced.best.venue_id], notified.get(subject))
            for subject, traced in sorted(people.items(), key=lambda item: (item[1].degree, -item[1].risk_score))
        ]
        for start in range(0, len(contacts), 500):
            await Contact.insert(*contacts[start : start + 500])
        if zones:
            await Zone.insert(
                *[
                    Zone(
                        id=uuid.uuid4(),
                        case_id=case["id"],
                        venue_id=uuid.UUID(venue),
                        venue_name=venues.facts[venue].name,
                        sub_location_id=uuid.UUID(sub) if sub else None,
                        province=venues.facts[venue].province,
                        starts_at=start,
                        ends_at=end,
                    )
                    for venue, sub, start, end in zones
                ]
            )
        await TracingCase.update(
            {
                TracingCase.f1_count: sum(1 for t in people.values() if t.degree == 1),
                TracingCase.f2_count: sum(1 for t in people.values() if t.degree == 2),
                TracingCase.traced_at: clock.now(),
            }
        ).where(TracingCase.id == case["id"])


def _contact_row(
    case: dict[str, Any], subject: str, traced: Traced, venue: VenueFacts, notified_at: datetime | None
) -> Contact:
    best = traced.best
    return Contact(
        id=uuid.uuid4(),
        case_id=case["id"],
        degree=traced.degree,
        subject_id=subject,
        phone=best.phone,
        id_number=best.id_number,
        full_name=best.full_name,
        via_subject_id=best.source_subject if traced.degree == 2 else None,
        venue_id=uuid.UUID(best.venue_id),
        venue_name=venue.name,
        sub_location_id=uuid.UUID(best.sub_location_id) if best.sub_location_id else None,
        province=venue.province,
        referral=venue.province != case["province"],
        exposure_start=best.start,
        exposure_end=best.end,
        overlap_minutes=traced.overlap_minutes,
        exposures=traced.exposures,
        risk_score=traced.risk_score,
        notified_at=notified_at,
    )


# -- reading, exporting, notifying -----------------------------------------------------------


async def list_cases(platform: Platform, principal: Principal, *, limit: int, offset: int) -> list[CaseView]:
    """Cases of the provinces the principal covers, newest first (filtered in SQL)."""
    scope = await platform.access.scope(principal, "checkin.case.list")
    query = TracingCase.select().order_by(TracingCase.opened_at, ascending=False).limit(limit).offset(offset)
    clause = scope.where(province=TracingCase.province)
    if clause is not None:
        query = query.where(clause)
    rows = await query
    await platform.audit.record(
        principal,
        "checkin.case.list",
        [_case_resource(row) for row in rows if row["subject_id"]],
        purpose=PURPOSE,
    )
    return [_case_view(row, []) for row in rows]


async def read_case(platform: Platform, principal: Principal, case_id: uuid.UUID) -> CaseView:
    case = await _case_for(platform, principal, "checkin.case.read", case_id)
    zones = await Zone.select().where(Zone.case_id == case_id).order_by(Zone.starts_at)
    if case["subject_id"]:
        await platform.audit.record(principal, "checkin.case.read", _case_resource(case), purpose=PURPOSE)
    return _case_view(case, zones)


async def retrace_case(platform: Platform, principal: Principal, case_id: uuid.UUID) -> CaseView:
    await _case_for(platform, principal, "checkin.case.create", case_id)
    await trace_case(platform, case_id)
    return await read_case(platform, principal, case_id)


async def list_contacts(
    platform: Platform, principal: Principal, case_id: uuid.UUID, degree: int | None
) -> list[ContactView]:
    """The case's F1 (and F2) list, highest risk first; every person listed is audited."""
    await _case_for(platform, principal, "checkin.case.read", case_id)
    contacts = await _contacts_of(case_id, degree)
    await platform.audit.record(
        principal, "checkin.case.contacts", [_contact_resource(c) for c in contacts], purpose=PURPOSE
    )
    return contacts


async def export_contacts(
    platform: Platform, principal: Principal, case_id: uuid.UUID, fmt: str
) -> tuple[bytes, str, str]:
    """The case's contacts as (file, name, media type); audited per person, naming the exporter."""
    case = await _case_for(platform, principal, "checkin.case.export", case_id)
    contacts = await _contacts_of(case_id, None)
    exported_at = clock.now()
    await platform.audit.record(
        principal,
        "checkin.case.export",
        [_contact_resource(c) for c in contacts],
        purpose=PURPOSE,
        detail=f"format={fmt}",
    )
    name = f"case-{case_id}-contacts-{exported_at:%Y%m%dT%H%M%SZ}.{fmt}"
    if fmt == "json":
        document = {
            "case_id": str(case_id),
            "province": case["province"],
            "exported_by": principal.id,
            "exported_at": exported_at,
            "contacts": contacts,
        }
        return to_json(document), name, JSON_MEDIA_TYPE
    header = [*EXPORT_COLUMNS, "exported_by", "exported_at"]
    rows = [[getattr(c, column) for column in EXPORT_COLUMNS] + [principal.id, exported_at] for c in contacts]
    return to_csv(header, rows), name, CSV_MEDIA_TYPE


EXPORT_COLUMNS = (
    "degree",
    "full_name",
    "phone",
    "id_number",
    "subject_id",
    "venue_name",
    "venue_id",
    "sub_location_id",
    "province",
    "referral",
    "exposure_start",
    "exposure_end",
    "overlap_minutes",
    "exposures",
    "risk_score",
    "via_subject_id",
    "notified_at",
)


async def notify_contacts(
    platform: Platform, principal: Principal, case_id: uuid.UUID, *, check_access: bool = True
) -> NotifyResult:
    """Send each F1 not yet told an exposure notice: the place and the date, never the case."""
    if check_access:
        await _case_for(platform, principal, "checkin.case.notify", case_id)
    config = settings_of(platform)
    rows = await Contact.select().where((Contact.case_id == case_id) & (Contact.degree == 1))
    notified = already = unreachable = 0
    for row in rows:
        if row["notified_at"] is not None:
            already += 1
            continue
        if not row["phone"]:
            unreachable += 1
            continue
        async with platform.db.transaction():
            await platform.messages.send(_exposure_notice(config, row))
            await Contact.update({Contact.notified_at: clock.now()}).where(Contact.id == row["id"])
            await platform.audit.record(
                principal,
                "checkin.case.notify",
                Resource(kind="contact", id=str(row["id"]), province=row["province"], subject_id=row["subject_id"]),
                purpose=PURPOSE,
            )
        notified += 1
    return NotifyResult(notified=notified, already_notified=already, unreachable=unreachable)


async def list_referrals(platform: Platform, principal: Principal, *, limit: int) -> list[ContactView]:
    """Contacts met in the principal's province during another province's case."""
    scope = await platform.access.scope(principal, "checkin.referral.list")
    query = (
        Contact.select()
        .where(Contact.referral == True)  # noqa: E712 (Piccolo builds SQL from ==)
        .order_by(Contact.exposure_start, ascending=False)
        .limit(limit)
    )
    clause = scope.where(province=Contact.province)
    if clause is not None:
        query = query.where(clause)
    contacts = [_contact_view(row) for row in await query]
    await platform.audit.record(
        principal, "checkin.referral.list", [_contact_resource(c) for c in contacts], purpose=PURPOSE
    )
    return contacts


def _exposure_notice(config: CheckinSettings, contact: dict[str, Any]) -> Message:
    local = timezone(timedelta(minutes=config.local_utc_offset_minutes))
    start = datetime.fromtimestamp(contact["exposure_start"], tz=local)
    end = datetime.fromtimestamp(contact["exposure_end"], tz=local)
    when = f"{start:%d/%m/%Y} {start:%H:%M}-{end:%H:%M}"
    place = contact["venue_name"]
    return Message(
        channel="sms",
        recipient=contact["phone"],
        kind="checkin.exposure",
        body_vi=(
            f"Ban da o {place} luc {when}, cung thoi diem voi mot nguoi mac COVID-19. "
            "Hay o tai nha, theo doi suc khoe va lien he tram y te dia phuong de duoc xet nghiem."
        ),
        body_en=(
            f"You were at {place} on {when} at the same time as a person with COVID-19. "
            "Please stay home, watch for symptoms and contact your local health station for a test."
        ),
        province=contact["province"],
    )


# -- helpers of this module -------------------------------------------------------------------


async def _case_for(platform: Platform, principal: Principal, action: str, case_id: uuid.UUID) -> dict[str, Any]:
    case = await TracingCase.select().where(TracingCase.id == case_id).first()
    if case is None:
        raise NotFound("case_id: no such case")
    await platform.access.check(principal, action, Resource(kind="case", id=str(case_id), province=case["province"]))
    return case


async def _contacts_of(case_id: uuid.UUID, degree: int | None) -> list[ContactView]:
    query = Contact.select().where(Contact.case_id == case_id)
    if degree is not None:
        query = query.where(Contact.degree == degree)
    rows = await query.order_by(Contact.degree).order_by(Contact.risk_score, ascending=False)
    return [_contact_view(row) for row in rows]


def _case_subjects(platform: Platform, case: dict[str, Any]) -> list[str]:
    """Every identity the case may have checked in under: citizen account, identity card."""
    subjects = [case["subject_id"]] if case["subject_id"] else []
    if case["id_number"]:
        subjects.append(id_card_subject(platform, case["id_number"]))
    return subjects


async def _citizen_by_phone(phone: str) -> str | None:
    row = await Citizen.select(Citizen.id).where(Citizen.phone == phone).first()
    return str(row["id"]) if row else None


def _case_resource(case: dict[str, Any]) -> Resource:
    return Resource(kind="case", id=str(case["id"]), province=case["province"], subject_id=case["subject_id"])


def _contact_resource(contact: ContactView) -> Resource:
    return Resource(kind="contact", id=contact.id, province=contact.province, subject_id=contact.subject_id)


def _case_view(case: dict[str, Any], zones: list[dict[str, Any]]) -> CaseView:
    return CaseView(
        id=str(case["id"]),
        province=case["province"],
        source=case["source"],
        sample_id=case["sample_id"],
        subject_id=case["subject_id"],
        phone=case["phone"],
        window_start=_time(case["window_start"]),
        window_end=_time(case["window_end"]),
        opened_at=clock.as_utc(case["opened_at"]),
        opened_by=case["opened_by"],
        note=case["note"],
        f1_count=case["f1_count"],
        f2_count=case["f2_count"],
        traced_at=clock.as_utc(case["traced_at"]) if case["traced_at"] else None,
        zones=[
            ZoneView(
                venue_id=str(z["venue_id"]),
                venue_name=z["venue_name"],
                sub_location_id=str(z["sub_location_id"]) if z["sub_location_id"] else None,
                province=z["province"],
                starts_at=_time(z["starts_at"]),
                ends_at=_time(z["ends_at"]),
            )
            for z in zones
        ],
    )


def _contact_view(row: dict[str, Any]) -> ContactView:
    return ContactView(
        id=str(row["id"]),
        case_id=str(row["case_id"]),
        degree=row["degree"],
        subject_id=row["subject_id"],
        full_name=row["full_name"],
        phone=row["phone"],
        id_number=row["id_number"],
        via_subject_id=row["via_subject_id"],
        venue_id=str(row["venue_id"]),
        venue_name=row["venue_name"],
        sub_location_id=str(row["sub_location_id"]) if row["sub_location_id"] else None,
        province=row["province"],
        referral=bool(row["referral"]),
        exposure_start=_time(row["exposure_start"]),
        exposure_end=_time(row["exposure_end"]),
        overlap_minutes=row["overlap_minutes"],
        exposures=row["exposures"],
        risk_score=row["risk_score"],
        notified_at=clock.as_utc(row["notified_at"]) if row["notified_at"] else None,
    )


def _local_midnight(config: CheckinSettings, day: date) -> datetime:
    local = timezone(timedelta(minutes=config.local_utc_offset_minutes))
    return datetime(day.year, day.month, day.day, tzinfo=local).astimezone(UTC)


def _parse_onset(config: CheckinSettings, value: str | None) -> datetime | None:
    """Symptom onset from an event: an ISO date (local midnight) or an ISO time with zone."""
    if not value:
        return None
    try:
        if len(value) == 10:
            return _local_midnight(config, date.fromisoformat(value))
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(f"symptom_onset: not an ISO date or time: {value!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone(timedelta(minutes=config.local_utc_offset_minutes)))
    return parsed.astimezone(UTC)


def _time(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)
