"""At the site: check-in by booking code, recording doses, corrections that keep the old
version, merging duplicate records, and adverse events after immunisation (AEFI).

Recording a dose takes one dose of the lot's stock at the site (refused when
the lot is unknown, expired or used up), re-checks eligibility and
screening, stores the dose, keeps the person's dose summary current, issues
certificates and announces the dose, all in one transaction: either all of
it happens or none.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from core import Conflict, InvalidInput, NotFound, Resource, clock
from plugins.vaccination import booking, certificates, eligibility, localtime, people, registry
from plugins.vaccination.schemas import (
    AefiBody,
    AefiView,
    CheckinView,
    CorrectionBody,
    DoseBody,
    DoseHistoryView,
    DoseRecorded,
    DoseRevisionView,
    DoseView,
)
from plugins.vaccination.tables import AefiReport, Booking, Certificate, Dose, DoseRevision, Person, WaitlistEntry

if TYPE_CHECKING:
    from core import Principal
    from core.platform import Platform

PURPOSE = "vaccination.records"
SERIOUS_CRITERIA = ("died", "life_threatening", "hospitalised", "disability")


# -- check-in ----------------------------------------------------------------------------------


async def check_in(platform: Platform, principal: Principal, code: str) -> CheckinView:
    """Find the booking by its code at the vaccinator's site and mark the person arrived."""
    row = await booking.by_code(code)
    await platform.access.check(principal, "vaccination.checkin", booking.booking_resource(row))
    if row["status"] not in booking.ACTIVE:
        raise Conflict(f"code: the booking is {row['status']}")
    session = await registry.session_row(row["session"])
    if session["day"] != localtime.today():
        raise Conflict(f"code: the booking is for {session['day']}, not today")
    if row["status"] == "booked":
        await Booking.update({Booking.status: "checked_in", Booking.checked_in_at: clock.now()}).where(
            Booking.id == row["id"]
        )
    person = await Person.select().where(Person.id == row["person"]).first()
    assert person is not None
    await people.audit_read(platform, principal, "vaccination.checkin", [person])
    return CheckinView(
        booking=await booking.booking_view(row["id"]),
        person=people.person_view(person),
        doses=await doses_of(person["id"]),
        screening_questions=list(eligibility.SCREENING_QUESTIONS),
    )


# -- recording ---------------------------------------------------------------------------------


