"""Sample registration at collection, citizens' pre-registration, and what staff see of a sample.

A sample is registered with the person it was taken from: a walk-in's
name, date of birth, phone and ID number, or a citizen's pre-registration
code. It gets a label with 128 random bits (or a pre-printed one) and the
person gets a receipt with a result code, stored only as a digest.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from core import InvalidInput, NotFound, Resource, clock
from core.identity import normalize_phone
from core.tables import Citizen
from plugins.testing import printing
from plugins.testing.catalogue import get_test_type
from plugins.testing.identifiers import code_digest, new_code, new_label, normalize_code, parse_label
from plugins.testing.places import NO_LAB, load_site, settings_of, site_of, use_label
from plugins.testing.schemas import (
    PersonIn,
    PersonView,
    ReceiptReissued,
    RegistrationIn,
    RegistrationIssued,
    ResultView,
    SampleIn,
    SampleReceipt,
    SampleSummary,
    SampleView,
    TimelineStep,
)
from plugins.testing.tables import Person, PreRegistration, ResultVersion, Sample

if TYPE_CHECKING:
    from core.platform import Platform
    from core.principal import Principal

PURPOSE = "testing.results"
RESULT_CODE = "result-code"
REGISTRATION_CODE = "registration"
FUTURE_TOLERANCE = timedelta(minutes=5)
OLDEST_COLLECTION = timedelta(days=7)


# -- citizens register before they go -----------------------------------------------------


async def pre_register(platform: Platform, principal: Principal, data: RegistrationIn) -> RegistrationIssued:
    """A citizen registers themselves or a family member; the site scans the code at collection."""
    if principal.subject_id is None:
        raise InvalidInput("principal: only a signed-in citizen can pre-register")
    citizen = await Citizen.select(Citizen.phone).where(Citizen.id == principal.subject_id).first()
    if citizen is None:
        raise NotFound("principal: citizen account not found")
    phone = normalize_phone(data.phone) if data.phone else citizen["phone"]
    _check_birth_date(data.date_of_birth)
    code = new_code()
    expires = clock.now() + timedelta(hours=settings_of(platform).registration_ttl_hours)
    async with platform.db.transaction():
        person_id = await _person_for(
            full_name=data.full_name,
            date_of_birth=data.date_of_birth,
            phone=phone,
            id_number=data.id_number,
            citizen_id=principal.subject_id if data.for_self else None,
        )
        await PreRegistration.insert(
            PreRegistration(
                id=uuid.uuid4(),
                code_hash=code_digest(platform.settings.secret_key, REGISTRATION_CODE, normalize_code(code) or ""),
                person=person_id,
                created_by=principal.id,
                created_at=clock.now(),
                expires_at=expires,
            )
        )
    return RegistrationIssued(
        code=code, expires_at=expires, full_name=_clean_name(data.full_name), qr_svg=printing.qr_svg(code)
    )


# -- collection -------------------------------------------------------------------------------


async def register_sample(platform: Platform, principal: Principal, data: SampleIn) -> SampleReceipt:
    """Register a sample taken now (or at ``collected_at``) and issue the person's receipt."""
    site = await load_site(site_of(principal, data.site))
    await platform.access.check(
        principal, "testing.sample.create", Resource(kind="sample", province=site["province"], site=site["code"])
    )
    test_type = get_test_type(platform, data.test_type)
    if (data.person is None) == (data.registration_code is None):
        raise InvalidInput("person: give either the walk-in's person data or the citizen's registration_code")
    collected_at = _collection_time(data.collected_at)
    if data.symptom_onset is not None and data.symptom_onset > collected_at.date():
        raise InvalidInput("symptom_onset: cannot be after the sample was collected")
    if data.label is not None:
        kind, label = parse_label(data.label)
        if kind != "sample":
            raise InvalidInput(f"label: {label} is a pool label; use a sample label")
    else:
        label = new_label("sample")
    code = new_code()
    async with platform.db.transaction():
        if data.label is not None:
            await use_label(label, "sample", site["code"])
        if data.person is not None:
            person_id = await _walk_in(data.person)
        else:
            person_id = await _redeem_registration(platform, data.registration_code or "")
        person = await Person.select().where(Person.id == person_id).first()
        assert person is not None
        await Sample.insert(
            Sample(
                id=label,
                person=person_id,
                subject_id=person["subject_id"],
                test_type=test_type.code,
                site=site["code"],
                province=site["province"],
                collected_by=principal.id,
                collected_at=collected_at,
                symptom_onset=data.symptom_onset,
                status="collected",
                result_code_hash=code_digest(platform.settings.secret_key, RESULT_CODE, normalize_code(code) or ""),
            )
        )
        await platform.audit.record(
            principal,
            "testing.sample.create",
            Resource(
                kind="sample", id=label, province=site["province"], site=site["code"], subject_id=person["subject_id"]
            ),
            purpose=PURPOSE,
        )
    url = printing.lookup_url(platform.settings.base_url, code)
    return SampleReceipt(
        sample_id=label,
        test_type=test_type.code,
        site=site["code"],
        collected_at=collected_at,
        full_name=person["full_name"],
        result_code=code,
        lookup_url=url,
        receipt_svg=printing.receipt_svg(
            sample_id=label,
            full_name=person["full_name"],
            test_name_vi=test_type.name_vi,
            test_name_en=test_type.name_en,
            site=site["name"],
            collected_at=collected_at,
            code=code,
            url=url,
        ),
    )


