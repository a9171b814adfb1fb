"""Venues, their sub-locations, and the signed QR codes that people scan to check in.

A code is a row in ``checkin_venue_code`` plus a token signed for the
``checkin.venue`` context that names the row. The signature refuses altered
and invented codes without touching the database; the row refuses retired
ones: rotating a code revokes the previous one for the same place, and a
revoked code stops working at once.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
from litestar.exceptions import HTTPException

from core import NotFound, Principal, Resource, clock
from core.errors import InvalidInput
from core.signing import EXPIRES, Signer
from plugins.checkin.schemas import (
    CodeView,
    SubLocationBody,
    SubLocationView,
    VenueBody,
    VenueTypeView,
    VenueView,
)
from plugins.checkin.tables import SubLocation, Venue, VenueCode

if TYPE_CHECKING:
    from core.platform import Platform

log = structlog.get_logger("checkin.venues")

CODE_CONTEXT = "checkin.venue"
CODE_PATH = "/checkin/v/"


class VenueFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What province hooks are told about a venue (no personal data)."""

    id: str
    name: str
    province: str
    district: str
    ward: str
    venue_type: str
    capacity: int
    site: str
    default_stay_minutes: int


class VenueType(msgspec.Struct, frozen=True, kw_only=True):
    """A kind of place. ``risk_weight`` scales the risk of contacts met there (1.0 = ordinary)."""

    code: str
    label_vi: str
    label_en: str
    risk_weight: float = 1.0


class Place(msgspec.Struct, frozen=True, kw_only=True):
    """Where a check-in happens: a venue, and one of its sub-locations or none."""

    venue: VenueFacts
    sub_location_id: str | None = None
    sub_location_name: str | None = None


class GoneError(HTTPException):
    """A code that existed but was rotated or revoked: 410."""

    status_code = 410


NATIONAL_VENUE_TYPES: tuple[VenueType, ...] = (
    VenueType(code="restaurant", label_vi="Nhà hàng, quán ăn", label_en="Restaurant", risk_weight=1.2),
    VenueType(code="cafe", label_vi="Quán cà phê", label_en="Café", risk_weight=1.1),
    VenueType(code="bar_karaoke", label_vi="Quán bar, karaoke", label_en="Bar or karaoke", risk_weight=1.6),
    VenueType(code="market", label_vi="Chợ", label_en="Market", risk_weight=1.3),
    VenueType(code="supermarket", label_vi="Siêu thị", label_en="Supermarket", risk_weight=1.1),
    VenueType(code="shop", label_vi="Cửa hàng", label_en="Shop", risk_weight=1.0),
    VenueType(code="school", label_vi="Trường học", label_en="School", risk_weight=1.2),
    VenueType(code="office", label_vi="Văn phòng, cơ quan", label_en="Office", risk_weight=1.0),
    VenueType(code="factory", label_vi="Nhà máy, khu công nghiệp", label_en="Factory", risk_weight=1.3),
    VenueType(code="hospital", label_vi="Bệnh viện", label_en="Hospital", risk_weight=1.4),
    VenueType(code="clinic", label_vi="Phòng khám", label_en="Clinic", risk_weight=1.3),
    VenueType(code="pharmacy", label_vi="Nhà thuốc", label_en="Pharmacy", risk_weight=1.0),
    VenueType(code="religious", label_vi="Cơ sở tôn giáo", label_en="Place of worship", risk_weight=1.3),
    VenueType(code="transport_hub", label_vi="Bến xe, nhà ga, sân bay", label_en="Station or airport", risk_weight=1.1),
    VenueType(code="vehicle", label_vi="Phương tiện công cộng", label_en="Bus, train or plane", risk_weight=1.4),
    VenueType(code="hotel", label_vi="Khách sạn, nhà nghỉ", label_en="Hotel", risk_weight=1.0),
    VenueType(code="gym", label_vi="Phòng tập thể thao", label_en="Gym", risk_weight=1.5),
    VenueType(code="event", label_vi="Sự kiện, hội nghị", label_en="Event", risk_weight=1.5),
    VenueType(code="government", label_vi="Cơ quan hành chính", label_en="Public office", risk_weight=1.0),
    VenueType(code="residential", label_vi="Khu dân cư, chung cư", label_en="Residential building", risk_weight=1.0),
    VenueType(code="outdoor", label_vi="Công viên, ngoài trời", label_en="Park or outdoor", risk_weight=0.5),
    VenueType(code="other", label_vi="Khác", label_en="Other", risk_weight=1.0),
)


