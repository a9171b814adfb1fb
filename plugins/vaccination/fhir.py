"""FHIR R4 export for staff: a ``collection`` Bundle of Immunization resources and the Patient
resources they reference, limited to the principal's scope and audited person by person.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from core import clock
from plugins.vaccination import people
from plugins.vaccination.tables import Dose, Person

if TYPE_CHECKING:
    from core import Principal
    from core.platform import Platform

SNOMED = "http://snomed.info/sct"
ATC = "http://www.whocc.no/atc"
COVID19 = "840539006"
ID_SYSTEM = "urn:phongdich:vn:id-number"
FHIR_JSON = "application/fhir+json"


async def export(
    platform: Platform,
    principal: Principal,
    *,
    province: str | None,
    since: date | None,
    until: date | None,
    limit: int,
) -> dict[str, Any]:
    scope = await platform.access.scope(principal, "vaccination.export.fhir")
    query = Dose.select(
        *Dose.all_columns(),
        Dose.lot.number.as_alias("lot_number"),
        Dose.lot.expires_on.as_alias("lot_expires_on"),
        Dose.product.name.as_alias("product_name"),
        Dose.product.dcc_vp.as_alias("vp"),
        Dose.product.dcc_ma.as_alias("ma"),
        Dose.site.name.as_alias("site_name"),
    )
    where = scope.where(province=Dose.province, site=Dose.site)
    if where is not None:
        query = query.where(where)
    if province:
        query = query.where(Dose.province == province)
    if since:
        query = query.where(Dose.administered_on >= since)
    if until:
        query = query.where(Dose.administered_on <= until)
    doses = await query.order_by(Dose.administered_at).limit(limit)
    person_ids = sorted({row["person"] for row in doses}, key=str)
    persons = await Person.select().where(Person.id.is_in(person_ids)) if person_ids else []
    if persons:
        await platform.audit.record(
            principal,
            "vaccination.export.fhir",
            [people.person_resource(p) for p in persons],
            purpose="vaccination.records",
        )
    entries = [_patient(p) for p in persons] + [_immunization(d) for d in doses]
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": clock.now().isoformat(),
        "total": len(entries),
        "entry": [{"fullUrl": f"urn:uuid:{e['id']}", "resource": e} for e in entries],
    }


def _patient(row: dict[str, Any]) -> dict[str, Any]:
    family, given = people.split_name(row["full_name"])
    return {
        "resourceType": "Patient",
        "id": str(row["id"]),
        "identifier": [{"system": ID_SYSTEM, "value": row["id_number"]}],
        "name": [{"text": row["full_name"], "family": family, "given": given.split() if given else []}],
        "gender": {"female": "female", "male": "male"}.get(row["sex"], "other"),
        "birthDate": row["birth_date"].isoformat(),
        "address": [{"state": row["province"], "country": "VN"}],
    }


def _immunization(row: dict[str, Any]) -> dict[str, Any]:
    system = ATC if row["vp"].startswith("J07") else SNOMED
    return {
        "resourceType": "Immunization",
        "id": str(row["id"]),
        "meta": {"versionId": str(row["version"])},
        "status": "completed",
        "vaccineCode": {
            "coding": [{"system": system, "code": row["vp"]}],
            "text": row["product_name"],
        },
        "patient": {"reference": f"urn:uuid:{row['person']}"},
        "occurrenceDateTime": clock.as_utc(row["administered_at"]).isoformat(),
        "recorded": clock.as_utc(row["created_at"]).isoformat(),
        "primarySource": True,
        "location": {"display": row["site_name"], "identifier": {"value": row["site"]}},
        "manufacturer": {"display": row["ma"]},
        "lotNumber": row["lot_number"],
        "expirationDate": row["lot_expires_on"].isoformat(),
        "performer": [{"actor": {"identifier": {"value": row["vaccinator"]}}}],
        "protocolApplied": [
            {
                "series": row["dose_type"],
                "targetDisease": [{"coding": [{"system": SNOMED, "code": COVID19, "display": "COVID-19"}]}],
                "doseNumberPositiveInt": row["dose_number"],
            }
        ],
    }
