"""Check-ins, three ways: a person scans a venue's code; staff scan a person's personal code;
staff declare on behalf of a person without a phone (proxy). Then check-out.

All three go through ``record_visit``: it checks the times, replays a
request whose idempotency key it has seen, applies the per-identity rate
limit, and then, in one transaction (shared with other check-ins through the
core's group commit), either finds the same visit (a second scan at the same
venue within ``same_visit_minutes``) or stores the visit and its
declaration. Everything is validated before anything is written, so a
refused check-in leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import segno
import structlog
from litestar.exceptions import PermissionDeniedException

from core import Principal, Resource, clock
from core.errors import Conflict, InvalidInput, NotFound
from core.identity import normalize_phone
from core.signing import Signer
from core.tables import Citizen
from plugins.checkin.declarations import Assessment, assess, questionnaire_for
from plugins.checkin.schemas import (
    CheckinBody,
    PersonalCodeView,
    ProxyBody,
    ScanBody,
    VisitView,
)
from plugins.checkin.settings import CheckinSettings
from plugins.checkin.tables import Declaration, IdempotencyKey, SubLocation, Venue, Visit
from plugins.checkin.venues import Place, place_at, resolve_code

if TYPE_CHECKING:
    from core.platform import Platform

PERSONAL_CONTEXT = "checkin.personal"
HOUR = 3600
# Namespaces the PostgreSQL advisory locks that serialise one person's check-ins.
SUBJECT_LOCK_CLASS = 0x636B


class Person(msgspec.Struct, frozen=True, kw_only=True):
    """Who checks in: a citizen id (or a pseudonym for an identity card), and contact details."""

    subject_id: str
    full_name: str
    phone: str | None = None
    id_number: str | None = None


class _KeyTaken(Exception):
    """A concurrent request with the same idempotency key stored its visit first."""


def settings_of(platform: Platform) -> CheckinSettings:
    config: CheckinSettings = platform.plugin_config("checkin")
    return config


# -- the three ways in ----------------------------------------------------------------------


async def check_in_with_venue_code(
    platform: Platform, principal: Principal, body: CheckinBody, idempotency_key: str | None
) -> VisitView:
    """A signed-in person scanned a venue's poster."""
    if principal.subject_id is None:
        raise PermissionDeniedException("Only a signed-in person can check themselves in.")
    place = await resolve_code(platform, body.code)
    assessment = assess(await questionnaire_for(platform, place.venue), body.declaration)
    person = Person(
        subject_id=principal.subject_id,
        full_name=body.full_name,
        phone=await citizen_phone(principal.subject_id),
    )
    return await record_visit(
        platform,
        principal,
        place,
        person,
        assessment,
        arrived_at=body.arrived_at,
        stay_minutes=body.stay_minutes,
        method="scan",
        idempotency_key=idempotency_key,
    )


async def check_in_with_personal_code(
    platform: Platform, principal: Principal, body: ScanBody, idempotency_key: str | None
) -> VisitView:
    """Venue staff scanned the personal code a person shows on their phone."""
    place = await place_at(body.venue_id, body.sub_location_id)
    await _check_place(platform, principal, "checkin.scan.personal", place)
    claims = personal_signer(platform).verify(body.personal_code, field="personal_code")
    subject_id = str(claims.get("s", ""))
    phone = await citizen_phone(subject_id)
    if phone is None:
        raise NotFound("personal_code: this person's account no longer exists")
    assessment = None
    if body.declaration is not None:
        assessment = assess(await questionnaire_for(platform, place.venue), body.declaration)
    person = Person(subject_id=subject_id, full_name=body.full_name or "", phone=phone)
    return await record_visit(
        platform,
        principal,
        place,
        person,
        assessment,
        arrived_at=body.arrived_at,
        stay_minutes=body.stay_minutes,
        method="personal",
        idempotency_key=idempotency_key,
    )


async def declare_by_proxy(
    platform: Platform, principal: Principal, body: ProxyBody, idempotency_key: str | None
) -> VisitView:
    """Staff declared for a person without a phone app; audited as a proxy declaration."""
    if body.phone is None and body.id_number is None:
        raise InvalidInput("phone: give the person's phone number or their id_number")
    place = await place_at(body.venue_id, body.sub_location_id)
    await _check_place(platform, principal, "checkin.visit.proxy", place)
    assessment = assess(await questionnaire_for(platform, place.venue), body.declaration)
    phone = normalize_phone(body.phone) if body.phone is not None else None
    if phone is not None:
        subject_id = str(await platform.identity.citizen_for(phone))
    else:
        assert body.id_number is not None
        subject_id = id_card_subject(platform, body.id_number)
    person = Person(subject_id=subject_id, full_name=body.full_name, phone=phone, id_number=body.id_number)
    return await record_visit(
        platform,
        principal,
        place,
        person,
        assessment,
        arrived_at=body.arrived_at,
        stay_minutes=body.stay_minutes,
        method="proxy",
        idempotency_key=idempotency_key,
    )