# -- venue types ------------------------------------------------------------------


async def venue_types(platform: Platform, province: str) -> dict[str, VenueType]:
    """National venue types plus those the province's plugins add (a province never redefines one)."""
    types = {t.code: t for t in NATIONAL_VENUE_TYPES}
    for contributed in await platform.hooks.collect("checkin_venue_types", province=province, province_code=province):
        for venue_type in contributed:
            if not isinstance(venue_type, VenueType) or venue_type.code in types:
                log.warning("checkin.venue_type_ignored", province=province, type=repr(venue_type)[:80])
                continue
            types[venue_type.code] = venue_type
    return types


async def venue_type_views(platform: Platform, province: str) -> list[VenueTypeView]:
    return [
        VenueTypeView(code=t.code, label_vi=t.label_vi, label_en=t.label_en, risk_weight=t.risk_weight)
        for t in (await venue_types(platform, province)).values()
    ]


# -- registration ----------------------------------------------------------------------


async def register_venue(platform: Platform, principal: Principal, body: VenueBody) -> VenueView:
    """Create a venue with its sub-locations and a first code for each; returns the venue."""
    site = body.site or principal.site
    if site is None:
        raise InvalidInput("site: give the id of the site that runs this venue")
    await platform.access.check(
        principal, "checkin.venue.create", Resource(kind="venue", province=body.province, site=site)
    )
    if not await platform.province_exists(body.province):
        raise InvalidInput(f"province: unknown province code {body.province!r}")
    types = await venue_types(platform, body.province)
    if body.venue_type not in types:
        raise InvalidInput(f"venue_type: unknown type {body.venue_type!r}; known: {', '.join(sorted(types))}")
    venue_id = uuid.uuid4()
    async with platform.db.transaction():
        await Venue.insert(
            Venue(
                id=venue_id,
                name=body.name,
                address=body.address,
                province=body.province,
                district=body.district,
                ward=body.ward,
                venue_type=body.venue_type,
                capacity=body.capacity,
                default_stay_minutes=body.default_stay_minutes,
                opening_hours_per_day=body.opening_hours_per_day,
                contact_phone=body.contact_phone,
                site=site,
                active=True,
                created_by=principal.id,
                created_at=clock.now(),
            )
        )
        await _issue_code(venue_id, None, principal)
        for sub in body.sub_locations:
            await _insert_sub_location(venue_id, sub, principal)
    return await venue_view(platform, venue_id)


async def add_sub_location(
    platform: Platform, principal: Principal, venue_id: uuid.UUID, body: SubLocationBody
) -> VenueView:
    facts = await load_venue(venue_id)
    await _check(platform, principal, "checkin.venue.update", facts)
    async with platform.db.transaction():
        await _insert_sub_location(venue_id, body, principal)
    return await venue_view(platform, venue_id)


async def _insert_sub_location(venue_id: uuid.UUID, body: SubLocationBody, principal: Principal) -> None:
    sub_id = uuid.uuid4()
    await SubLocation.insert(
        SubLocation(id=sub_id, venue=venue_id, name=body.name, kind=body.kind, capacity=body.capacity)
    )
    await _issue_code(venue_id, sub_id, principal)


# -- reading ---------------------------------------------------------------------------


async def load_venue(venue_id: uuid.UUID | str) -> VenueFacts:
    row = await Venue.select().where(Venue.id == venue_id).first()
    if row is None:
        raise NotFound("venue_id: no such venue")
    return facts_of(row)


def facts_of(row: dict[str, Any]) -> VenueFacts:
    return VenueFacts(
        id=str(row["id"]),
        name=row["name"],
        province=row["province"],
        district=row["district"],
        ward=row["ward"],
        venue_type=row["venue_type"],
        capacity=row["capacity"],
        site=row["site"],
        default_stay_minutes=row["default_stay_minutes"],
    )