async def record(platform: Platform, principal: Principal, body: DoseBody) -> DoseRecorded:
    site_id = body.site_id or principal.site
    if not site_id:
        raise InvalidInput("site_id: give the site where the dose is given")
    site = await registry.site_row(site_id)
    await platform.access.check(principal, "vaccination.dose.record", registry.site_resource(site))
    now = clock.now()
    today = localtime.local_date(now)
    booked: dict[str, Any] | None = None
    if body.booking_code:
        booked = await booking.by_code(body.booking_code)
        if booked["site"] != site_id:
            raise InvalidInput(f"booking_code: the booking is for site {booked['site']}, not {site_id}")
        if booked["status"] not in booking.ACTIVE:
            raise Conflict(f"booking_code: the booking is {booked['status']}")
        session = await registry.session_row(booked["session"])
        if session["day"] != today:
            raise Conflict(f"booking_code: the booking is for {session['day']}, not today")
        if body.product_code and body.product_code != booked["product"]:
            raise InvalidInput(f"product_code: the booking is for {booked['product']}")
        product, rule = booked["product"], await registry.rule_row(booked["rule"])
        person_id, when_field = booked["person"], "booking_code"
        justification = body.mixing_justification.strip() or booked["mixing_justification"]
    elif body.person_id:
        if not body.product_code:
            raise InvalidInput("product_code: required for a walk-in dose")
        product = (await registry.product_row(body.product_code))["code"]
        rule = await registry.rule_for(product, today)
        person_id, when_field = body.person_id, "person_id"
        justification = body.mixing_justification.strip()
        active = await Booking.select(Booking.code).where(Booking.active_person == str(person_id)).first()
        if active is not None:
            raise Conflict(
                f"person_id: this person has booking {active['code']}; record the dose with its booking_code "
                "or cancel the booking first"
            )
    else:
        raise InvalidInput("booking_code: give the booking code, or person_id and product_code for a walk-in")
    person = await Person.select().where(Person.id == person_id).first()
    if person is None:
        raise NotFound("person_id: no such person")
    if person["duplicate_status"] == "merged":
        raise InvalidInput("person_id: this record was merged into another; record the dose for that person")
    history = await booking.history_of(person_id)
    plan = eligibility.plan_dose(
        birth_date=person["birth_date"],
        history=history,
        product=product,
        rule=rule,
        on=today,
        mixing_justification=justification,
        when_field=when_field,
    )
    precautions = eligibility.screen(body.screening)
    lot = await registry.find_lot(product, body.lot_number)
    registry.check_not_expired(lot, today)
    dose_id = uuid.uuid4()
    async with platform.db.transaction():
        if not await registry.take_one_dose(lot["id"], site_id):
            raise Conflict(f"lot_number: no doses of lot {body.lot_number} left at site {site_id}; receive stock first")
        counted = await (
            Person.update({Person.doses_received: history.doses_received + 1})
            .where((Person.id == person_id) & (Person.doses_received == history.doses_received))
            .returning(Person.id)
        )
        if not counted:
            raise Conflict("person_id: another dose was recorded for this person at the same moment; reload")
        await Dose.insert(
            Dose(
                id=dose_id,
                person=person_id,
                subject_id=person["subject_id"],
                booking=booked["id"] if booked else None,
                product=product,
                lot=lot["id"],
                site=site_id,
                province=site["province"],
                dose_number=plan.dose_number,
                dose_type=plan.dose_type,
                administered_at=now,
                administered_on=today,
                vaccinator=principal.id,
                mixing_justification=justification,
                screening=body.screening,
                version=1,
                created_at=now,
            )
        )
        if booked is not None:
            await Booking.update(
                {
                    Booking.status: "done",
                    Booking.active_person: None,
                    Booking.checked_in_at: booked["checked_in_at"] or now,
                }
            ).where(Booking.id == booked["id"])
        await refresh_summary(platform, person_id)
        issued = await certificates.issue_for_dose(platform, dose_id)
        await _announce(platform, dose_id, correction=False)
    return DoseRecorded(
        dose=(await doses_of(person_id, dose_id=dose_id))[0], certificates=issued, precautions=list(precautions)
    )


async def doses_of(person_id: Any, *, dose_id: Any = None) -> list[DoseView]:
    query = Dose.select(*Dose.all_columns(), Dose.lot.number.as_alias("lot_number")).where(Dose.person == person_id)
    if dose_id is not None:
        query = query.where(Dose.id == dose_id)
    rows = await query.order_by(Dose.administered_at)
    return [_dose_view(row) for row in rows]


async def list_for_person(platform: Platform, principal: Principal, person_id: Any) -> list[DoseView]:
    await people.get_person(platform, principal, person_id, action="vaccination.dose.read")
    return await doses_of(person_id)


# -- corrections --------------------------------------------------------------------------------


async def correct(platform: Platform, principal: Principal, dose_id: Any, body: CorrectionBody) -> DoseRecorded:
    """Change a recorded dose; the replaced version is kept with the reason, and certificates re-issued."""
    dose = await _dose_row(dose_id)
    await platform.access.check(principal, "vaccination.dose.correct", dose_resource(dose))
    if body.lot_number is None and body.product_code is None and body.administered_at is None:
        raise InvalidInput(
            "lot_number: the correction changes nothing; give lot_number, product_code or administered_at"
        )
    product = body.product_code or dose["product"]
    if body.product_code:
        await registry.product_row(product)
    administered_at = (
        clock.as_utc(body.administered_at) if body.administered_at else clock.as_utc(dose["administered_at"])
    )
    if administered_at > clock.now():
        raise InvalidInput("administered_at: cannot be in the future")
    administered_on = localtime.local_date(administered_at)
    lot_number = body.lot_number or dose["lot_number"]
    lot = await registry.find_lot(product, lot_number)
    registry.check_not_expired(lot, administered_on)
    changes: dict[Any, Any] = {
        Dose.product: product,
        Dose.lot: lot["id"],
        Dose.administered_at: administered_at,
        Dose.administered_on: administered_on,
    }
    async with platform.db.transaction():
        if lot["id"] != dose["lot"]:
            if not await registry.take_one_dose(lot["id"], dose["site"]):
                raise Conflict(f"lot_number: no doses of lot {lot_number} left at site {dose['site']}")
            await registry.return_one_dose(dose["lot"], dose["site"])
        await _new_version(dose, changes, reason=body.reason, by=principal.id)
        await renumber(platform, principal, dose["person"], reason=body.reason)
        await refresh_summary(platform, dose["person"])
        await certificates.revoke_for_dose(dose_id, "re-issued after a correction")
        issued = await certificates.issue_for_dose(platform, dose_id)
        await _announce(platform, dose_id, correction=True)
    view = (await doses_of(dose["person"], dose_id=dose_id))[0]
    return DoseRecorded(dose=view, certificates=issued, precautions=[])