# -- the shared pipeline --------------------------------------------------------------------


async def record_visit(
    platform: Platform,
    principal: Principal,
    place: Place,
    person: Person,
    assessment: Assessment | None,
    *,
    arrived_at: datetime | None,
    stay_minutes: int | None,
    method: str,
    idempotency_key: str | None,
) -> VisitView:
    """Store a check-in (or find the same visit), once per idempotency key, all or nothing."""
    config = settings_of(platform)
    now = clock.now()
    arrived = arrival_time(config, arrived_at, now)
    stay = stay_minutes or place.venue.default_stay_minutes
    if stay > config.max_stay_minutes:
        raise InvalidInput(f"stay_minutes: at most {config.max_stay_minutes} minutes")
    key = _idempotency_digest(principal, idempotency_key) if idempotency_key else None
    if key is not None:
        replayed = await _replay(key, now)
        if replayed is not None:
            return replayed
    await _enforce_rate_limits(platform, config, principal, person)
    request_id = structlog.contextvars.get_contextvars().get("request_id")

    async def write() -> tuple[uuid.UUID, int, bool]:
        # The batch runs in the group-commit task: carry the request id into the audit row.
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            return await _store(platform, config, principal, place, person, assessment, arrived, stay, method, key)

    try:
        # Acknowledged only once the batch holding this write has committed.
        visit_id, visit_arrived, repeat = await platform.group_commit.submit(write)
    except _KeyTaken:
        replayed = await _replay(key or "", now)
        if replayed is None:
            raise Conflict("Idempotency-Key: a request with this key is still being processed; retry") from None
        return replayed
    if repeat:
        view = await visit_view(visit_id, now, arrived_at=visit_arrived)
        if view is None:
            raise NotFound("visit: not found after storing it")
    else:
        # Just stored from what is in hand: reading it back would cost two queries per check-in.
        left = visit_arrived + stay * 60
        view = VisitView(
            id=str(visit_id),
            venue_id=place.venue.id,
            venue_name=place.venue.name,
            sub_location_id=place.sub_location_id,
            sub_location_name=place.sub_location_name,
            arrived_at=_time(visit_arrived),
            left_at=_time(left),
            status=_status(checked_out=False, left_at=left, now=now),
            method=method,
        )
    flags = list(assessment.risk_flags) if assessment else []
    return msgspec.structs.replace(view, repeat=repeat, risky=bool(flags), risk_flags=flags)


async def _store(
    platform: Platform,
    config: CheckinSettings,
    principal: Principal,
    place: Place,
    person: Person,
    assessment: Assessment | None,
    arrived: int,
    stay: int,
    method: str,
    key: str | None,
) -> tuple[uuid.UUID, int, bool]:
    """Find the same visit or store a new one; returns (visit id, its arrival, whether it existed)."""
    async with platform.db.transaction():
        if platform.db.kind == "postgres":
            # Serialise one person's check-ins across workers. Never wait: two batches waiting on
            # each other's people would deadlock, so the later one is asked to retry instead.
            locked = await platform.db.execute(
                "SELECT pg_try_advisory_xact_lock({}, hashtext({})) AS locked", SUBJECT_LOCK_CLASS, person.subject_id
            )
            if not locked[0]["locked"]:
                raise Conflict("A check-in for this person is being recorded right now; retry in a moment.")
        same = await _same_visit(config, place, person, arrived)
        visit_id = same["id"] if same else uuid.uuid4()
        if key is not None:
            stored = await (
                IdempotencyKey.insert(
                    IdempotencyKey(
                        key=key,
                        visit_id=visit_id,
                        arrived_at=same["arrived_at"] if same else arrived,
                        created_at=arrived,
                    )
                )
                .on_conflict(action="DO NOTHING")
                .returning(IdempotencyKey.key)
            )
            if not stored:
                raise _KeyTaken
        if same is not None:
            if same["sub_location_id"] is not None and str(same["sub_location_id"]) != (place.sub_location_id or ""):
                # Seen at two parts of the venue: trace them against the whole venue.
                await Visit.update({Visit.sub_location_id: None}).where(
                    (Visit.id == visit_id) & (Visit.arrived_at == same["arrived_at"])
                )
            return visit_id, same["arrived_at"], True
        await Visit.insert(
            Visit(
                id=visit_id,
                venue_id=uuid.UUID(place.venue.id),
                sub_location_id=uuid.UUID(place.sub_location_id) if place.sub_location_id else None,
                province=place.venue.province,
                site=place.venue.site,
                subject_id=person.subject_id,
                phone=person.phone,
                id_number=person.id_number,
                full_name=person.full_name,
                arrived_at=arrived,
                left_at=arrived + stay * 60,
                checked_out=False,
                method=method,
                recorded_by=principal.id,
            )
        )
        if assessment is not None:
            await Declaration.insert(
                Declaration(
                    id=uuid.uuid4(),
                    visit_id=visit_id,
                    subject_id=person.subject_id,
                    province=place.venue.province,
                    venue_id=uuid.UUID(place.venue.id),
                    questionnaire_version=assessment.version,
                    answers=assessment.answers,
                    risk_flags=list(assessment.risk_flags),
                    risky=assessment.risky,
                    declared_at=arrived,
                    proxy_by=principal.id if method == "proxy" else None,
                )
            )
        if method != "scan":
            await platform.audit.record(
                principal,
                "checkin.visit.proxy" if method == "proxy" else "checkin.scan.personal",
                Resource(
                    kind="visit",
                    id=str(visit_id),
                    province=place.venue.province,
                    site=place.venue.site,
                    subject_id=person.subject_id,
                ),
                purpose="checkin.declaration",
                detail="proxy declaration by staff" if method == "proxy" else "personal code scanned by venue staff",
            )
        return visit_id, arrived, False