async def readable_venue(platform: Platform, principal: Principal, venue_id: uuid.UUID, action: str) -> VenueFacts:
    """The venue, after checking that ``principal`` may perform ``action`` on it."""
    facts = await load_venue(venue_id)
    await _check(platform, principal, action, facts)
    return facts


async def venue_view(platform: Platform, venue_id: uuid.UUID | str) -> VenueView:
    row = await Venue.select().where(Venue.id == venue_id).first()
    if row is None:
        raise NotFound("venue_id: no such venue")
    subs = await SubLocation.select().where(SubLocation.venue == venue_id).order_by(SubLocation.name)
    codes = await active_codes(platform, venue_id)
    return VenueView(
        id=str(row["id"]),
        name=row["name"],
        address=row["address"],
        province=row["province"],
        district=row["district"],
        ward=row["ward"],
        venue_type=row["venue_type"],
        capacity=row["capacity"],
        default_stay_minutes=row["default_stay_minutes"],
        opening_hours_per_day=row["opening_hours_per_day"],
        contact_phone=row["contact_phone"],
        site=row["site"],
        active=row["active"],
        sub_locations=[
            SubLocationView(id=str(s["id"]), name=s["name"], kind=s["kind"], capacity=s["capacity"]) for s in subs
        ],
        codes=codes,
    )


async def list_venues(
    platform: Platform, principal: Principal, *, limit: int, offset: int, province: str | None
) -> list[VenueView]:
    """Venues the principal may see, filtered in SQL by their scope."""
    scope = await platform.access.scope(principal, "checkin.venue.list")
    query = Venue.select(Venue.id).order_by(Venue.created_at, ascending=False).limit(limit).offset(offset)
    clause = scope.where(province=Venue.province, site=Venue.site)
    if clause is not None:
        query = query.where(clause)
    if province is not None:
        query = query.where(Venue.province == province)
    return [await venue_view(platform, row["id"]) for row in await query]


# -- codes -----------------------------------------------------------------------------


def code_signer(platform: Platform) -> Signer:
    """The venue codes' signer for the platform's key ring (built once per settings and keys)."""
    global _signer_memo
    settings = platform.settings
    memo = _signer_memo
    if (
        memo is not None
        and memo[0] is settings
        and memo[1] == settings.secret_key
        and memo[2] == settings.secret_key_version
        and memo[3] == settings.previous_secret_keys
    ):
        return memo[4]
    signer = Signer.from_settings(settings, CODE_CONTEXT)
    ring = list(settings.previous_secret_keys)
    _signer_memo = (settings, settings.secret_key, settings.secret_key_version, ring, signer)
    return signer


# The last settings' signer, and the key fields it was built from (a changed key ring builds another).
_signer_memo: tuple[Any, str, int, list[str], Signer] | None = None


def code_url(platform: Platform, token: str) -> str:
    """The URL a venue's QR code encodes: this deployment's address plus the signed token."""
    return platform.settings.base_url.rstrip("/") + CODE_PATH + token


async def active_codes(platform: Platform, venue_id: uuid.UUID | str) -> list[CodeView]:
    rows = await (
        VenueCode.select(
            VenueCode.id,
            VenueCode.sub_location,
            VenueCode.sub_location.name.as_alias("sub_location_name"),
            VenueCode.version,
            VenueCode.issued_at,
        )
        .where((VenueCode.venue == venue_id) & VenueCode.revoked_at.is_null())
        .order_by(VenueCode.issued_at)
    )
    signer = code_signer(platform)
    views = []
    for row in rows:
        token = signer.sign({"c": row["id"].hex}, ttl=None)
        views.append(
            CodeView(
                id=str(row["id"]),
                sub_location_id=str(row["sub_location"]) if row["sub_location"] else None,
                sub_location_name=row["sub_location_name"],
                version=row["version"],
                issued_at=clock.as_utc(row["issued_at"]),
                token=token,
                url=code_url(platform, token),
            )
        )
    return views