async def history(platform: Platform, principal: Principal, dose_id: Any) -> DoseHistoryView:
    dose = await _dose_row(dose_id)
    await platform.access.check(principal, "vaccination.dose.history", dose_resource(dose))
    person = await Person.select().where(Person.id == dose["person"]).first()
    assert person is not None
    await people.audit_read(platform, principal, "vaccination.dose.history", [person])
    revisions = await DoseRevision.select().where(DoseRevision.dose == dose_id).order_by(DoseRevision.version)
    return DoseHistoryView(
        current=(await doses_of(dose["person"], dose_id=dose_id))[0],
        revisions=[
            DoseRevisionView(
                version=r["version"],
                snapshot=r["snapshot"] if isinstance(r["snapshot"], dict) else msgspec.json.decode(r["snapshot"]),
                reason=r["reason"],
                corrected_by=r["corrected_by"],
                corrected_at=clock.as_utc(r["corrected_at"]),
            )
            for r in revisions
        ],
    )


async def renumber(platform: Platform, principal: Principal, person_id: Any, *, reason: str) -> list[Any]:
    """Number a person's doses in the order given; every dose whose number or type changes gets a
    new version (the old one kept) and new certificates. Returns the changed dose ids."""
    rows = (
        await Dose.select(*Dose.all_columns(), Dose.lot.number.as_alias("lot_number"))
        .where(Dose.person == person_id)
        .order_by(Dose.administered_at)
    )
    changed = []
    for number, row in enumerate(rows, start=1):
        rule = await rule_of_dose(row)
        dose_type = "primary" if number <= rule["primary_doses"] else "booster"
        if row["dose_number"] == number and row["dose_type"] == dose_type:
            continue
        await _new_version(row, {Dose.dose_number: number, Dose.dose_type: dose_type}, reason=reason, by=principal.id)
        await certificates.revoke_for_dose(row["id"], "re-issued after renumbering")
        await certificates.issue_for_dose(platform, row["id"])
        changed.append(row["id"])
    return changed


async def merge_people(platform: Platform, principal: Principal, *, duplicate: Any, into: Any) -> None:
    """Fold a duplicate record into the person it duplicates: bookings, doses, reports, certificates."""
    kept = await Person.select().where(Person.id == into).first()
    if kept is None:
        raise NotFound("person_id: the record it duplicates no longer exists")
    async with platform.db.transaction():
        both_booked = await Booking.count().where(Booking.active_person.is_in([str(duplicate), str(into)]))
        if both_booked > 1:
            raise Conflict("person_id: both records have an active booking; cancel one before merging")
        await Booking.update(
            {Booking.person: into, Booking.subject_id: kept["subject_id"], Booking.active_person: str(into)}
        ).where((Booking.person == duplicate) & Booking.active_person.is_not_null())
        await Booking.update({Booking.person: into, Booking.subject_id: kept["subject_id"]}).where(
            Booking.person == duplicate
        )
        await WaitlistEntry.update({WaitlistEntry.status: "cancelled", WaitlistEntry.active_key: None}).where(
            (WaitlistEntry.person == duplicate) & (WaitlistEntry.status == "waiting")
        )
        for table in (Dose, AefiReport, Certificate):
            await table.update({table.person: into, table.subject_id: kept["subject_id"]}).where(  # type: ignore[attr-defined]
                table.person == duplicate  # type: ignore[attr-defined]
            )
        await Person.update({Person.duplicate_status: "merged", Person.duplicate_of: into}).where(
            Person.id == duplicate
        )
        await renumber(platform, principal, into, reason=f"merged duplicate record {duplicate}")
        await refresh_summary(platform, into)
        await refresh_summary(platform, duplicate)


