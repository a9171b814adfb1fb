"""FHIR R4: results out (Patient, Specimen, Observation, DiagnosticReport) and results in (a Bundle).

Export: each sample becomes a Patient, a Specimen identified by its label,
and per result version an Observation and a DiagnosticReport coded with
the test's LOINC code and a SNOMED CT result (corrections carry status
``corrected``; a result withdrawn by a pool correction ``entered-in-error``).
Import: a Bundle of Observations (or DiagnosticReports without
Observations) whose specimen is identified by its label, read into the same
entries as a CSV upload.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from core import clock
from plugins.testing.catalogue import known_test_types
from plugins.testing.results import ResultEntry
from plugins.testing.samples import PURPOSE, check_sample, load_sample, result_versions, sample_resource
from plugins.testing.schemas import RowError
from plugins.testing.tables import Person, Sample

if TYPE_CHECKING:
    from core.platform import Platform
    from core.principal import Principal

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
SAMPLE_SYSTEM = "https://phongdich.vn/fhir/sid/sample-label"
ID_NUMBER_SYSTEM = "https://phongdich.vn/fhir/sid/national-id"
PHONGDICH_CODES = "https://phongdich.vn/fhir/CodeSystem/testing"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
REPORT_CATEGORY = "http://terminology.hl7.org/CodeSystem/v2-0074"
NAMESPACE = uuid.UUID("5b0a3e1c-6f1e-4f3a-9c55-1d2f8f3b7a10")  # fixed: the same record gets the same urn

OUTCOME_SNOMED = {
    "negative": ("260385009", "Negative"),
    "positive": ("10828004", "Positive"),
    "invalid": ("455371000124106", "Invalid result"),
}
# Codes labs send for each outcome (detected / not detected, inconclusive...).
SNOMED_OUTCOMES = {
    "260385009": "negative",
    "260415000": "negative",
    "10828004": "positive",
    "260373001": "positive",
    "455371000124106": "invalid",
    "419984006": "invalid",
    "125154007": "invalid",
}
CT_CODES = {(LOINC, "94509-7"), (LOINC, "94510-5"), (LOINC, "94511-3"), (PHONGDICH_CODES, "ct")}
SWAB = {"system": SNOMED, "code": "258500001", "display": "Nasopharyngeal swab"}
FINAL_STATUSES = {"final", "amended", "corrected"}


# -- export ------------------------------------------------------------------------------------


async def sample_bundle(platform: Platform, principal: Principal, sample_id: str) -> dict[str, Any]:
    """One sample as a FHIR R4 collection Bundle (audited: it carries the person's data)."""
    row = await load_sample(sample_id)
    await check_sample(platform, principal, "testing.fhir.export", row)
    bundle = await _bundle(platform, [row])
    await platform.audit.record(principal, "testing.fhir.export", sample_resource(row), purpose=PURPOSE)
    return bundle


async def results_bundle(
    platform: Platform,
    principal: Principal,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
) -> dict[str, Any]:
    """The released results in the principal's scope, newest first, as one Bundle (audited per person)."""
    scope = await platform.access.scope(principal, "testing.fhir.export")
    query = Sample.select().where(Sample.result_version > 0)
    where = scope.where(province=Sample.province, site=Sample.site, lab=Sample.lab, subject=Sample.subject_id)
    if where is not None:
        query = query.where(where)
    if since is not None:
        query = query.where(Sample.result_at >= since)
    if until is not None:
        query = query.where(Sample.result_at < until)
    rows = [dict(row) for row in await query.order_by(Sample.result_at, ascending=False).limit(limit)]
    bundle = await _bundle(platform, rows)
    if rows:
        await platform.audit.record(
            principal, "testing.fhir.export", [sample_resource(row) for row in rows], purpose=PURPOSE
        )
    return bundle


async def _bundle(platform: Platform, rows: list[dict[str, Any]]) -> dict[str, Any]:
    people = {
        person["id"]: person
        for person in await Person.select().where(
            Person.id.is_in([row["person"] for row in rows] or [uuid.UUID(int=0)])
        )
    }
    versions = await result_versions([row["id"] for row in rows])
    types = known_test_types(platform)
    entries: list[dict[str, Any]] = []
    seen_people: set[Any] = set()
    for row in rows:
        person = people[row["person"]]
        if person["id"] not in seen_people:
            seen_people.add(person["id"])
            entries.append(_entry(_patient(person)))
        entries.append(_entry(_specimen(row)))
        test_type = types.get(row["test_type"])
        loinc = test_type.loinc if test_type else None
        display = test_type.name_en if test_type else row["test_type"]
        history = versions.get(row["id"], [])
        for index, version in enumerate(history):
            status = _status(version, history[index + 1] if index + 1 < len(history) else None)
            observation = _observation(row, version, loinc, display, status)
            entries.append(_entry(observation))
            entries.append(_entry(_report(row, version, loinc, display, observation, status)))
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "collection", "timestamp": _instant(clock.now())}
    if entries:
        bundle["entry"] = entries  # FHIR allows no empty arrays
    return bundle