async def reissue_receipt(platform: Platform, principal: Principal, sample_id: str) -> ReceiptReissued:
    """A new result code for a lost receipt or a locked code; the old code stops working at once."""
    row = await load_sample(sample_id)
    await check_sample(platform, principal, "testing.sample.create", row)
    code = new_code()
    digest = code_digest(platform.settings.secret_key, RESULT_CODE, normalize_code(code) or "")
    async with platform.db.transaction():
        await Sample.update(
            {
                Sample.result_code_hash: digest,
                Sample.lookup_failures: 0,
                Sample.lookup_otp_hash: None,
                Sample.lookup_otp_expires_at: None,
            }
        ).where(Sample.id == row["id"])
        await platform.audit.record(
            principal, "testing.receipt.reissue", sample_resource(row), purpose=PURPOSE, detail="new result code"
        )
    person = await Person.select().where(Person.id == row["person"]).first()
    assert person is not None
    test_type = get_test_type(platform, row["test_type"])
    url = printing.lookup_url(platform.settings.base_url, code)
    site = await load_site(row["site"], active_only=False)
    return ReceiptReissued(
        sample_id=row["id"],
        result_code=code,
        lookup_url=url,
        receipt_svg=printing.receipt_svg(
            sample_id=row["id"],
            full_name=person["full_name"],
            test_name_vi=test_type.name_vi,
            test_name_en=test_type.name_en,
            site=site["name"],
            collected_at=clock.as_utc(row["collected_at"]),
            code=code,
            url=url,
        ),
    )


# -- reading ---------------------------------------------------------------------------------


async def sample_view(platform: Platform, principal: Principal, sample_id: str) -> SampleView:
    """Everything about one sample for staff, every result version included (audited)."""
    row = await load_sample(sample_id)
    await check_sample(platform, principal, "testing.sample.read", row)
    person = await Person.select().where(Person.id == row["person"]).first()
    assert person is not None
    versions = await result_versions([row["id"]])
    await platform.audit.record(principal, "testing.sample.read", sample_resource(row), purpose=PURPOSE)
    return SampleView(
        id=row["id"],
        test_type=row["test_type"],
        site=row["site"],
        province=row["province"],
        status=row["status"],
        collected_at=clock.as_utc(row["collected_at"]),
        collected_by=row["collected_by"],
        symptom_onset=row["symptom_onset"],
        pool=row["pool"],
        lab=row["lab"],
        received_at=_utc(row["received_at"]),
        result=row["result"],
        result_version=row["result_version"],
        result_at=_utc(row["result_at"]),
        person=PersonView(
            full_name=person["full_name"],
            date_of_birth=person["date_of_birth"],
            phone=person["phone"],
            id_number=person["id_number"],
        ),
        results=[result_view(v) for v in versions.get(row["id"], [])],
        timeline=timeline(row, versions.get(row["id"], [])),
    )