# -- the person's dose summary ---------------------------------------------------------------------


async def refresh_summary(platform: Platform, person_id: Any) -> None:
    """Recompute the dose summary kept on the person (figures and reminders read it)."""
    rows = await Dose.select().where(Dose.person == person_id).order_by(Dose.administered_at)
    if not rows:
        await Person.update(
            {
                Person.doses_received: 0,
                Person.primary_complete: False,
                Person.boosters: 0,
                Person.last_dose_on: None,
                Person.last_product: None,
                Person.next_due_on: None,
                Person.overdue_on: None,
            }
        ).where(Person.id == person_id)
        return
    last = rows[-1]
    rule = await rule_of_dose(last)
    count, primary = len(rows), rule["primary_doses"]
    last_on: date = last["administered_on"]
    boosters = max(0, count - primary)
    next_due: date | None = None
    overdue: date | None = None
    if count < primary:
        next_due = last_on + timedelta(days=rule["min_interval_days"])
        if rule["max_interval_days"] is not None:
            overdue = last_on + timedelta(days=rule["max_interval_days"])
    elif boosters < rule["booster_doses"] and rule["booster_min_interval_days"] is not None:
        next_due = last_on + timedelta(days=rule["booster_min_interval_days"])
    if next_due is not None and overdue is None:
        overdue = next_due + timedelta(days=platform.plugin_config("vaccination").overdue_after_days)
    await Person.update(
        {
            Person.doses_received: count,
            Person.primary_complete: count >= primary,
            Person.boosters: boosters,
            Person.last_dose_on: last_on,
            Person.last_product: last["product"],
            Person.next_due_on: next_due,
            Person.overdue_on: overdue,
        }
    ).where(Person.id == person_id)


async def rule_of_dose(dose: dict[str, Any]) -> dict[str, Any]:
    """The rule a dose was given under: its booking's, or for a walk-in the one in force that day."""
    if dose.get("booking"):
        row = await Booking.select(Booking.rule).where(Booking.id == dose["booking"]).first()
        if row is not None and row["rule"] is not None:
            return await registry.rule_row(row["rule"])
    return await registry.rule_for(dose["product"], dose["administered_on"])


# -- adverse events ----------------------------------------------------------------------------


async def report_aefi(platform: Platform, principal: Principal, body: AefiBody) -> AefiView:
    dose = await _dose_row(body.dose_id)
    await platform.access.check(principal, "vaccination.aefi.report", dose_resource(dose))
    if body.onset_on < dose["administered_on"]:
        raise InvalidInput(f"onset_on: before the dose was given ({dose['administered_on']})")
    if body.onset_on > localtime.today():
        raise InvalidInput("onset_on: cannot be in the future")
    criteria = [name for name in SERIOUS_CRITERIA if getattr(body, name)]
    report_id = uuid.uuid4()
    async with platform.db.transaction():
        await AefiReport.insert(
            AefiReport(
                id=report_id,
                dose=dose["id"],
                person=dose["person"],
                subject_id=dose["subject_id"],
                province=dose["province"],
                site=dose["site"],
                reporter_kind="citizen" if principal.kind == "citizen" else "staff",
                reported_by=principal.id,
                onset_on=body.onset_on,
                symptoms=body.symptoms.strip(),
                died=body.died,
                life_threatening=body.life_threatening,
                hospitalised=body.hospitalised,
                disability=body.disability,
                serious=bool(criteria),
                created_at=clock.now(),
            )
        )
        if criteria:
            await platform.events.publish(
                "vaccination_serious_aefi_reported",
                {
                    "report_id": str(report_id),
                    "dose_id": str(dose["id"]),
                    "province": dose["province"],
                    "site": dose["site"],
                    "product": dose["product"],
                    "lot_number": dose["lot_number"],
                    "criteria": criteria,
                },
                province=dose["province"],
            )
    rows = await _aefi_rows(AefiReport.id == report_id, limit=1)
    return rows[0]


