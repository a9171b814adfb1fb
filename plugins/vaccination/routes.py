"""The vaccination API, mounted under ``/api/vaccination``.

Every handler declares the action it performs and the purpose it serves (or
``public``); the core's guard enforces identity, access and consent from
that, and handlers check each record with ``platform.access.check`` once
they know where it belongs.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal
from uuid import UUID

from litestar import Response, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, Parameter, QueryParameter, RawBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED

from core import NotFound, dcc, exports
from core.web.guard import PlatformDep, PrincipalDep
from plugins.vaccination import booking, certificates, doses, eligibility, fhir, figures, people, registry
from plugins.vaccination.schemas import (
    AefiBody,
    AefiView,
    BookingBody,
    BookingOutcome,
    BookingView,
    BulkResult,
    CertificateView,
    CheckinBody,
    CheckinView,
    CorrectionBody,
    CountFigures,
    CoverageFigures,
    DoseBody,
    DoseHistoryView,
    DoseRecorded,
    DoseView,
    DuplicateView,
    LotBody,
    LotView,
    OpeningBody,
    PersonBody,
    PersonView,
    PriorityGroupView,
    ProductBody,
    ProductView,
    RegistrationView,
    ResolveBody,
    RevocationListView,
    RevokeBody,
    RuleBody,
    RuleView,
    ScreeningQuestion,
    SessionBody,
    SessionView,
    SiteBody,
    SiteView,
    StockBody,
    StockFigures,
    StockView,
    TrustListView,
    VerificationView,
    VerifyBody,
)

RECORDS = "vaccination.records"
PUBLIC = {"public": True}
TAGS = ["vaccination"]

Province = Annotated[str | None, Parameter(pattern=r"^[0-9]{2}$")]
Limit = Annotated[int, Parameter(ge=1, le=1000)]


def act(action: str, purpose: str | None = RECORDS) -> dict[str, Any]:
    return {"action": action, "purpose": purpose} if purpose else {"action": action}


# -- registry ----------------------------------------------------------------------------------


@get("/products", opt=PUBLIC, tags=TAGS, summary="Vaccine products and their effective-dated rules")
async def list_products() -> list[ProductView]:
    return await registry.list_products()


@post("/products", opt=act("vaccination.product.manage", None), tags=TAGS, summary="Register a vaccine product")
async def create_product(data: JSONBody[ProductBody], principal: PrincipalDep, platform: PlatformDep) -> ProductView:
    return await registry.create_product(platform, principal, data)


@post(
    "/products/{code:str}/rules",
    opt=act("vaccination.product.manage", None),
    tags=TAGS,
    summary="Change a product's rule from a date on (earlier bookings keep theirs)",
)
async def add_rule(
    code: FromPath[str], data: JSONBody[RuleBody], principal: PrincipalDep, platform: PlatformDep
) -> RuleView:
    return await registry.add_rule(platform, principal, code, data)


@post("/lots", opt=act("vaccination.lot.manage", None), tags=TAGS, summary="Register a lot")
async def create_lot(data: JSONBody[LotBody]) -> LotView:
    return await registry.create_lot(data)


@get("/sites", opt=PUBLIC, tags=TAGS, summary="Vaccination sites, optionally of one province")
async def list_sites(province: Province = None) -> list[SiteView]:
    return await registry.list_sites(province)


@post("/sites", opt=act("vaccination.site.manage", None), tags=TAGS, summary="Open a vaccination site")
async def create_site(data: JSONBody[SiteBody], principal: PrincipalDep, platform: PlatformDep) -> SiteView:
    return await registry.create_site(platform, principal, data)


@post(
    "/sites/{site_id:str}/stock",
    opt=act("vaccination.stock.manage", None),
    tags=TAGS,
    summary="Receive doses of a lot at a site",
)
async def receive_stock(
    site_id: FromPath[str], data: JSONBody[StockBody], principal: PrincipalDep, platform: PlatformDep
) -> StockView:
    return await registry.receive_stock(platform, principal, site_id, data)


@get("/sites/{site_id:str}/stock", opt=act("vaccination.stock.read", None), tags=TAGS, summary="Stock at a site")
async def site_stock(site_id: FromPath[str], principal: PrincipalDep, platform: PlatformDep) -> list[StockView]:
    return await registry.site_stock(platform, principal, site_id)


@post(
    "/sites/{site_id:str}/sessions",
    opt=act("vaccination.session.manage", None),
    tags=TAGS,
    summary="Schedule a session: day, hours, product and capacity",
)
async def create_session(
    site_id: FromPath[str], data: JSONBody[SessionBody], principal: PrincipalDep, platform: PlatformDep
) -> SessionView:
    return await registry.create_session(platform, principal, site_id, data)


@get("/sessions", opt=PUBLIC, tags=TAGS, summary="Upcoming sessions with the places left")
async def list_sessions(
    province: Province = None,
    site: Annotated[str | None, Parameter(max_length=64)] = None,
    product: Annotated[str | None, Parameter(max_length=32)] = None,
    from_day: Annotated[date | None, QueryParameter(name="from")] = None,
    limit: Limit = 200,
) -> list[SessionView]:
    return await registry.list_sessions(province=province, site=site, product=product, from_day=from_day, limit=limit)


@get("/sessions/{session_id:uuid}", opt=PUBLIC, tags=TAGS, summary="One session and its places left")
async def get_session(session_id: FromPath[UUID]) -> SessionView:
    return await registry.session_view(session_id)


@get("/priority-groups", opt=PUBLIC, tags=TAGS, summary="Priority groups of a province, and which may book now")
async def list_groups(
    platform: PlatformDep, province: Annotated[str, Parameter(pattern=r"^[0-9]{2}$")]
) -> list[PriorityGroupView]:
    return await registry.group_views(platform, province)


@put(
    "/priority-groups/open",
    opt=act("vaccination.priority.manage", None),
    tags=TAGS,
    summary="Set which priority groups may book now, nationwide or in a province",
)
async def open_groups(data: JSONBody[OpeningBody], principal: PrincipalDep, platform: PlatformDep) -> list[str]:
    return await registry.set_openings(platform, principal, data)


@get("/screening-questions", opt=PUBLIC, tags=TAGS, summary="The contraindication screening questions")
async def screening_questions() -> list[ScreeningQuestion]:
    return list(eligibility.SCREENING_QUESTIONS)


# -- people ----------------------------------------------------------------------------------------


@post(
    "/people",
    opt=act("vaccination.person.register"),
    tags=TAGS,
    summary="Register yourself or a dependant (citizens), or a walk-in (staff)",
)
async def register_person(
    data: JSONBody[PersonBody], principal: PrincipalDep, platform: PlatformDep
) -> Response[RegistrationView]:
    view = await people.register(platform, principal, data)
    return Response(view, status_code=HTTP_201_CREATED if view.outcome != "existing" else 200)


@get("/people", opt=act("vaccination.person.list"), tags=TAGS, summary="People I registered, or in my scope")
async def list_people(
    principal: PrincipalDep,
    platform: PlatformDep,
    limit: Limit = 100,
    offset: Annotated[int, Parameter(ge=0, le=10_000_000)] = 0,
) -> list[PersonView]:
    return await people.list_people(platform, principal, limit=limit, offset=offset)


@get("/people/{person_id:uuid}", opt=act("vaccination.person.read"), tags=TAGS, summary="One person")
async def get_person(person_id: FromPath[UUID], principal: PrincipalDep, platform: PlatformDep) -> PersonView:
    return people.person_view(await people.get_person(platform, principal, person_id, action="vaccination.person.read"))


@get("/people/{person_id:uuid}/doses", opt=act("vaccination.dose.read"), tags=TAGS, summary="A person's doses")
async def person_doses(person_id: FromPath[UUID], principal: PrincipalDep, platform: PlatformDep) -> list[DoseView]:
    return await doses.list_for_person(platform, principal, person_id)


@get(
    "/people/{person_id:uuid}/certificates",
    opt=act("vaccination.certificate.read"),
    tags=TAGS,
    summary="A person's certificates (issues any a dose still lacks)",
)
async def person_certificates(
    person_id: FromPath[UUID], principal: PrincipalDep, platform: PlatformDep, include_revoked: FromQuery[bool] = False
) -> list[CertificateView]:
    return await certificates.list_for_person(platform, principal, person_id, include_revoked=include_revoked)


@post(
    "/people/bulk",
    opt=act("vaccination.person.bulk_register"),
    responses={
        422: ResponseSpec(data_container=BulkResult, description="Rows with errors; nothing was stored"),
        201: ResponseSpec(data_container=BulkResult, description="Every row stored (or already registered)"),
    },
    tags=TAGS,
    summary="Register people from a CSV file; any bad row stores nothing and is reported by row and field",
)
async def bulk_register(
    body: RawBody,
    principal: PrincipalDep,
    platform: PlatformDep,
    dry_run: FromQuery[bool] = False,
    report: FromQuery[Literal["json", "csv"]] = "json",
) -> Response[Any]:
    result = await people.bulk_register(platform, principal, bytes(body), dry_run=dry_run)
    status = 422 if result.errors else HTTP_201_CREATED if result.stored else 200
    if report == "json":
        return Response(result, status_code=status)
    # The same report as a spreadsheet, cells neutralised against formula injection.
    rows = [(e.row, "error", "", e.field, e.message) for e in result.errors]
    rows += [(r.row, r.outcome, str(r.person_id), "", "") for r in result.results]
    response = exports.download(
        exports.to_csv(("row", "outcome", "person_id", "field", "message"), sorted(rows)),
        "registration-report.csv",
        exports.CSV_MEDIA_TYPE,
    )
    response.status_code = status
    return response


@get("/duplicates", opt=act("vaccination.duplicate.review"), tags=TAGS, summary="Probable duplicates to review")
async def list_duplicates(principal: PrincipalDep, platform: PlatformDep, limit: Limit = 100) -> list[DuplicateView]:
    return await people.list_duplicates(platform, principal, limit=limit)


@post(
    "/duplicates/{person_id:uuid}/resolve",
    opt=act("vaccination.duplicate.review"),
    status_code=200,
    tags=TAGS,
    summary="Merge a probable duplicate into the record it duplicates, or mark the two distinct",
)
async def resolve_duplicate(
    person_id: FromPath[UUID], data: JSONBody[ResolveBody], principal: PrincipalDep, platform: PlatformDep
) -> PersonView:
    return await people.resolve_duplicate(platform, principal, person_id, data.decision)


# -- booking ------------------------------------------------------------------------------------------


@post("/bookings", opt=act("vaccination.booking.create"), tags=TAGS, summary="Book a place (or join the waitlist)")
async def create_booking(
    data: JSONBody[BookingBody], principal: PrincipalDep, platform: PlatformDep
) -> Response[BookingOutcome]:
    outcome = await booking.book(platform, principal, data)
    return Response(outcome, status_code=HTTP_201_CREATED if outcome.booking else HTTP_202_ACCEPTED)


@get("/bookings", opt=act("vaccination.booking.list"), tags=TAGS, summary="Bookings I made, or in my scope")
async def list_bookings(
    principal: PrincipalDep,
    platform: PlatformDep,
    status: FromQuery[Literal["booked", "checked_in", "done", "cancelled"] | None] = None,
    limit: Limit = 100,
) -> list[BookingView]:
    return await booking.list_bookings(platform, principal, status=status, limit=limit)


@post(
    "/bookings/{code:str}/cancel",
    opt=act("vaccination.booking.cancel"),
    status_code=200,
    tags=TAGS,
    summary="Cancel a booking; the place goes to the waitlist",
)
async def cancel_booking(code: FromPath[str], principal: PrincipalDep, platform: PlatformDep) -> BookingView:
    return await booking.cancel(platform, principal, code)


@get(
    "/bookings/{code:str}/qr",
    opt=act("vaccination.booking.read"),
    tags=TAGS,
    summary="A booking as a signed QR code to show at the site (SVG or PNG)",
)
async def booking_qr(
    code: FromPath[str], principal: PrincipalDep, platform: PlatformDep, kind: FromQuery[Literal["svg", "png"]] = "svg"
) -> Response[bytes]:
    token = await booking.qr_token(platform, principal, code)
    media = "image/svg+xml" if kind == "svg" else "image/png"
    return Response(certificates.qr_code(token, kind), media_type=media)


# -- at the site ---------------------------------------------------------------------------------------


@post(
    "/checkin", opt=act("vaccination.checkin"), status_code=200, tags=TAGS, summary="Check a person in by booking code"
)
async def check_in(data: JSONBody[CheckinBody], principal: PrincipalDep, platform: PlatformDep) -> CheckinView:
    return await doses.check_in(platform, principal, booking.code_from(platform, data))


@post("/doses", opt=act("vaccination.dose.record"), tags=TAGS, summary="Record a dose; certificates follow")
async def record_dose(data: JSONBody[DoseBody], principal: PrincipalDep, platform: PlatformDep) -> DoseRecorded:
    return await doses.record(platform, principal, data)


@post(
    "/doses/{dose_id:uuid}/corrections",
    opt=act("vaccination.dose.correct"),
    tags=TAGS,
    summary="Correct a dose with a reason; the old version is kept and certificates re-issued",
)
async def correct_dose(
    dose_id: FromPath[UUID], data: JSONBody[CorrectionBody], principal: PrincipalDep, platform: PlatformDep
) -> DoseRecorded:
    return await doses.correct(platform, principal, dose_id, data)


@get(
    "/doses/{dose_id:uuid}/history",
    opt=act("vaccination.dose.history"),
    tags=TAGS,
    summary="A dose and its earlier versions",
)
async def dose_history(dose_id: FromPath[UUID], principal: PrincipalDep, platform: PlatformDep) -> DoseHistoryView:
    return await doses.history(platform, principal, dose_id)


@post(
    "/aefi",
    opt=act("vaccination.aefi.report"),
    tags=TAGS,
    summary="Report an adverse event after immunisation (staff, or the person)",
)
async def report_aefi(data: JSONBody[AefiBody], principal: PrincipalDep, platform: PlatformDep) -> AefiView:
    return await doses.report_aefi(platform, principal, data)


@get("/aefi", opt=act("vaccination.aefi.read"), tags=TAGS, summary="Adverse event reports in my scope")
async def list_aefi(
    principal: PrincipalDep, platform: PlatformDep, serious: FromQuery[bool | None] = None, limit: Limit = 100
) -> list[AefiView]:
    return await doses.list_aefi(platform, principal, serious=serious, limit=limit)


# -- certificates --------------------------------------------------------------------------------------


@get(
    "/certificates/{certificate_id:uuid}",
    opt=act("vaccination.certificate.read"),
    tags=TAGS,
    summary="One certificate",
)
async def get_certificate(
    certificate_id: FromPath[UUID], principal: PrincipalDep, platform: PlatformDep
) -> CertificateView:
    return await certificates.get_certificate(platform, principal, certificate_id)


@get(
    "/certificates/{certificate_id:uuid}/qr",
    opt=act("vaccination.certificate.read"),
    tags=TAGS,
    summary="A certificate as a QR code (SVG or PNG)",
)
async def certificate_qr(
    certificate_id: FromPath[UUID],
    principal: PrincipalDep,
    platform: PlatformDep,
    kind: FromQuery[Literal["svg", "png"]] = "svg",
) -> Response[bytes]:
    view = await certificates.get_certificate(platform, principal, certificate_id)
    media = "image/svg+xml" if kind == "svg" else "image/png"
    return Response(certificates.qr_code(view.content, kind), media_type=media)


@post(
    "/certificates/{certificate_id:uuid}/revoke",
    opt=act("vaccination.certificate.revoke"),
    status_code=200,
    tags=TAGS,
    summary="Revoke one certificate; it joins the published revocation list",
)
async def revoke_certificate(
    certificate_id: FromPath[UUID], data: JSONBody[RevokeBody], principal: PrincipalDep, platform: PlatformDep
) -> CertificateView:
    return await certificates.revoke(platform, principal, certificate_id, data.reason)


@get("/trust-list", opt=PUBLIC, tags=TAGS, summary="The public keys (CSCA and DSC certificates) that sign certificates")
async def trust_list(platform: PlatformDep) -> TrustListView:
    try:
        return certificates.trust_list(platform)
    except dcc.KeysMissing as exc:
        # Nothing is published yet, so there is nothing to trust: a 404, not a server fault.
        raise NotFound("trust-list: no signing keys yet; the operator must run `phongdich keys init`") from exc


@get("/revocations", opt=PUBLIC, tags=TAGS, summary="Revoked certificates, as DCC revocation hashes")
async def revocations(platform: PlatformDep) -> RevocationListView:
    return await certificates.revocation_list(platform)


@post(
    "/verify",
    opt=PUBLIC,
    status_code=200,
    tags=TAGS,
    summary="Verify a certificate: valid or not, name and date of birth; nothing about the holder is recorded",
)
async def verify(data: JSONBody[VerifyBody], platform: PlatformDep) -> VerificationView:
    return await certificates.verify(platform, data.hc1)


# -- figures and export -------------------------------------------------------------------------------


@get("/figures/doses", opt=PUBLIC, tags=TAGS, summary="Doses per day, province or product")
async def dose_figures(
    by: FromQuery[Literal["day", "province", "product"]] = "day",
    province: Province = None,
    since: FromQuery[date | None] = None,
    until: FromQuery[date | None] = None,
) -> CountFigures:
    return await figures.doses(by, province=province, since=since, until=until)


@get("/figures/coverage", opt=PUBLIC, tags=TAGS, summary="Coverage by age band or priority group")
async def coverage_figures(
    by: FromQuery[Literal["age_band", "priority_group"]] = "age_band", province: Province = None
) -> CoverageFigures:
    return await figures.coverage(by, province=province)


@get("/figures/stock", opt=PUBLIC, tags=TAGS, summary="Doses in stock per province and product")
async def stock_figures(province: Province = None) -> StockFigures:
    return await figures.stock(province=province)


@get(
    "/export/fhir",
    opt=act("vaccination.export.fhir"),
    tags=TAGS,
    summary="FHIR R4 Bundle of Immunization and Patient resources in my scope (audited)",
)
async def export_fhir(
    principal: PrincipalDep,
    platform: PlatformDep,
    province: Province = None,
    since: FromQuery[date | None] = None,
    until: FromQuery[date | None] = None,
    limit: Annotated[int, Parameter(ge=1, le=50_000)] = 5000,
) -> Response[dict[str, Any]]:
    bundle = await fhir.export(platform, principal, province=province, since=since, until=until, limit=limit)
    return Response(bundle, media_type=fhir.FHIR_JSON)


ROUTES = [
    list_products,
    create_product,
    add_rule,
    create_lot,
    list_sites,
    create_site,
    receive_stock,
    site_stock,
    create_session,
    list_sessions,
    get_session,
    list_groups,
    open_groups,
    screening_questions,
    register_person,
    list_people,
    get_person,
    person_doses,
    person_certificates,
    bulk_register,
    list_duplicates,
    resolve_duplicate,
    create_booking,
    list_bookings,
    cancel_booking,
    booking_qr,
    check_in,
    record_dose,
    correct_dose,
    dose_history,
    report_aefi,
    list_aefi,
    get_certificate,
    certificate_qr,
    revoke_certificate,
    trust_list,
    revocations,
    verify,
    dose_figures,
    coverage_figures,
    stock_figures,
    export_fhir,
]