async def list_samples(
    platform: Platform,
    principal: Principal,
    *,
    site: str | None = None,
    lab: str | None = None,
    status: str | None = None,
    collected_since: datetime | None = None,
    limit: int = 100,
    after: str | None = None,
) -> list[SampleSummary]:
    """Samples the principal may see, filtered in SQL by their scope; one audit row per person."""
    scope = await platform.access.scope(principal, "testing.sample.list")
    query = Sample.select(
        *Sample.all_columns(exclude=[Sample.result_code_hash, Sample.lookup_otp_hash]),
        Sample.person.full_name.as_alias("full_name"),
    )
    where = scope.where(province=Sample.province, site=Sample.site, lab=Sample.lab, subject=Sample.subject_id)
    if where is not None:
        query = query.where(where)
    if site is not None:
        query = query.where(Sample.site == site)
    if lab is not None:
        query = query.where(Sample.lab == lab)
    if status is not None:
        query = query.where(Sample.status == status)
    if collected_since is not None:
        query = query.where(Sample.collected_at >= collected_since)
    if after is not None:
        query = query.where(Sample.id > after)
    rows = await query.order_by(Sample.id).limit(limit)
    if rows:
        await platform.audit.record(
            principal, "testing.sample.list", [sample_resource(row) for row in rows], purpose=PURPOSE
        )
    return [
        SampleSummary(
            id=row["id"],
            test_type=row["test_type"],
            site=row["site"],
            lab=row["lab"],
            pool=row["pool"],
            status=row["status"],
            result=row["result"],
            collected_at=clock.as_utc(row["collected_at"]),
            result_at=_utc(row["result_at"]),
            full_name=row["full_name"],
        )
        for row in rows
    ]


async def load_sample(sample_id: str, *, field: str = "sample_id") -> dict[str, Any]:
    kind, label = parse_label(sample_id, field)
    if kind != "sample":
        raise InvalidInput(f"{field}: {label} is a pool label")
    row = await Sample.select().where(Sample.id == label).first()
    if row is None:
        raise NotFound(f"{field}: no sample {label}")
    return dict(row)


async def check_sample(platform: Platform, principal: Principal, action: str, row: dict[str, Any]) -> None:
    """Allow ``action`` when the sample's site side (its province and site) or its lab side allows it.

    A lab may sit in another province than the site that collected the
    sample, so the lab's own province is tried too once a lab has it.
    """
    site_side = sample_resource(row)
    if (await platform.access.decide(principal, action, site_side)).allowed:
        return
    if row["lab"] is not None and row["lab_province"] not in (None, row["province"]):
        lab_side = Resource(
            kind="sample",
            id=row["id"],
            province=row["lab_province"],
            site=NO_LAB,
            lab=row["lab"],
            subject_id=row["subject_id"],
        )
        if (await platform.access.decide(principal, action, lab_side)).allowed:
            return
    await platform.access.check(principal, action, site_side)


def sample_resource(row: dict[str, Any]) -> Resource:
    return Resource(
        kind="sample",
        id=row["id"],
        province=row["province"],
        site=row["site"],
        lab=row["lab"] or NO_LAB,
        subject_id=row["subject_id"],
    )


