"""The checkin API (mounted under ``/api/checkin``) and its public page (under ``/checkin``).

Every handler states the action it performs and the purpose it serves, or
``public``; the core's guard checks identity and role from that, and the
domain functions check the record itself (its province, site or person).
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated, Literal
from uuid import UUID

from litestar import Controller, MediaType, Response, delete, get, post
from litestar.concurrency import sync_to_thread
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from core.errors import NotFound
from core.exports import download
from core.web.guard import PlatformDep, PrincipalDep
from core.web.lean import lean_json
from plugins.checkin import posters, stats, tracing, venues, visits
from plugins.checkin.declarations import Questionnaire, questionnaire_for, risky_declarations
from plugins.checkin.schemas import (
    CapacityRow,
    CaseBody,
    CaseView,
    CheckinBody,
    CheckoutBody,
    ContactView,
    DailyCount,
    FlagView,
    HourlyCount,
    NotifyResult,
    PersonalCodeView,
    PlaceView,
    PosterBatchBody,
    ProvinceCode,
    ProxyBody,
    RotateBody,
    ScanBody,
    SubLocationBody,
    VenueBody,
    VenueTypeView,
    VenueView,
    VisitView,
)

if TYPE_CHECKING:
    from litestar.types import ControllerRouterHandler

    from core.platform import Platform
    from core.principal import Principal

TRACING = "checkin.tracing"
DECLARATION = "checkin.declaration"

KEY_LENGTH = (1, 128)
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(name="Idempotency-Key", min_length=KEY_LENGTH[0], max_length=KEY_LENGTH[1], required=False),
]
Limit = Annotated[int, Parameter(ge=1, le=500)]
Offset = Annotated[int, Parameter(ge=0, le=1_000_000)]


def _opt(action: str, purpose: str) -> dict[str, str]:
    return {"action": action, "purpose": purpose}


class VenueController(Controller):
    path = "/venues"
    tags = ["checkin: venues"]

    @post("/", opt=_opt("checkin.venue.create", DECLARATION), summary="Register a venue (and its sub-locations)")
    async def create(self, data: JSONBody[VenueBody], principal: PrincipalDep, platform: PlatformDep) -> VenueView:
        return await venues.register_venue(platform, principal, data)

    @get("/", opt=_opt("checkin.venue.list", DECLARATION), summary="Venues I may see")
    async def list_venues(
        self,
        principal: PrincipalDep,
        platform: PlatformDep,
        limit: Limit = 50,
        offset: Offset = 0,
        province: Annotated[str | None, Parameter(pattern=r"^[0-9]{2}$")] = None,
    ) -> list[VenueView]:
        return await venues.list_venues(platform, principal, limit=limit, offset=offset, province=province)

    @get("/{venue_id:uuid}", opt=_opt("checkin.venue.read", DECLARATION), summary="One venue with its codes")
    async def read(self, venue_id: FromPath[UUID], principal: PrincipalDep, platform: PlatformDep) -> VenueView:
        await venues.readable_venue(platform, principal, venue_id, "checkin.venue.read")
        return await venues.venue_view(platform, venue_id)

    @post(
        "/{venue_id:uuid}/sub-locations",
        opt=_opt("checkin.venue.update", DECLARATION),
        summary="Add a room, table, floor or shift with its own code",
    )
    async def add_sub_location(
        self, venue_id: FromPath[UUID], data: JSONBody[SubLocationBody], principal: PrincipalDep, platform: PlatformDep
    ) -> VenueView:
        return await venues.add_sub_location(platform, principal, venue_id, data)

    @post(
        "/{venue_id:uuid}/codes/rotate",
        opt=_opt("checkin.venue.codes", DECLARATION),
        status_code=HTTP_200_OK,
        summary="Issue a new code for the venue or a sub-location; the old one stops working",
    )
    async def rotate(
        self, venue_id: FromPath[UUID], data: JSONBody[RotateBody], principal: PrincipalDep, platform: PlatformDep
    ) -> VenueView:
        return await venues.rotate_code(platform, principal, venue_id, data.sub_location_id)

    @delete(
        "/{venue_id:uuid}/codes/{code_id:uuid}",
        opt=_opt("checkin.venue.codes", DECLARATION),
        status_code=HTTP_204_NO_CONTENT,
        summary="Revoke a code at once",
    )
    async def revoke(
        self, venue_id: FromPath[UUID], code_id: FromPath[UUID], principal: PrincipalDep, platform: PlatformDep
    ) -> None:
        await venues.revoke_code(platform, principal, venue_id, code_id)

    @get(
        "/{venue_id:uuid}/poster",
        opt=_opt("checkin.venue.read", DECLARATION),
        summary="A poster to print (SVG, PNG or PDF; every code of the venue in one PDF)",
    )
    async def poster(
        self,
        venue_id: FromPath[UUID],
        principal: PrincipalDep,
        platform: PlatformDep,
        format: FromQuery[Literal["svg", "png", "pdf"]] = "pdf",
        sub_location_id: FromQuery[UUID | None] = None,
    ) -> Response[bytes]:
        found = await posters.venue_posters(platform, principal, venue_id, sub_location_id)
        if not found:
            raise NotFound("sub_location_id: no active code for this place")
        if format == "pdf":
            body = await sync_to_thread(posters.posters_pdf, found)
        else:
            body = await sync_to_thread(posters.render, found[0], format)
        return download(body, f"{found[0].file_stem}.{format}", posters.MEDIA_TYPES[format])


class PosterBatchController(Controller):
    path = "/posters"
    tags = ["checkin: venues"]

    @post(
        "/batch",
        opt=_opt("checkin.venue.read", DECLARATION),
        status_code=HTTP_200_OK,
        summary="Posters of many venues in one zip, one file per code",
    )
    async def batch(
        self, data: JSONBody[PosterBatchBody], principal: PrincipalDep, platform: PlatformDep
    ) -> Response[bytes]:
        found: list[posters.Poster] = []
        for venue_id in dict.fromkeys(data.venue_ids):
            found.extend(await posters.venue_posters(platform, principal, venue_id))
        body = await sync_to_thread(posters.batch_zip, found, data.format)
        return download(body, f"posters-{data.format}.zip", "application/zip")


class CodeController(Controller):
    """What a scanned code stands for: public, so the app can show the form before sign-in."""

    path = "/codes"
    tags = ["checkin: check-in"]

    @get("/{token:str}", opt={"public": True}, summary="The place a venue code stands for")
    async def place(self, token: FromPath[str], platform: PlatformDep) -> PlaceView:
        place = await venues.resolve_code(platform, token)
        return PlaceView(
            venue_id=place.venue.id,
            venue_name=place.venue.name,
            venue_type=place.venue.venue_type,
            province=place.venue.province,
            sub_location_id=place.sub_location_id,
            sub_location_name=place.sub_location_name,
            default_stay_minutes=place.venue.default_stay_minutes,
        )

    @get("/{token:str}/questionnaire", opt={"public": True}, summary="The health declaration form for this place")
    async def questionnaire(self, token: FromPath[str], platform: PlatformDep) -> Questionnaire:
        place = await venues.resolve_code(platform, token)
        return await questionnaire_for(platform, place.venue)


async def _lean_check_in(
    platform: Platform, principal: Principal, data: CheckinBody, headers: dict[str, str | None]
) -> VisitView:
    return await visits.check_in_with_venue_code(platform, principal, data, headers["idempotency-key"])


async def _lean_scan(
    platform: Platform, principal: Principal, data: ScanBody, headers: dict[str, str | None]
) -> VisitView:
    return await visits.check_in_with_personal_code(platform, principal, data, headers["idempotency-key"])


async def _lean_proxy(
    platform: Platform, principal: Principal, data: ProxyBody, headers: dict[str, str | None]
) -> VisitView:
    return await visits.declare_by_proxy(platform, principal, data, headers["idempotency-key"])


# The check-in routes' valid requests are served by the lean path: the same guard, the same call,
# the same answer; anything else goes to their handlers (core/web/lean.py).
_KEY_HEADER = {"idempotency-key": KEY_LENGTH}


class VisitController(Controller):
    tags = ["checkin: check-in"]

    @post(
        "/visits",
        opt=_opt("checkin.visit.create", DECLARATION),
        summary="Check in with a scanned venue code and a health declaration",
        middleware=[lean_json(CheckinBody, _lean_check_in, status_code=201, headers=_KEY_HEADER, writes=True)],
    )
    async def check_in(
        self,
        data: JSONBody[CheckinBody],
        principal: PrincipalDep,
        platform: PlatformDep,
        idempotency_key: IdempotencyKey = None,
    ) -> VisitView:
        return await visits.check_in_with_venue_code(platform, principal, data, idempotency_key)

    @post(
        "/visits/{visit_id:uuid}/checkout",
        opt=_opt("checkin.visit.checkout", TRACING),
        status_code=HTTP_200_OK,
        summary="Check out (otherwise the venue's default stay applies)",
    )
    async def check_out(
        self, visit_id: FromPath[UUID], data: JSONBody[CheckoutBody], principal: PrincipalDep, platform: PlatformDep
    ) -> VisitView:
        return await visits.check_out(platform, principal, visit_id, data.left_at)

    @get("/me/visits", opt=_opt("checkin.visit.list_own", TRACING), summary="My check-ins, newest first")
    async def mine(self, principal: PrincipalDep, limit: Limit = 50) -> list[VisitView]:
        return await visits.own_visits(principal, limit)

    @get(
        "/me/code",
        opt=_opt("checkin.personal_code", TRACING),
        summary="My personal QR code (valid 24 hours) for venue staff to scan",
    )
    async def personal_code(self, principal: PrincipalDep, platform: PlatformDep) -> PersonalCodeView:
        return visits.personal_code(platform, principal)

    @post(
        "/scans",
        opt=_opt("checkin.scan.personal", DECLARATION),
        summary="Venue staff scanned a person's personal code (device key)",
        middleware=[lean_json(ScanBody, _lean_scan, status_code=201, headers=_KEY_HEADER, writes=True)],
    )
    async def scan(
        self,
        data: JSONBody[ScanBody],
        principal: PrincipalDep,
        platform: PlatformDep,
        idempotency_key: IdempotencyKey = None,
    ) -> VisitView:
        return await visits.check_in_with_personal_code(platform, principal, data, idempotency_key)

    @post(
        "/proxy-visits",
        opt=_opt("checkin.visit.proxy", DECLARATION),
        summary="Staff declare for a person without a phone (audited as a proxy declaration)",
        middleware=[lean_json(ProxyBody, _lean_proxy, status_code=201, headers=_KEY_HEADER, writes=True)],
    )
    async def proxy(
        self,
        data: JSONBody[ProxyBody],
        principal: PrincipalDep,
        platform: PlatformDep,
        idempotency_key: IdempotencyKey = None,
    ) -> VisitView:
        return await visits.declare_by_proxy(platform, principal, data, idempotency_key)

    @get(
        "/flags",
        opt=_opt("checkin.flag.list", TRACING),
        summary="Declarations whose answers signal risk, for follow-up in my province",
    )
    async def flags(
        self,
        principal: PrincipalDep,
        platform: PlatformDep,
        hours: Annotated[int, Parameter(ge=1, le=21 * 24)] = 24,
        limit: Limit = 200,
    ) -> list[FlagView]:
        return await risky_declarations(platform, principal, hours=hours, limit=limit)


class CaseController(Controller):
    path = "/cases"
    tags = ["checkin: tracing"]

    @post("/", opt=_opt("checkin.case.create", TRACING), summary="Open a case for an F0 and trace it")
    async def open(self, data: JSONBody[CaseBody], principal: PrincipalDep, platform: PlatformDep) -> CaseView:
        return await tracing.open_case(platform, principal, data)

    @get("/", opt=_opt("checkin.case.list", TRACING), summary="Cases of my province, newest first")
    async def list_cases(
        self, principal: PrincipalDep, platform: PlatformDep, limit: Limit = 50, offset: Offset = 0
    ) -> list[CaseView]:
        return await tracing.list_cases(platform, principal, limit=limit, offset=offset)

    @get("/{case_id:uuid}", opt=_opt("checkin.case.read", TRACING), summary="A case with its zones to close")
    async def read(self, case_id: FromPath[UUID], principal: PrincipalDep, platform: PlatformDep) -> CaseView:
        return await tracing.read_case(platform, principal, case_id)

    @post(
        "/{case_id:uuid}/trace",
        opt=_opt("checkin.case.create", TRACING),
        status_code=HTTP_200_OK,
        summary="Trace the case again (new check-ins, changed settings)",
    )
    async def retrace(self, case_id: FromPath[UUID], principal: PrincipalDep, platform: PlatformDep) -> CaseView:
        return await tracing.retrace_case(platform, principal, case_id)

    @get("/{case_id:uuid}/contacts", opt=_opt("checkin.case.read", TRACING), summary="F1 and F2, highest risk first")
    async def contacts(
        self,
        case_id: FromPath[UUID],
        principal: PrincipalDep,
        platform: PlatformDep,
        degree: Annotated[int | None, Parameter(ge=1, le=2)] = None,
    ) -> list[ContactView]:
        return await tracing.list_contacts(platform, principal, case_id, degree)

    @get(
        "/{case_id:uuid}/export",
        opt=_opt("checkin.case.export", TRACING),
        summary="F1/F2 list as JSON or spreadsheet-safe CSV (audited, names the exporter)",
    )
    async def export(
        self,
        case_id: FromPath[UUID],
        principal: PrincipalDep,
        platform: PlatformDep,
        format: FromQuery[Literal["csv", "json"]] = "csv",
    ) -> Response[bytes]:
        body, name, media_type = await tracing.export_contacts(platform, principal, case_id, format)
        return download(body, name, media_type)

    @post(
        "/{case_id:uuid}/notify",
        opt=_opt("checkin.case.notify", TRACING),
        status_code=HTTP_200_OK,
        summary="Send exposure notices to F1s not yet told (never naming the case)",
    )
    async def notify(self, case_id: FromPath[UUID], principal: PrincipalDep, platform: PlatformDep) -> NotifyResult:
        return await tracing.notify_contacts(platform, principal, case_id)


class ReferralController(Controller):
    path = "/referrals"
    tags = ["checkin: tracing"]

    @get(
        "/",
        opt=_opt("checkin.referral.list", TRACING),
        summary="Contacts met in my province during other provinces' cases",
    )
    async def list_referrals(
        self, principal: PrincipalDep, platform: PlatformDep, limit: Limit = 200
    ) -> list[ContactView]:
        return await tracing.list_referrals(platform, principal, limit=limit)


class StatsController(Controller):
    path = "/stats"
    tags = ["checkin: figures"]

    @get(
        "/venues/{venue_id:uuid}/hourly",
        opt=_opt("checkin.stats.read", TRACING),
        summary="Check-ins at a venue per local hour of a day",
    )
    async def venue_hourly(
        self, venue_id: FromPath[UUID], day: FromQuery[date], principal: PrincipalDep, platform: PlatformDep
    ) -> list[HourlyCount]:
        return await stats.venue_hourly(platform, principal, venue_id, day)

    @get("/provinces/daily", opt=_opt("checkin.stats.read", TRACING), summary="Check-ins per province per local day")
    async def province_daily(
        self,
        principal: PrincipalDep,
        platform: PlatformDep,
        days: Annotated[int, Parameter(ge=1, le=90)] = 7,
        province: Annotated[ProvinceCode | None, Parameter(pattern=r"^[0-9]{2}$")] = None,
    ) -> list[DailyCount]:
        return await stats.province_daily(platform, principal, days=days, province=province)

    @get("/capacity", opt=_opt("checkin.stats.read", TRACING), summary="Scans against capacity, per venue, for a day")
    async def capacity(
        self, day: FromQuery[date], principal: PrincipalDep, platform: PlatformDep, limit: Limit = 200
    ) -> list[CapacityRow]:
        return await stats.capacity_use(platform, principal, day=day, limit=limit)


@get("/venue-types", opt={"public": True}, tags=["checkin: venues"], summary="Venue types of a province")
async def venue_types(
    platform: PlatformDep, province: Annotated[str, Parameter(pattern=r"^[0-9]{2}$")]
) -> list[VenueTypeView]:
    return await venues.venue_type_views(platform, province)


ROUTES: list[ControllerRouterHandler] = [
    VenueController,
    PosterBatchController,
    CodeController,
    VisitController,
    CaseController,
    ReferralController,
    StatsController,
    venue_types,
]


# -- the page a scanned code opens ----------------------------------------------------------


@get("/v/{token:str}", opt={"public": True}, media_type=MediaType.HTML, include_in_schema=False)
async def scanned_code_page(token: FromPath[str], platform: PlatformDep) -> str:
    """What a phone's camera opens: the place's name, and how to check in."""
    from html import escape

    place = await venues.resolve_code(platform, token)
    name = escape(place.venue.name + (f" · {place.sub_location_name}" if place.sub_location_name else ""))
    return (
        '<!doctype html><html lang="vi"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{name}</title></head><body>"
        f"<h1>{name}</h1>"
        "<p>Mở ứng dụng phongdich để khai báo y tế và ghi nhận bạn đã đến đây.</p>"
        "<p>Open the phongdich app to make your health declaration and check in here.</p>"
        f'<p><code data-checkin-code="{escape(token)}">{escape(token[:12])}…</code></p>'
        "</body></html>"
    )


PAGES: list[ControllerRouterHandler] = [scanned_code_page]