async def list_aefi(platform: Platform, principal: Principal, *, serious: bool | None, limit: int) -> list[AefiView]:
    scope = await platform.access.scope(principal, "vaccination.aefi.read")
    where = scope.where(province=AefiReport.province, site=AefiReport.site, subject=AefiReport.subject_id)
    clause: Any = AefiReport.serious == serious if serious is not None else None
    combined = where if clause is None else clause if where is None else where & clause
    views = await _aefi_rows(combined, limit=limit)
    persons = await Person.select().where(Person.id.is_in([v.person_id for v in views])) if views else []
    await people.audit_read(platform, principal, "vaccination.aefi.read", persons)
    return views


async def _aefi_rows(where: Any, *, limit: int) -> list[AefiView]:
    query = AefiReport.select()
    if where is not None:
        query = query.where(where)
    rows = await query.order_by(AefiReport.created_at, ascending=False).limit(limit)
    return [
        AefiView(
            id=r["id"],
            dose_id=r["dose"],
            person_id=r["person"],
            province=r["province"],
            site=r["site"],
            reporter_kind=r["reporter_kind"],
            onset_on=r["onset_on"],
            symptoms=r["symptoms"],
            serious=bool(r["serious"]),
            criteria=[name for name in SERIOUS_CRITERIA if r[name]],
            created_at=clock.as_utc(r["created_at"]),
        )
        for r in rows
    ]


# -- helpers --------------------------------------------------------------------------------------


def dose_resource(dose: dict[str, Any]) -> Resource:
    return Resource(
        kind="vaccination_dose",
        id=str(dose["id"]),
        province=dose["province"],
        site=dose["site"],
        subject_id=dose["subject_id"],
    )


async def _dose_row(dose_id: Any) -> dict[str, Any]:
    row = (
        await Dose.select(*Dose.all_columns(), Dose.lot.number.as_alias("lot_number")).where(Dose.id == dose_id).first()
    )
    if row is None:
        raise NotFound("dose_id: no such dose")
    return row


async def _new_version(dose: dict[str, Any], changes: dict[Any, Any], *, reason: str, by: str) -> None:
    """Keep the current version of ``dose`` as a revision, then apply ``changes`` as the next version."""
    snapshot = msgspec.to_builtins(_dose_view(dose))
    await DoseRevision.insert(
        DoseRevision(
            id=uuid.uuid4(),
            dose=dose["id"],
            version=dose["version"],
            snapshot=snapshot,
            reason=reason,
            corrected_by=by,
            corrected_at=clock.now(),
        )
    )
    updated = await (
        Dose.update({**changes, Dose.version: dose["version"] + 1})
        .where((Dose.id == dose["id"]) & (Dose.version == dose["version"]))
        .returning(Dose.id)
    )
    if not updated:
        raise Conflict("dose_id: the dose was changed by someone else at the same moment; reload")


async def _announce(platform: Platform, dose_id: Any, *, correction: bool) -> None:
    dose = await _dose_row(dose_id)
    await platform.events.publish(
        "vaccination_dose_recorded",
        {
            "dose_id": str(dose["id"]),
            "person_id": str(dose["person"]),
            "province": dose["province"],
            "site": dose["site"],
            "product": dose["product"],
            "dose_number": dose["dose_number"],
            "dose_type": dose["dose_type"],
            "administered_on": dose["administered_on"].isoformat(),
            "correction": correction,
        },
        province=dose["province"],
    )


def _dose_view(row: dict[str, Any]) -> DoseView:
    return DoseView(
        id=row["id"],
        person_id=row["person"],
        product=row["product"],
        lot_number=row["lot_number"],
        site=row["site"],
        province=row["province"],
        dose_number=row["dose_number"],
        dose_type=row["dose_type"],
        administered_at=clock.as_utc(row["administered_at"]),
        administered_on=row["administered_on"],
        vaccinator=row["vaccinator"],
        version=row["version"],
    )