async def rotate_code(
    platform: Platform, principal: Principal, venue_id: uuid.UUID, sub_location_id: uuid.UUID | None
) -> VenueView:
    """Issue a new code for the venue or one sub-location; the previous one stops working."""
    facts = await load_venue(venue_id)
    await _check(platform, principal, "checkin.venue.codes", facts)
    if sub_location_id is not None and not await SubLocation.exists().where(
        (SubLocation.id == sub_location_id) & (SubLocation.venue == venue_id)
    ):
        raise NotFound("sub_location_id: no such sub-location at this venue")
    async with platform.db.transaction():
        await _issue_code(venue_id, sub_location_id, principal)
    log.info("checkin.code_rotated", venue=str(venue_id), sub_location=str(sub_location_id or ""))
    return await venue_view(platform, venue_id)


async def revoke_code(platform: Platform, principal: Principal, venue_id: uuid.UUID, code_id: uuid.UUID) -> None:
    """Retire one code at once (a stolen or misused poster). The place gets no new code by itself."""
    facts = await load_venue(venue_id)
    await _check(platform, principal, "checkin.venue.codes", facts)
    done = await (
        VenueCode.update({VenueCode.revoked_at: clock.now(), VenueCode.revoked_by: principal.id})
        .where((VenueCode.id == code_id) & (VenueCode.venue == venue_id) & VenueCode.revoked_at.is_null())
        .returning(VenueCode.id)
    )
    forget_codes()
    if not done:
        raise NotFound("code_id: no active code with this id at this venue")
    log.info("checkin.code_revoked", venue=str(venue_id), code=str(code_id))


RESOLVE_CODE_SQL = (
    "SELECT c.revoked_at, c.sub_location, s.name AS sub_location_name, v.id, v.name, v.province, v.district, "
    "v.ward, v.venue_type, v.capacity, v.site, v.default_stay_minutes, v.active "
    "FROM checkin_venue_code c JOIN checkin_venue v ON v.id = c.venue "
    "LEFT JOIN checkin_sub_location s ON s.id = c.sub_location WHERE c.id = {}"
)


async def resolve_code(platform: Platform, token: str, *, field: str = "code") -> Place:
    """The place a scanned code stands for; 400 for a forged code, 410 for a retired one.

    A worker remembers, for ``code_cache_seconds`` after it read the code's row, the place a
    code's row stands for (by code id) and the exact token strings it verified for it: a token
    seen before is answered without checking its signature again. Only a string that passed the
    signature check under the current key ring is remembered, so an altered or forged one is
    always checked (and refused); a rotated or revoked code stops working at once in the worker
    that changed it and within ``code_cache_seconds`` in the others, as before.
    """
    signer = code_signer(platform)
    ttl = platform.plugin_config("checkin").code_cache_seconds
    known = _tokens.get(token)
    if known is not None and known[2] is signer and time.monotonic() - known[0] <= ttl:
        return known[1]
    claims = signer.verify(token, field=field)
    try:
        code_id = uuid.UUID(hex=str(claims.get("c", "")))
    except ValueError:
        raise InvalidInput(f"{field}: not a venue code") from None
    cached = _places.get(code_id)
    if cached is not None and time.monotonic() - cached[0] <= ttl:
        _remember_token(token, cached, signer)
        return cached[1]
    generation = _generation
    read_at = time.monotonic()
    rows = await platform.db.fetch(RESOLVE_CODE_SQL, code_id)
    if not rows:
        raise NotFound(f"{field}: this venue code is unknown")
    row = rows[0]
    if row["revoked_at"] is not None:
        raise GoneError(detail=f"{field}: this code was replaced or withdrawn; scan the venue's current poster")
    if not row["active"]:
        raise GoneError(detail=f"{field}: this venue no longer takes check-ins")
    place = Place(
        venue=facts_of(row),
        sub_location_id=str(row["sub_location"]) if row["sub_location"] else None,
        sub_location_name=row["sub_location_name"],
    )
    if generation == _generation:  # no code changed in this worker while the row was read
        if len(_places) >= _PLACES_MAX:
            _places.clear()
        entry = _places[code_id] = (read_at, place)
        _remember_token(token, entry, signer)
    return place