def _patient(person: dict[str, Any]) -> dict[str, Any]:
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": _id("patient", person["id"]),
        "name": [{"text": person["full_name"]}],
        "birthDate": _date(person["date_of_birth"]),
        "telecom": [{"system": "phone", "value": person["phone"], "use": "mobile"}],
    }
    if person["id_number"]:
        patient["identifier"] = [{"system": ID_NUMBER_SYSTEM, "value": person["id_number"]}]
    return patient


def _specimen(row: dict[str, Any]) -> dict[str, Any]:
    specimen: dict[str, Any] = {
        "resourceType": "Specimen",
        "id": _id("specimen", row["id"]),
        "identifier": [{"system": SAMPLE_SYSTEM, "value": row["id"]}],
        "status": "available",
        "type": {"coding": [SWAB]},
        "subject": {"reference": _urn("patient", row["person"])},
        "collection": {"collectedDateTime": _instant(row["collected_at"])},
    }
    if row["received_at"] is not None:
        specimen["receivedTime"] = _instant(row["received_at"])
    if row["pool"] is not None:
        specimen["note"] = [{"text": f"Tested in pool {row['pool']}"}]
    return specimen


def _observation(
    row: dict[str, Any], version: dict[str, Any], loinc: str | None, display: str, status: str
) -> dict[str, Any]:
    code, outcome_display = OUTCOME_SNOMED[version["outcome"]]
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": _id("observation", version["id"]),
        "status": status,
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory"}]}],
        "code": _test_code(loinc, display),
        "subject": {"reference": _urn("patient", row["person"])},
        "effectiveDateTime": _instant(row["collected_at"]),
        "issued": _instant(version["released_at"]),
        "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": code, "display": outcome_display}]},
        "specimen": {"reference": _urn("specimen", row["id"])},
    }
    if version["ct_value"] is not None:
        observation["component"] = [
            {
                "code": {"coding": [{"system": PHONGDICH_CODES, "code": "ct", "display": "Cycle threshold"}]},
                "valueQuantity": {"value": version["ct_value"], "unit": "{Ct}", "system": UCUM, "code": "{Ct}"},
            }
        ]
    if version["reason"]:
        observation["note"] = [{"text": f"Correction: {version['reason']}"}]
    return observation


def _report(
    row: dict[str, Any],
    version: dict[str, Any],
    loinc: str | None,
    display: str,
    observation: dict[str, Any],
    status: str,
) -> dict[str, Any]:
    code, outcome_display = OUTCOME_SNOMED[version["outcome"]]
    return {
        "resourceType": "DiagnosticReport",
        "id": _id("report", version["id"]),
        "status": status,
        "category": [{"coding": [{"system": REPORT_CATEGORY, "code": "LAB"}]}],
        "code": _test_code(loinc, display),
        "subject": {"reference": _urn("patient", row["person"])},
        "effectiveDateTime": _instant(row["collected_at"]),
        "issued": _instant(version["released_at"]),
        "specimen": [{"reference": _urn("specimen", row["id"])}],
        "result": [{"reference": _urn("observation", version["id"])}],
        "conclusionCode": [{"coding": [{"system": SNOMED, "code": code, "display": outcome_display}]}],
    }


