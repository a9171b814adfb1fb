"""The testing API, mounted under ``/api/testing``.

Every handler declares the action it performs and the purpose it serves
(or ``public=True``); the core's guard checks the principal's roles for
the action, and handlers check each record with ``platform.access``
once they know where it belongs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, get, patch, post
from litestar.exceptions import ValidationException
from litestar.params import FromPath, FromQuery, JSONBody, Parameter, RawBody
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from core.web.guard import PlatformDep, PrincipalDep, client_address
from core.web.lean import lean_public_json
from plugins.testing import (
    certificates,
    fhir,
    imports,
    lookup,
    places,
    pooling,
    reception,
    results,
    samples,
    turnaround,
)
from plugins.testing.catalogue import TestType, known_test_types
from plugins.testing.certificates import TestCertificate
from plugins.testing.printing import label_svg
from plugins.testing.schemas import (
    CaseReportView,
    CitizenResult,
    CorrectionIn,
    LabelsIn,
    LabelsIssued,
    LabIn,
    LabView,
    LookupIn,
    LookupOtpIn,
    LookupOtpSent,
    OverdueSample,
    PoolAdd,
    PoolCorrected,
    PoolIn,
    PoolView,
    ReceiptReissued,
    Received,
    ReceiveIn,
    RegistrationIn,
    RegistrationIssued,
    ResultIn,
    ResultsEntered,
    ResultView,
    RetestView,
    RevocationListView,
    SampleIn,
    SampleReceipt,
    SampleSummary,
    SampleView,
    SiteIn,
    SitePatch,
    SiteView,
    TurnaroundView,
    VerificationView,
    VerifyIn,
)

PURPOSE = "testing.results"
TAGS = ["testing"]
SVG = "image/svg+xml"
UPLOAD_MAX_BYTES = 64 * 1024 * 1024  # 200,000 result rows with room to spare
Province = Annotated[str | None, Parameter(pattern=r"^[0-9]{2}$")]
Place = Annotated[str | None, Parameter(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


def _opt(action: str) -> dict[str, Any]:
    return {"action": action, "purpose": PURPOSE}


PUBLIC = {"public": True, "purpose": PURPOSE}


# -- sites, labs, test types, labels --------------------------------------------------------


@get("/sites", opt=PUBLIC, tags=TAGS, summary="Collection sites, optionally of one province")
async def list_sites(province: Province = None) -> list[SiteView]:
    return await places.list_sites(province)


@post("/sites", opt=_opt("testing.site.manage"), tags=TAGS, summary="Open a collection site in a province")
async def create_site(data: JSONBody[SiteIn], principal: PrincipalDep, platform: PlatformDep) -> SiteView:
    return await places.create_site(platform, principal, data)


@patch(
    "/sites/{code:str}",
    opt=_opt("testing.site.manage"),
    tags=TAGS,
    summary="Rename a site, change its pool size, close or reopen it",
)
async def update_site(
    code: FromPath[str], data: JSONBody[SitePatch], principal: PrincipalDep, platform: PlatformDep
) -> SiteView:
    return await places.update_site(platform, principal, code, data)


@get("/labs", opt=PUBLIC, tags=TAGS, summary="Labs, optionally of one province")
async def list_labs(province: Province = None) -> list[LabView]:
    return await places.list_labs(province)


@post("/labs", opt=_opt("testing.lab.manage"), tags=TAGS, summary="Register a lab in a province")
async def create_lab(data: JSONBody[LabIn], principal: PrincipalDep, platform: PlatformDep) -> LabView:
    return await places.create_lab(platform, principal, data)


@get("/test-types", opt=PUBLIC, tags=TAGS, summary="Test types with their LOINC codes")
async def test_types(platform: PlatformDep) -> list[TestType]:
    return sorted(known_test_types(platform).values(), key=lambda t: t.code)


@post("/labels", opt=_opt("testing.label.issue"), tags=TAGS, summary="Issue pre-printed tube labels to a site")
async def issue_labels(data: JSONBody[LabelsIn], principal: PrincipalDep, platform: PlatformDep) -> LabelsIssued:
    return await places.issue_labels(platform, principal, data)


# -- registration and samples ---------------------------------------------------------------


@post(
    "/registrations",
    opt=_opt("testing.registration.create"),
    tags=TAGS,
    summary="A citizen registers themselves or a family member before collection",
)
async def pre_register(
    data: JSONBody[RegistrationIn], principal: PrincipalDep, platform: PlatformDep
) -> RegistrationIssued:
    return await samples.pre_register(platform, principal, data)


@post(
    "/samples",
    opt=_opt("testing.sample.create"),
    tags=TAGS,
    summary="Register a collected sample; returns the receipt with the result code (shown once)",
)
async def register_sample(data: JSONBody[SampleIn], principal: PrincipalDep, platform: PlatformDep) -> SampleReceipt:
    return await samples.register_sample(platform, principal, data)


@get("/samples", opt=_opt("testing.sample.list"), tags=TAGS, summary="Samples in my scope (audited)")
async def list_samples(
    principal: PrincipalDep,
    platform: PlatformDep,
    site: Place = None,
    lab: Place = None,
    status: FromQuery[Literal["collected", "pooled", "at_lab", "retest", "resulted"] | None] = None,
    collected_since: FromQuery[datetime | None] = None,
    after: Annotated[str | None, Parameter(max_length=40)] = None,
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
) -> list[SampleSummary]:
    return await samples.list_samples(
        platform,
        principal,
        site=site,
        lab=lab,
        status=status,
        collected_since=collected_since,
        after=after,
        limit=limit,
    )


@get(
    "/samples/{sample_id:str}",
    opt=_opt("testing.sample.read"),
    tags=TAGS,
    summary="One sample: person, every result version, timeline (audited)",
)
async def get_sample(sample_id: FromPath[str], principal: PrincipalDep, platform: PlatformDep) -> SampleView:
    return await samples.sample_view(platform, principal, sample_id)


@get(
    "/samples/{sample_id:str}/label",
    opt=_opt("testing.sample.read"),
    tags=TAGS,
    summary="The sample's printable tube label (SVG with QR code)",
)
async def sample_label(sample_id: FromPath[str], principal: PrincipalDep, platform: PlatformDep) -> Response[str]:
    row = await samples.load_sample(sample_id)
    await samples.check_sample(platform, principal, "testing.sample.read", row)
    svg = label_svg(row["id"], test_type=row["test_type"], site=row["site"], collected_at=row["collected_at"])
    return Response(svg, media_type=SVG)


@post(
    "/samples/{sample_id:str}/receipt",
    opt=_opt("testing.sample.create"),
    tags=TAGS,
    summary="Issue a new receipt and result code (a lost receipt or a locked code); the old code stops working",
)
async def reissue_receipt(sample_id: FromPath[str], principal: PrincipalDep, platform: PlatformDep) -> ReceiptReissued:
    return await samples.reissue_receipt(platform, principal, sample_id)


@post(
    "/samples/{sample_id:str}/corrections",
    opt=_opt("testing.result.correct"),
    tags=TAGS,
    summary="Correct a released result, with a reason; the person is told again",
)
async def correct_result(
    sample_id: FromPath[str], data: JSONBody[CorrectionIn], principal: PrincipalDep, platform: PlatformDep
) -> list[ResultView]:
    return await results.correct_result(platform, principal, sample_id, data)


# -- pools --------------------------------------------------------------------------------------


@post("/pools", opt=_opt("testing.pool.create"), tags=TAGS, summary="Put samples of a site in a new pool tube")
async def create_pool(data: JSONBody[PoolIn], principal: PrincipalDep, platform: PlatformDep) -> PoolView:
    return await pooling.create_pool(platform, principal, data)


@post(
    "/pools/{pool_id:str}/samples",
    opt=_opt("testing.pool.create"),
    tags=TAGS,
    summary="Add samples to an open pool",
    status_code=HTTP_200_OK,
)
async def add_to_pool(
    pool_id: FromPath[str], data: JSONBody[PoolAdd], principal: PrincipalDep, platform: PlatformDep
) -> PoolView:
    return await pooling.add_to_pool(platform, principal, pool_id, data)


@get("/pools/{pool_id:str}", opt=_opt("testing.pool.read"), tags=TAGS, summary="A pool: members, status, result")
async def get_pool(pool_id: FromPath[str], principal: PrincipalDep, platform: PlatformDep) -> PoolView:
    return await pooling.pool_view(platform, principal, pool_id)


@post(
    "/pools/{pool_id:str}/corrections",
    opt=_opt("testing.result.correct"),
    tags=TAGS,
    summary="Correct a released pool result, with a reason; its members are derived again (Dorfman) and told",
)
async def correct_pool(
    pool_id: FromPath[str], data: JSONBody[CorrectionIn], principal: PrincipalDep, platform: PlatformDep
) -> PoolCorrected:
    return await results.correct_pool(platform, principal, pool_id, data)


@get(
    "/pools/{pool_id:str}/label",
    opt=_opt("testing.pool.read"),
    tags=TAGS,
    summary="The pool tube's printable label (SVG with QR code)",
)
async def pool_label(pool_id: FromPath[str], principal: PrincipalDep, platform: PlatformDep) -> Response[str]:
    pool = await pooling.load_pool(pool_id)
    await platform.access.check(principal, "testing.pool.read", pooling.pool_resource(pool))
    return Response(label_svg(pool["id"], test_type=pool["test_type"], site=pool["site"]), media_type=SVG)


# -- lab ------------------------------------------------------------------------------------------


@post(
    "/lab/receipts",
    opt=_opt("testing.lab.receive"),
    tags=TAGS,
    summary="Receive samples and pools at the lab by their scanned labels (all or none)",
)
async def receive(data: JSONBody[ReceiveIn], principal: PrincipalDep, platform: PlatformDep) -> list[Received]:
    return await reception.receive(platform, principal, data.labels, data.lab)


@post(
    "/lab/results",
    opt=_opt("testing.result.enter"),
    tags=TAGS,
    summary="Enter one result for a sample or a pool (a pool's result is deconvoluted: Dorfman)",
)
async def enter_result(data: JSONBody[ResultIn], principal: PrincipalDep, platform: PlatformDep) -> ResultsEntered:
    entry = results.ResultEntry(row=1, label=data.label, outcome=data.outcome, ct_value=data.ct_value)
    try:
        return await results.enter_results(platform, principal, [entry], lab=data.lab, single=True)
    except results.UploadRejected as exc:
        raise upload_rejected(exc) from None


@post(
    "/lab/uploads/csv",
    opt=_opt("testing.result.import"),
    tags=TAGS,
    summary="Upload results as CSV (label,outcome[,ct_value]; UTF-8): all stored, or none with a per-row report",
    request_max_body_size=UPLOAD_MAX_BYTES,
)
async def upload_csv(
    body: RawBody, principal: PrincipalDep, platform: PlatformDep, lab: Place = None
) -> ResultsEntered:
    try:
        return await imports.import_csv(platform, principal, body, lab=lab)
    except results.UploadRejected as exc:
        raise upload_rejected(exc) from None


@post(
    "/lab/uploads/fhir",
    opt=_opt("testing.result.import"),
    tags=TAGS,
    summary="Upload a FHIR R4 Bundle of Observations or DiagnosticReports: all stored, or none with a report",
    request_max_body_size=UPLOAD_MAX_BYTES,
)
async def upload_fhir(
    body: RawBody, principal: PrincipalDep, platform: PlatformDep, lab: Place = None
) -> ResultsEntered:
    try:
        return await imports.import_fhir_bundle(platform, principal, body, lab=lab)
    except results.UploadRejected as exc:
        raise upload_rejected(exc) from None


@get(
    "/fhir/samples/{sample_id:str}",
    opt=_opt("testing.fhir.export"),
    tags=TAGS,
    summary="One sample as a FHIR R4 Bundle: Patient, Specimen, Observation, DiagnosticReport (audited)",
)
async def fhir_sample(sample_id: FromPath[str], principal: PrincipalDep, platform: PlatformDep) -> Response[bytes]:
    return _fhir(await fhir.sample_bundle(platform, principal, sample_id))


@get(
    "/fhir/results",
    opt=_opt("testing.fhir.export"),
    tags=TAGS,
    summary="Released results in my scope as one FHIR R4 Bundle, newest first (audited)",
)
async def fhir_results(
    principal: PrincipalDep,
    platform: PlatformDep,
    since: FromQuery[datetime | None] = None,
    until: FromQuery[datetime | None] = None,
    limit: Annotated[int, Parameter(ge=1, le=5000)] = 1000,
) -> Response[bytes]:
    return _fhir(await fhir.results_bundle(platform, principal, since=since, until=until, limit=limit))


def _fhir(bundle: dict[str, Any]) -> Response[bytes]:
    return Response(msgspec.json.encode(bundle), media_type="application/fhir+json")


@get(
    "/lab/retests",
    opt=_opt("testing.retest.list"),
    tags=TAGS,
    summary="Members of positive or invalid pools waiting for their own test",
)
async def retests(principal: PrincipalDep, platform: PlatformDep, lab: Place = None) -> list[RetestView]:
    return await pooling.open_retests(platform, principal, lab)


@get(
    "/reports",
    opt=_opt("testing.report.list"),
    tags=TAGS,
    summary="Positive results reported to my province (audited)",
)
async def case_reports(
    principal: PrincipalDep,
    platform: PlatformDep,
    since: FromQuery[datetime | None] = None,
    limit: Annotated[int, Parameter(ge=1, le=5000)] = 500,
) -> list[CaseReportView]:
    return await results.case_reports(platform, principal, since=since, limit=limit)


@get(
    "/turnaround",
    opt=_opt("testing.turnaround.read"),
    tags=TAGS,
    summary="Collection to receipt to result, in hours: percentiles per lab or site (default: last 7 days)",
)
async def turnaround_times(
    principal: PrincipalDep,
    platform: PlatformDep,
    group_by: FromQuery[Literal["lab", "site"]] = "lab",
    since: FromQuery[datetime | None] = None,
    until: FromQuery[datetime | None] = None,
) -> TurnaroundView:
    return await turnaround.turnaround(platform, principal, group_by=group_by, since=since, until=until)


@get(
    "/overdue",
    opt=_opt("testing.overdue.list"),
    tags=TAGS,
    summary="Samples collected more than overdue_hours (48) ago without a result, oldest first",
)
async def overdue_samples(
    principal: PrincipalDep, platform: PlatformDep, limit: Annotated[int, Parameter(ge=1, le=10_000)] = 1000
) -> list[OverdueSample]:
    return await turnaround.overdue(platform, principal, limit=limit)


# -- citizens -----------------------------------------------------------------------------------


@post(
    "/lookup",
    opt=PUBLIC,
    tags=TAGS,
    status_code=HTTP_200_OK,
    summary="A result by the receipt's code and the date of birth or a one-time code",
    # Its valid requests are served by the lean path (same guard, same call, same answer).
    middleware=[lean_public_json(LookupIn, lookup.lookup, status_code=HTTP_200_OK)],
)
async def result_lookup(
    data: JSONBody[LookupIn], request: Request[Any, Any, Any], platform: PlatformDep
) -> CitizenResult:
    return await lookup.lookup(platform, client_address(request), data)


@post(
    "/lookup/otp",
    opt=PUBLIC,
    tags=TAGS,
    status_code=HTTP_202_ACCEPTED,
    summary="Send a one-time code to the phone on record for a result code",
)
async def result_lookup_otp(
    data: JSONBody[LookupOtpIn], request: Request[Any, Any, Any], platform: PlatformDep
) -> LookupOtpSent:
    return await lookup.send_lookup_otp(platform, client_address(request), data)


@post(
    "/lookup/certificate",
    opt=PUBLIC,
    tags=TAGS,
    status_code=HTTP_200_OK,
    summary="A signed EU DCC test certificate for a negative result, by result code and second factor",
)
async def certificate_by_code(
    data: JSONBody[LookupIn], request: Request[Any, Any, Any], platform: PlatformDep
) -> TestCertificate:
    return await lookup.certificate_by_code(platform, client_address(request), data)


@get(
    "/me/results/{sample_id:str}/certificate",
    opt=_opt("testing.result.read_own"),
    tags=TAGS,
    summary="A signed EU DCC test certificate for one of my phone's negative results",
)
async def my_certificate(sample_id: FromPath[str], principal: PrincipalDep, platform: PlatformDep) -> TestCertificate:
    return await lookup.phone_certificate(platform, principal, sample_id)


@get(
    "/revocations",
    opt=PUBLIC,
    tags=TAGS,
    summary="Revoked test certificates (their result was corrected), as DCC revocation hashes",
)
async def revocations(platform: PlatformDep) -> RevocationListView:
    return await certificates.revocation_list(platform)


@post(
    "/verify",
    opt=PUBLIC,
    tags=TAGS,
    status_code=HTTP_200_OK,
    summary="Verify a test certificate: valid, expired or revoked; nothing about the holder is recorded",
)
async def verify_certificate(data: JSONBody[VerifyIn], platform: PlatformDep) -> VerificationView:
    return await certificates.verify(platform, data.hc1)


@get(
    "/me/results",
    opt=_opt("testing.result.read_own"),
    tags=TAGS,
    summary="Results of everyone registered with my phone (a family's phone), each named",
)
async def my_results(principal: PrincipalDep, platform: PlatformDep) -> list[CitizenResult]:
    return await lookup.phone_results(platform, principal)


def upload_rejected(exc: results.UploadRejected) -> ValidationException:
    """A rejected upload as a 400 whose ``errors`` list each row's problem."""
    return ValidationException(detail=str(exc), extra=[msgspec.to_builtins(error) for error in exc.errors])


ROUTES = [
    list_sites,
    create_site,
    update_site,
    list_labs,
    create_lab,
    test_types,
    issue_labels,
    pre_register,
    register_sample,
    list_samples,
    get_sample,
    sample_label,
    reissue_receipt,
    correct_result,
    create_pool,
    add_to_pool,
    get_pool,
    correct_pool,
    pool_label,
    receive,
    enter_result,
    upload_csv,
    upload_fhir,
    fhir_sample,
    fhir_results,
    retests,
    case_reports,
    turnaround_times,
    overdue_samples,
    result_lookup,
    result_lookup_otp,
    my_results,
    certificate_by_code,
    my_certificate,
    revocations,
    verify_certificate,
]