async def _same_visit(config: CheckinSettings, place: Place, person: Person, arrived: int) -> dict[str, Any] | None:
    window = config.same_visit_minutes * 60
    return await (
        Visit.select(Visit.id, Visit.arrived_at, Visit.sub_location_id)
        .where(
            (Visit.subject_id == person.subject_id)
            & (Visit.venue_id == uuid.UUID(place.venue.id))
            & (Visit.arrived_at >= arrived - window)
            & (Visit.arrived_at <= arrived + window)
        )
        .order_by(Visit.arrived_at, ascending=False)
        .first()
    )


def arrival_time(config: CheckinSettings, arrived_at: datetime | None, now: datetime) -> int:
    """The arrival as Unix seconds: not in the future, not older than the backdate limit."""
    current = int(now.timestamp())
    if arrived_at is None:
        return current
    arrived = int(arrived_at.timestamp())
    if arrived - current > config.clock_skew_seconds:
        raise InvalidInput("arrived_at: this time is in the future")
    if current - arrived > config.max_backdate_minutes * 60:
        raise InvalidInput(f"arrived_at: more than {config.max_backdate_minutes} minutes ago; too late to record")
    return min(arrived, current)


async def _enforce_rate_limits(
    platform: Platform, config: CheckinSettings, principal: Principal, person: Person
) -> None:
    await platform.limiter.enforce(
        f"checkin:subject:{person.subject_id}",
        limit=config.checkins_per_identity_per_hour,
        window=HOUR,
        what="check-ins for this person",
    )
    if principal.subject_id != person.subject_id:
        await platform.limiter.enforce(
            f"checkin:principal:{principal.id}",
            limit=config.scans_per_device_per_hour,
            window=HOUR,
            what="check-ins recorded by this device or account",
        )


def _idempotency_digest(principal: Principal, key: str) -> str:
    # Keys are per sender: two people who pick the same key never collide.
    return hashlib.sha256(f"{principal.id}\n{key}".encode()).hexdigest()


async def _replay(key: str, now: datetime) -> VisitView | None:
    row = await IdempotencyKey.select().where(IdempotencyKey.key == key).first()
    if row is None:
        return None
    view = await visit_view(row["visit_id"], now, arrived_at=row["arrived_at"])
    return None if view is None else msgspec.structs.replace(view, repeat=True)


# -- check-out and reading ---------------------------------------------------------------