def _test_code(loinc: str | None, display: str) -> dict[str, Any]:
    if loinc is None:
        return {"text": display}
    return {"coding": [{"system": LOINC, "code": loinc, "display": display}], "text": display}


def _status(version: dict[str, Any], following: dict[str, Any] | None) -> str:
    """The FHIR status of one result version, given the version after it (None for the latest).

    A version that stopped being current without a correction replacing it was
    withdrawn: a pool correction took back the negative its members had from
    the pool (they are retested, and their own result, if any, is a new
    version with its own source). FHIR R4 calls withdrawn data
    ``entered-in-error``; a version replaced by a correction is ``amended``
    (the first) or ``corrected`` (a correction itself).
    """
    if not version["current"] and (following is None or following["source"] != "correction"):
        return "entered-in-error"
    if version["version"] == 1:
        return "final" if version["current"] else "amended"
    return "corrected"


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    kind = resource["resourceType"].lower()
    if kind == "diagnosticreport":
        kind = "report"
    return {"fullUrl": _urn(kind, resource["id"], known=True), "resource": resource}


def _id(kind: str, key: Any) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{kind}:{key}"))


def _urn(kind: str, key: Any, *, known: bool = False) -> str:
    return f"urn:uuid:{key if known else _id(kind, key)}"


def _instant(moment: datetime) -> str:
    return clock.as_utc(moment).isoformat(timespec="seconds")


def _date(value: date | str) -> str:
    return value if isinstance(value, str) else value.isoformat()


# -- import ------------------------------------------------------------------------------------