async def result_versions(sample_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Every result version of the samples, oldest first, by sample id."""
    found: dict[str, list[dict[str, Any]]] = {}
    if not sample_ids:
        return found
    rows = (
        await ResultVersion.select()
        .where(ResultVersion.sample.is_in(sample_ids))
        .order_by(ResultVersion.sample)
        .order_by(ResultVersion.version)
    )
    for row in rows:
        found.setdefault(row["sample"], []).append(dict(row))
    return found


_NEVER = datetime.max.replace(tzinfo=UTC)
STEP_LABELS = {
    "collected": ("Đã lấy mẫu", "Sample collected"),
    "in_pool": ("Đã gộp mẫu", "Pooled with other samples"),
    "at_lab": ("Phòng xét nghiệm đã nhận mẫu", "Received by the lab"),
    "retesting": ("Mẫu gộp dương tính, đang xét nghiệm lại riêng", "Pool positive: being retested on its own"),
    "retesting_invalid": (
        "Mẫu gộp không xác định, đang xét nghiệm lại riêng",
        "Pool result invalid: being retested on its own",
    ),
    "result": ("Đã có kết quả", "Result released"),
    "corrected": ("Kết quả đã được đính chính", "Result corrected"),
}


def timeline(row: dict[str, Any], versions: list[dict[str, Any]]) -> list[TimelineStep]:
    """Where the sample has been, in order, from its own columns and its result versions."""
    steps: list[tuple[str, datetime | None, str | None]] = [
        ("collected", row["collected_at"], None),
        ("in_pool", row["pooled_at"], None),
        ("at_lab", row["received_at"], None),
    ]
    if row["retest_ordered_at"] is not None:
        step = "retesting_invalid" if row["retest_reason"] == "pool_invalid" else "retesting"
        steps.append((step, row["retest_ordered_at"], None))
    for version in versions:
        step = "result" if version["version"] == 1 else "corrected"
        steps.append((step, version["released_at"], version["outcome"]))
    # In time order: a pool corrected to positive sends a member back to retesting after its result.
    steps.sort(key=lambda step: clock.as_utc(step[1]) if step[1] is not None else _NEVER)
    return [
        TimelineStep(
            step=step,
            at=clock.as_utc(at),
            label_vi=STEP_LABELS[step][0],
            label_en=STEP_LABELS[step][1],
            outcome=outcome,
        )
        for step, at, outcome in steps
        if at is not None
    ]


# -- people ------------------------------------------------------------------------------------


async def _walk_in(data: PersonIn) -> uuid.UUID:
    _check_birth_date(data.date_of_birth)
    return await _person_for(
        full_name=data.full_name,
        date_of_birth=data.date_of_birth,
        phone=normalize_phone(data.phone),
        id_number=data.id_number,
        citizen_id=None,
    )


async def _person_for(
    *, full_name: str, date_of_birth: date, phone: str, id_number: str | None, citizen_id: str | None
) -> uuid.UUID:
    """The person's row: the one with this ID number and date of birth if seen before, else a new one."""
    name = _clean_name(full_name)
    number = id_number.upper() if id_number else None
    if number is not None:
        known = (
            await Person.select(Person.id, Person.citizen_id)
            .where((Person.id_number == number) & (Person.date_of_birth == date_of_birth))
            .first()
        )
        if known is not None:
            # The latest name and phone win: results go where the person asks now.
            changes: dict[Any, Any] = {Person.full_name: name, Person.phone: phone}
            if citizen_id is not None and known["citizen_id"] is None:
                changes[Person.citizen_id] = citizen_id
            await Person.update(changes).where(Person.id == known["id"])
            return known["id"]  # type: ignore[no-any-return]
    person_id = uuid.uuid4()
    await Person.insert(
        Person(
            id=person_id,
            subject_id=citizen_id or str(person_id),
            citizen_id=citizen_id,
            full_name=name,
            date_of_birth=date_of_birth,
            phone=phone,
            id_number=number,
            created_at=clock.now(),
        )
    )
    return person_id


async def _redeem_registration(platform: Platform, raw_code: str) -> Any:
    code = normalize_code(raw_code)
    invalid = NotFound("registration_code: no valid registration with this code (mistyped, used or expired)")
    if code is None:
        raise invalid
    digest = code_digest(platform.settings.secret_key, REGISTRATION_CODE, code)
    redeemed = (
        await PreRegistration.update({PreRegistration.used_at: clock.now()})
        .where(
            (PreRegistration.code_hash == digest)
            & PreRegistration.used_at.is_null()
            & (PreRegistration.expires_at > clock.now())
        )
        .returning(PreRegistration.person)
    )
    if not redeemed:
        raise invalid
    return redeemed[0]["person"]


def _collection_time(given: datetime | None) -> datetime:
    now = clock.now()
    if given is None:
        return now
    if given.tzinfo is None:
        raise InvalidInput("collected_at: give a time zone (e.g. 2021-08-12T09:30:00+07:00)")
    moment = clock.as_utc(given)
    if moment > now + FUTURE_TOLERANCE:
        raise InvalidInput("collected_at: is in the future")
    if moment < now - OLDEST_COLLECTION:
        raise InvalidInput("collected_at: more than 7 days ago; register samples when they are taken")
    return moment


def _check_birth_date(born: date) -> None:
    if born > clock.now().date():
        raise InvalidInput("date_of_birth: is in the future")
    if born.year < 1900:
        raise InvalidInput("date_of_birth: before 1900")


def _clean_name(name: str) -> str:
    return re.sub(r"\s+", " ", name).strip()


def result_view(row: dict[str, Any]) -> ResultView:
    return ResultView(
        version=row["version"],
        outcome=row["outcome"],
        ct_value=row["ct_value"],
        source=row["source"],
        pool=row["pool"],
        lab=row["lab"],
        entered_by=row["entered_by"],
        released_at=clock.as_utc(row["released_at"]),
        current=row["current"],
        reason=row["reason"],
    )


def _utc(value: datetime | None) -> datetime | None:
    return clock.as_utc(value) if value is not None else None