# Places by code id, as last read (with when): every check-in resolves a code, and codes rarely change.
_places: dict[uuid.UUID, tuple[float, Place]] = {}
# Verified token strings: when their code's row was read, the place, the signer that verified them.
_tokens: dict[str, tuple[float, Place, Signer]] = {}
_PLACES_MAX = 100_000
# Counts ``forget_codes`` calls: a row read before one is not remembered after it.
_generation = 0


def _remember_token(token: str, entry: tuple[float, Place], signer: Signer) -> None:
    """Remember a verified token with its code's entry (same read time: the same staleness bound)."""
    if _expires(token):
        return  # a code that carries an expiry is checked every time
    if len(_tokens) >= _PLACES_MAX:
        _tokens.clear()
    _tokens[token] = (entry[0], entry[1], signer)


def _expires(token: str) -> bool:
    """Whether a (verified) token carries an expiry claim (venue codes are issued without one)."""
    claims = token.split(".")[1]
    try:
        decoded = msgspec.json.decode(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    except (ValueError, msgspec.DecodeError):
        return True
    return not isinstance(decoded, dict) or EXPIRES in decoded


def forget_codes() -> None:
    """Drop what this worker remembers of codes (after a code or venue changes)."""
    global _generation
    _generation += 1
    _places.clear()
    _tokens.clear()
    _by_ids.clear()


async def known_place(platform: Platform, venue_id: uuid.UUID | str, sub_location_id: uuid.UUID | str | None) -> Place:
    """``place_at``, remembered for ``code_cache_seconds`` like the places of codes (a device scans all day).

    ``forget_codes`` empties it with the rest; a row read while it ran is not remembered after it.
    """
    key = (str(venue_id), None if sub_location_id is None else str(sub_location_id))
    known = _by_ids.get(key)
    if known is not None and time.monotonic() - known[0] <= platform.plugin_config("checkin").code_cache_seconds:
        return known[1]
    generation, read_at = _generation, time.monotonic()
    place = await place_at(venue_id, sub_location_id)
    if generation == _generation:
        if len(_by_ids) >= _PLACES_MAX:
            _by_ids.clear()
        _by_ids[key] = (read_at, place)
    return place


# Places by (venue id, sub-location id), for staff scanners and proxies (``known_place``).
_by_ids: dict[tuple[str, str | None], tuple[float, Place]] = {}


async def place_at(venue_id: uuid.UUID | str, sub_location_id: uuid.UUID | str | None) -> Place:
    """The place named by ids (staff scanners and proxies choose it instead of scanning)."""
    facts = await load_venue(venue_id)
    if sub_location_id is None:
        return Place(venue=facts)
    sub = await (
        SubLocation.select(SubLocation.name)
        .where((SubLocation.id == sub_location_id) & (SubLocation.venue == venue_id))
        .first()
    )
    if sub is None:
        raise NotFound("sub_location_id: no such sub-location at this venue")
    return Place(venue=facts, sub_location_id=str(sub_location_id), sub_location_name=sub["name"])


async def _issue_code(venue_id: uuid.UUID, sub_location_id: uuid.UUID | None, principal: Principal) -> None:
    """Revoke the place's current code and issue the next version (call inside a transaction)."""
    same_place = (VenueCode.venue == venue_id) & (
        VenueCode.sub_location.is_null() if sub_location_id is None else VenueCode.sub_location == sub_location_id
    )
    latest = await VenueCode.select(VenueCode.version).where(same_place).order_by(VenueCode.version, ascending=False)
    now = clock.now()
    forget_codes()
    await VenueCode.update({VenueCode.revoked_at: now, VenueCode.revoked_by: principal.id}).where(
        same_place & VenueCode.revoked_at.is_null()
    )
    await VenueCode.insert(
        VenueCode(
            id=uuid.uuid4(),
            venue=venue_id,
            sub_location=sub_location_id,
            version=(latest[0]["version"] + 1) if latest else 1,
            issued_at=now,
            issued_by=principal.id,
        )
    )


async def _check(platform: Platform, principal: Principal, action: str, facts: VenueFacts) -> None:
    await platform.access.check(
        principal, action, Resource(kind="venue", id=facts.id, province=facts.province, site=facts.site)
    )