def result_entries(bundle: Any, *, max_entries: int) -> tuple[list[ResultEntry], list[RowError]]:
    """The results in a Bundle, and every problem found (``row`` is the 1-based entry number)."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return [], [RowError(row=0, column="resourceType", message="resourceType: expected a FHIR Bundle")]
    if bundle.get("type") not in ("collection", "batch", "transaction", "message", "searchset"):
        return [], [
            RowError(row=0, column="type", message=f"type: {str(bundle.get('type'))[:30]!r} is not a bundle type")
        ]
    raw_entries = bundle.get("entry")
    if not isinstance(raw_entries, list) or not raw_entries:
        return [], [RowError(row=0, column="entry", message="entry: the bundle has no entries")]
    resources: list[tuple[int, dict[str, Any]]] = []
    by_url: dict[str, dict[str, Any]] = {}
    for number, entry in enumerate(raw_entries, start=1):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            return [], [RowError(row=number, column="resource", message="resource: the entry has no resource")]
        resources.append((number, resource))
        if isinstance(entry.get("fullUrl"), str):
            by_url[entry["fullUrl"]] = resource
        if isinstance(resource.get("id"), str) and isinstance(resource.get("resourceType"), str):
            by_url[f"{resource['resourceType']}/{resource['id']}"] = resource
    entries: list[ResultEntry] = []
    errors: list[RowError] = []
    for number, resource in resources:
        kind = resource.get("resourceType")
        # A report whose observations are in the bundle adds nothing: they carry the results.
        if kind == "Observation" or (kind == "DiagnosticReport" and not resource.get("result")):
            if len(entries) >= max_entries:
                errors.append(RowError(row=number, column=None, message=f"entry: more than {max_entries} results"))
                break
            entry = _result_entry(number, resource, by_url, errors)
            if entry is not None:
                entries.append(entry)
        elif kind == "DiagnosticReport":
            for ref in resource.get("result") or []:
                target = ref.get("reference") if isinstance(ref, dict) else None
                if target not in by_url:
                    errors.append(
                        RowError(
                            row=number, column="result", message=f"result: {str(target)[:60]!r} is not in the bundle"
                        )
                    )
    if not entries and not errors:
        errors.append(
            RowError(row=0, column="entry", message="entry: no Observation or DiagnosticReport with a result")
        )
    return entries, errors


def _result_entry(
    number: int, resource: dict[str, Any], by_url: dict[str, dict[str, Any]], errors: list[RowError]
) -> ResultEntry | None:
    kind = resource["resourceType"]
    status = resource.get("status")
    if status not in FINAL_STATUSES:
        errors.append(
            RowError(row=number, column="status", message=f"status: {str(status)[:20]!r}; only final results are taken")
        )
        return None
    loinc = _code_in(resource.get("code"), LOINC)
    if loinc is None:
        errors.append(RowError(row=number, column="code", message="code: no LOINC code for the test"))
        return None
    if kind == "Observation":
        snomed = _code_in(resource.get("valueCodeableConcept"), SNOMED)
        specimen_ref = resource.get("specimen")
    else:
        conclusions = resource.get("conclusionCode") or [None]
        snomed = _code_in(conclusions[0], SNOMED)
        specimens = resource.get("specimen") or [None]
        specimen_ref = specimens[0]
    outcome = SNOMED_OUTCOMES.get(snomed or "")
    if outcome is None:
        column = "valueCodeableConcept" if kind == "Observation" else "conclusionCode"
        message = f"{column}: no SNOMED CT code for negative, positive or invalid"
        errors.append(RowError(row=number, column=column, message=message))
        return None
    label = _specimen_label(specimen_ref, by_url)
    if label is None:
        message = "specimen: give the sample's label as the Specimen's identifier (or a reference to that Specimen)"
        errors.append(RowError(row=number, column="specimen", message=message))
        return None
    ct_value = _ct_value(resource) if kind == "Observation" else None
    if ct_value is not None and not 0 <= ct_value <= 60:
        errors.append(RowError(row=number, column="component", message="component: Ct value must be from 0 to 60"))
        return None
    return ResultEntry(row=number, label=label, outcome=outcome, ct_value=ct_value, column="specimen", loinc=loinc)


def _code_in(concept: Any, system: str) -> str | None:
    if not isinstance(concept, dict):
        return None
    for coding in concept.get("coding") or []:
        if isinstance(coding, dict) and coding.get("system") == system and isinstance(coding.get("code"), str):
            return str(coding["code"])
    return None


def _specimen_label(reference: Any, by_url: dict[str, dict[str, Any]]) -> str | None:
    if not isinstance(reference, dict):
        return None
    identifier = reference.get("identifier")
    if isinstance(identifier, dict) and isinstance(identifier.get("value"), str):
        return str(identifier["value"])
    target = reference.get("reference")
    if not isinstance(target, str):
        return None
    specimen = by_url.get(target)
    if specimen is None:
        # "Specimen/S-..." names the label itself when the Specimen is not in the bundle.
        return target.split("/", 1)[1] if target.startswith("Specimen/S-") else None
    for candidate in [*(specimen.get("identifier") or []), specimen.get("accessionIdentifier")]:
        if isinstance(candidate, dict) and candidate.get("system") in (SAMPLE_SYSTEM, None):
            value = candidate.get("value")
            if isinstance(value, str):
                return value
    return None


def _ct_value(resource: dict[str, Any]) -> float | None:
    for component in resource.get("component") or []:
        if not isinstance(component, dict):
            continue
        codes = {
            (coding.get("system"), coding.get("code"))
            for coding in (component.get("code") or {}).get("coding") or []
            if isinstance(coding, dict)
        }
        quantity = component.get("valueQuantity")
        if codes & CT_CODES and isinstance(quantity, dict) and isinstance(quantity.get("value"), int | float):
            return float(quantity["value"])
    return None
