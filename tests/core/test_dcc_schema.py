"""The certificates phongdich issues conform to the eHealth Network's DCC JSON schema and value sets.

Real certificates are issued through the HTTP API (a vaccination dose; negative NAAT and rapid
antigen test results), decoded and verified with core.dcc, and their hcert payload (claim -260,
key 1) is validated against the official combined schema (tests/data/dcc, version 1.3.0) with
format checks on dates and date-times. The schema names its value sets but does not enforce
them, so the codes are checked separately against the eHN value sets vendored beside it.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from core import clock, dcc, hookimpl
from core.testing import http_client
from plugins.testing.catalogue import BUILT_IN, TestType
from plugins.testing.certificates import NOT_DETECTED
from plugins.vaccination.demo import PRODUCTS
from tests.plugins.testing.conftest import PERSON
from tests.plugins.testing.conftest import build_world as build_testing_world
from tests.plugins.vaccination.support import build_world as build_vaccination_world

DATA = Path(__file__).resolve().parents[1] / "data" / "dcc"
PANBIO = "1232"  # Abbott Panbio COVID-19 Ag Rapid Test, on the EU common list of rapid antigen tests


@functools.cache
def validator() -> Draft202012Validator:
    schema = json.loads((DATA / "DCC.combined-schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_errors(hcert: dict[str, Any]) -> list[str]:
    errors = validator().iter_errors(hcert)
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors)


@functools.cache
def value_set(name: str) -> dict[str, dict[str, Any]]:
    """Codes of one eHN value set; older files are a flat map, newer ones wrap it in ``valueSetValues``."""
    document = json.loads((DATA / "valuesets" / f"{name}.json").read_text(encoding="utf-8"))
    return document.get("valueSetValues", document)  # type: ignore[no-any-return]


def value_set_problems(hcert: dict[str, Any]) -> list[str]:
    """Every code in the certificate that is missing from its value set, or marked inactive (deprecated) there."""
    checks: list[tuple[str, str, Any]] = []
    for entry in hcert.get("v", []):
        checks += [
            ("disease-agent-targeted", "tg", entry["tg"]),
            ("vaccine-prophylaxis", "vp", entry["vp"]),
            ("vaccine-medicinal-product", "mp", entry["mp"]),
            ("vaccine-mah-manf", "ma", entry["ma"]),
        ]
    for entry in hcert.get("t", []):
        checks += [
            ("disease-agent-targeted", "tg", entry["tg"]),
            ("test-type", "tt", entry["tt"]),
            ("test-result", "tr", entry["tr"]),
        ]
        if "ma" in entry:
            checks.append(("test-manf.excerpt", "ma", entry["ma"]))
    problems = []
    for name, field, code in checks:
        known = value_set(name).get(code)
        if known is None:
            problems.append(f"{field}={code!r} is not in the {name} value set")
        elif not known["active"]:
            problems.append(f"{field}={code!r} is deprecated in the {name} value set ({known['display']})")
    return problems


def assert_conforms(hcert: dict[str, Any]) -> None:
    assert schema_errors(hcert) == []
    assert value_set_problems(hcert) == []


def _vaccination() -> dict[str, Any]:
    return dcc.hcert(
        dcc.person_name("Nguyễn", "Văn Đức"),
        "1980-05-17",
        kind="v",
        entry={
            "vp": "1119349007",
            "mp": "EU/1/20/1528",
            "ma": "ORG-100030215",
            "dn": 1,
            "sd": 2,
            "dt": "2021-08-31",
            "co": "VN",
            "is": "Ministry of Health of Viet Nam",
            "ci": dcc.uvci("VN", "0123ABCD"),
        },
    )


# -- the validator itself: it must refuse what the schema refuses ------------------------------


def test_schema_is_the_official_1_3_and_checks_formats():
    schema = validator().schema
    assert schema["$id"] == "https://id.uvci.eu/DCC.combined-schema.json"
    assert schema["$comment"] == "Schema version 1.3.0" and dcc.SCHEMA_VERSION.startswith("1.3.")
    # Without a date-time checker, "format" would be an annotation and nothing would be checked.
    assert {"date", "date-time"} <= set(validator().format_checker.checkers)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda c: c["v"][0].update(dt="2021-02-30"), "is not a 'date'"),
        (lambda c: c["v"][0].update(dt="31/08/2021"), "is not a 'date'"),
        (lambda c: c["v"][0].update(dn=0), "less than the minimum"),
        (lambda c: c["nam"].pop("fnt"), "'fnt' is a required property"),
        (lambda c: c["nam"].update(gnt="Van<Duc"), "does not match"),
        (lambda c: c.update(dob="21-05-1980"), "does not match"),
        (lambda c: c["v"][0].pop("ci"), "'ci' is a required property"),
        (lambda c: c["v"][0].update(ci="X" * 81), "is too long"),
        (lambda c: c.update(t=copy.deepcopy(c["v"])), "is valid under each of"),
        (lambda c: c.update(v=c["v"] * 2), "is too long"),
    ],
)
def test_validator_refuses_what_the_schema_refuses(change, complaint):
    certificate = _vaccination()
    assert schema_errors(certificate) == []
    change(certificate)
    errors = schema_errors(certificate)
    assert any(complaint in error for error in errors), errors


def test_date_time_format_is_checked():
    certificate = dcc.hcert(
        dcc.person_name("Trần", "Thị Bình"),
        "1985",
        kind="t",
        entry={
            "tt": "LP6464-4",
            "nm": "SARS-CoV-2 RT-PCR",
            "sc": "2021-08-31T07:15:00Z",
            "tr": NOT_DETECTED,
            "tc": "Điểm lấy mẫu",
            "co": "VN",
            "is": "Ministry of Health of Viet Nam",
            "ci": dcc.uvci("VN", "T0123ABCD/1"),
        },
    )
    assert schema_errors(certificate) == []
    for bad in ("2021-08-31 07:15", "2021-08-31T07:15:00", "2021-08-31", "2021-08-31T25:00:00Z"):
        certificate["t"][0]["sc"] = bad
        assert any("is not a 'date-time'" in error for error in schema_errors(certificate)), bad


def test_value_set_check_catches_unknown_and_deprecated_codes():
    certificate = _vaccination()
    assert value_set_problems(certificate) == []
    certificate["v"][0].update(vp="J07BX03", mp="Sputnik-5")
    assert value_set_problems(certificate) == [
        "vp='J07BX03' is deprecated in the vaccine-prophylaxis value set (covid-19 vaccines (deprecated))",
        "mp='Sputnik-5' is not in the vaccine-medicinal-product value set",
    ]


# -- the codes phongdich ships -----------------------------------------------------------------


def test_shipped_codes_are_in_the_ehn_value_sets():
    assert value_set("disease-agent-targeted")[dcc.DISEASE_COVID19]["active"]
    assert value_set("test-result")[NOT_DETECTED]["display"] == "Not detected"
    for test_type in BUILT_IN:
        assert value_set("test-type")[test_type.dcc_type]["active"], test_type.code
    assert {t.method: t.dcc_type for t in BUILT_IN} == {"naat": "LP6464-4", "antigen": "LP217198-3"}
    for code, _name, _maker, vp, mp, ma, *_rule in PRODUCTS:
        certificate = _vaccination()
        certificate["v"][0].update(vp=vp, mp=mp, ma=ma)
        assert value_set_problems(certificate) == [], code


# -- real certificates, issued through the API ---------------------------------------------------


def _keys(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    dcc.KeyStore(keys).init(country="VN", organisation="Ministry of Health of Viet Nam")
    return keys


def _payload(text: str, keys: Path) -> dict[str, Any]:
    """Decode and verify an HC1 string with core.dcc; the hcert is claim -260, key 1."""
    decoded = dcc.verify(text, dcc.KeyStore(keys).trust_list(), now=clock.now())
    assert decoded.claims[dcc.CLAIM_HCERT][dcc.HCERT_V1] is decoded.hcert
    return decoded.hcert


async def test_issued_vaccination_certificate_conforms(make_platform, tmp_path):
    keys = _keys(tmp_path)
    platform = await make_platform(plugin={"vaccination": {"keys_dir": str(keys)}})
    async with http_client(platform) as api:
        world = await build_vaccination_world(platform, api)
        _headers, person, recorded = await world.vaccinated_person()
    [issued] = recorded["certificates"]
    hcert = _payload(issued["content"], keys)
    assert_conforms(hcert)
    assert hcert["ver"] == dcc.SCHEMA_VERSION and hcert["dob"] == person["birth_date"]
    [entry] = hcert["v"]
    assert (entry["dn"], entry["sd"], entry["ci"]) == (1, 2, issued["identifier"])
    assert dcc.uvci_is_well_formed(entry["ci"])


class PanbioAntigen:
    """A plugin adding a rapid antigen test whose device is on the EU common list (DCC ``ma``)."""

    @hookimpl
    def testing_register_test_types(self):
        return [
            TestType(
                code="panbio-ag",
                loinc="94558-4",
                name_vi="Test nhanh kháng nguyên Panbio",
                name_en="Panbio COVID-19 Ag Rapid Test",
                method="antigen",
                poolable=False,
                dcc_type="LP217198-3",
                dcc_device=PANBIO,
            )
        ]


@pytest.mark.parametrize("test_type", ["rt-pcr", "panbio-ag"])
async def test_issued_test_certificate_conforms(make_platform, tmp_path, test_type):
    keys = _keys(tmp_path)
    platform = await make_platform(
        plugin={"testing": {"keys_dir": str(keys)}}, extra_plugins=[("panbio", PanbioAntigen())]
    )
    async with http_client(platform) as client:
        world = await build_testing_world(platform, client)
        receipt = await world.register(person=PERSON, test_type=test_type)
        await world.receive([receipt["sample_id"]])
        assert (await world.result(receipt["sample_id"], "negative")).status_code == 201
        response = await client.post(
            "/api/testing/lookup/certificate",
            json={"code": receipt["result_code"], "date_of_birth": PERSON["date_of_birth"]},
        )
    assert response.status_code == 200, response.text
    hcert = _payload(response.json()["certificate"], keys)
    assert_conforms(hcert)
    [entry] = hcert["t"]
    if test_type == "rt-pcr":
        assert entry["tt"] == "LP6464-4" and "nm" in entry and "ma" not in entry
    else:
        assert entry["tt"] == "LP217198-3" and entry["ma"] == PANBIO and "nm" not in entry
    assert dcc.uvci_is_well_formed(entry["ci"])