async def check_out(
    platform: Platform, principal: Principal, visit_id: uuid.UUID, left_at: datetime | None
) -> VisitView:
    """The person says they left (now, or at ``left_at``); until then the default stay applies."""
    config = settings_of(platform)
    row = await Visit.select().where(Visit.id == visit_id).first()
    if row is None:
        raise NotFound("visit_id: no such visit")
    await platform.access.check(
        principal,
        "checkin.visit.checkout",
        Resource(
            kind="visit", id=str(visit_id), province=row["province"], site=row["site"], subject_id=row["subject_id"]
        ),
    )
    if row["checked_out"]:
        raise Conflict("visit_id: this visit is already checked out")
    now = clock.now()
    left = int((left_at or now).timestamp())
    if left - int(now.timestamp()) > config.clock_skew_seconds:
        raise InvalidInput("left_at: this time is in the future")
    if left < row["arrived_at"]:
        raise InvalidInput("left_at: before the arrival")
    if left - row["arrived_at"] > config.max_stay_minutes * 60:
        raise InvalidInput(f"left_at: a stay of more than {config.max_stay_minutes} minutes is not plausible")
    await Visit.update({Visit.left_at: min(left, int(now.timestamp())), Visit.checked_out: True}).where(
        (Visit.id == visit_id) & (Visit.arrived_at == row["arrived_at"])
    )
    view = await visit_view(visit_id, now, arrived_at=row["arrived_at"])
    assert view is not None
    return view


async def own_visits(principal: Principal, limit: int) -> list[VisitView]:
    """The signed-in person's visits, newest first (what they can show they declared)."""
    if principal.subject_id is None:
        raise PermissionDeniedException("Only a person has visits of their own.")
    now = clock.now()
    rows = await (
        Visit.select(Visit.id, Visit.arrived_at)
        .where(Visit.subject_id == principal.subject_id)
        .order_by(Visit.arrived_at, ascending=False)
        .limit(limit)
    )
    views = [await visit_view(row["id"], now, arrived_at=row["arrived_at"]) for row in rows]
    return [view for view in views if view is not None]


async def visit_view(visit_id: uuid.UUID, now: datetime, *, arrived_at: int | None = None) -> VisitView | None:
    query = Visit.select().where(Visit.id == visit_id)
    if arrived_at is not None:
        # Lets PostgreSQL look in one daily partition only.
        query = query.where(Visit.arrived_at == arrived_at)
    row = await query.first()
    if row is None:
        return None
    venue = await Venue.select(Venue.name).where(Venue.id == row["venue_id"]).first()
    sub_name = None
    if row["sub_location_id"] is not None:
        sub = await SubLocation.select(SubLocation.name).where(SubLocation.id == row["sub_location_id"]).first()
        sub_name = sub["name"] if sub else None
    return VisitView(
        id=str(row["id"]),
        venue_id=str(row["venue_id"]),
        venue_name=venue["name"] if venue else "",
        sub_location_id=str(row["sub_location_id"]) if row["sub_location_id"] else None,
        sub_location_name=sub_name,
        arrived_at=_time(row["arrived_at"]),
        left_at=_time(row["left_at"]),
        status=_status(checked_out=row["checked_out"], left_at=row["left_at"], now=now),
        method=row["method"],
    )


def _status(*, checked_out: bool, left_at: int, now: datetime) -> Literal["present", "checked_out", "auto_checked_out"]:
    if checked_out:
        return "checked_out"
    if left_at <= now.timestamp():
        return "auto_checked_out"
    return "present"


# -- personal codes and identities ----------------------------------------------------------


def personal_signer(platform: Platform) -> Signer:
    return Signer.from_settings(platform.settings, PERSONAL_CONTEXT)


def personal_code(platform: Platform, principal: Principal) -> PersonalCodeView:
    """A code for the person's page, valid ``personal_code_hours``, for staff to scan."""
    if principal.subject_id is None:
        raise PermissionDeniedException("Only a person has a personal code.")
    hours = settings_of(platform).personal_code_hours
    token = personal_signer(platform).sign({"s": principal.subject_id}, ttl=timedelta(hours=hours))
    expires = clock.now() + timedelta(hours=hours)
    svg = segno.make(token, error="m").svg_inline(scale=4, border=4)
    return PersonalCodeView(token=token, expires_at=expires, svg=svg)


async def citizen_phone(subject_id: str) -> str | None:
    try:
        citizen_id = uuid.UUID(subject_id)
    except ValueError:
        return None
    row = await Citizen.select(Citizen.phone).where(Citizen.id == citizen_id).first()
    return row["phone"] if row else None


def id_card_subject(platform: Platform, id_number: str) -> str:
    """A stable pseudonym for a person known only by their identity card number."""
    key = platform.settings.secret_key.encode()
    digest = hmac.new(key, f"checkin.id_card:{id_number}".encode(), hashlib.sha256).hexdigest()
    return f"idcard:{digest[:40]}"


async def _check_place(platform: Platform, principal: Principal, action: str, place: Place) -> None:
    await platform.access.check(
        principal,
        action,
        Resource(kind="venue", id=place.venue.id, province=place.venue.province, site=place.venue.site),
    )


def _time(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=clock.now().tzinfo)
