"""``phongdich vaccination ...``: the operator's commands call the API's services and are audited."""

from __future__ import annotations

import asyncio
import csv
import getpass
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from core.cli import Context, cli
from core.platform import Platform
from core.tables import AuditLog
from core.testing import http_client
from plugins.vaccination.commands import register
from plugins.vaccination.tables import Certificate, Lot, LotStock, Person
from tests.plugins.vaccination.support import LOT, PRODUCT, SITE, build_world, next_id_number

register(cli)
OPERATOR = f"cli:{getpass.getuser()}"


@pytest.fixture
def settings(databases: Any, keys_dir: Path) -> Any:
    url = asyncio.run(databases.fresh_url())
    yield databases.settings(url, plugin={"vaccination": {"keys_dir": str(keys_dir)}})
    asyncio.run(databases.drop(url))


@pytest.fixture
def seeded(settings: Any) -> dict[str, Any]:
    """The registry of the API tests, and one person vaccinated today (so one certificate)."""

    async def build() -> dict[str, Any]:
        platform = Platform(settings)
        await platform.start()
        try:
            async with http_client(platform) as api:
                world = await build_world(platform, api)
                _headers, person, recorded = await world.vaccinated_person()
                return {"person": person, "dose": recorded}
        finally:
            await platform.stop()

    return asyncio.run(build())


def run(settings: Any, *args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(cli, ["vaccination", *args], obj=Context(settings))
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


def query(settings: Any, work: Any) -> Any:
    async def go() -> Any:
        platform = Platform(settings)
        await platform.db.start()
        try:
            return await work()
        finally:
            await platform.db.stop()

    return asyncio.run(go())


def test_registry_commands_and_stock_in_vials(settings, seeded):
    products = run(settings, "products", "list").output
    assert f"{PRODUCT}  {PRODUCT} vaccine (Maker)" in products
    assert "from 2021-01-01: 2 dose(s) 21-42 days apart, ages 12-…, 1 booster(s)" in products
    assert json.loads(run(settings, "products", "list", "--json").output)[0]["code"] == PRODUCT
    assert f"{SITE}  01" in run(settings, "sites", "list", "--province", "01").output

    added = run(
        settings, "lots", "add", "--product", PRODUCT, "--number", "CLI1", "--expires", "2031-06-30",
        "--doses-per-vial", "10",
    ).output  # fmt: skip
    assert "Lot CLI1 of COMIRNATY: expires 2031-06-30, 10 dose(s) per vial." in added
    received = run(
        settings, "lots", "receive", "--site", SITE, "--product", PRODUCT, "--lot", "CLI1", "--vials", "3"
    ).output
    assert f"{SITE} now holds 30 dose(s) of lot CLI1 (3 whole vial(s) of 10)" in received
    listed = run(settings, "lots", "list", "--site", SITE).output
    assert "lot CLI1  expires 2031-06-30  30 dose(s) left = 3 vial(s) of 10" in listed
    assert f"lot {LOT}" in listed and "99 dose(s) left = 16 vial(s) of 6" in listed

    async def stock() -> dict[str, int]:
        rows = await LotStock.select(LotStock.received, LotStock.lot.number.as_alias("lot")).where(
            LotStock.site == SITE
        )
        return {row["lot"]: row["received"] for row in rows}

    assert query(settings, stock) == {LOT: 100, "CLI1": 30}

    # Bad input: exit 2, the field, what to do next, and nothing stored.
    both = run(
        settings, "lots", "receive", "--site", SITE, "--product", PRODUCT, "--lot", "CLI1", "--doses", "5",
        "--vials", "1", code=2,
    ).output  # fmt: skip
    assert "vials: give the doses received or the vials received, not both" in both
    unknown = run(
        settings, "lots", "receive", "--site", SITE, "--product", PRODUCT, "--lot", "NOPE", "--doses", "5", code=2
    ).output
    assert "lot_number: unknown lot NOPE" in unknown and "phongdich vaccination lots add" in unknown
    no_site = run(settings, "lots", "list", "--site", "nowhere", code=2).output
    assert "no vaccination site 'nowhere'" in no_site and "sites list" in no_site
    no_product = run(
        settings, "lots", "add", "--product", "NOPE", "--number", "X1", "--expires", "2031-01-01",
        "--doses-per-vial", "6", code=2,
    ).output  # fmt: skip
    assert "no vaccine product 'NOPE'" in no_product and "products list" in no_product
    big_vial = run(
        settings, "lots", "add", "--product", PRODUCT, "--number", "X2", "--expires", "2031-01-01",
        "--doses-per-vial", "0", code=2,
    ).output  # fmt: skip
    assert "doses_per_vial" in big_vial
    assert query(settings, stock) == {LOT: 100, "CLI1": 30}
    assert query(settings, lambda: Lot.count().where(Lot.number.is_in(["X1", "X2"]))) == 0


def _csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(
            handle, ["full_name", "birth_date", "sex", "id_number", "phone", "province", "priority_group"]
        )
        writer.writeheader()
        writer.writerows(rows)
    return path


def _row(**fields: str) -> dict[str, str]:
    return {
        "full_name": "Trần Thị Bình",
        "birth_date": "1975-03-09",
        "sex": "female",
        "id_number": next_id_number(),
        "phone": "",
        "province": "01",
        "priority_group": "teachers",
        **fields,
    }


def test_bulk_registration_from_a_csv_file(settings, seeded, tmp_path):
    people = lambda: Person.select(Person.id_number, Person.channel, Person.registered_by)  # noqa: E731
    before = len(query(settings, people))

    bad = _csv(tmp_path / "bad.csv", [_row(), _row(birth_date="09/03/1975"), _row(province="79")])
    refused = run(
        settings, "people", "import", str(bad), "--province", "01", "--report", str(tmp_path / "r.csv"), code=2
    )
    assert "row 3 [birth_date]: use YYYY-MM-DD" in refused.output
    assert "row 4 [province]: you may register people of province(s) 01 only" in refused.output
    assert (
        "2 of 3 row(s) have errors; nothing was stored" in refused.output and "run the command again" in refused.output
    )
    report = list(csv.reader((tmp_path / "r.csv").read_text(encoding="utf-8-sig").splitlines()))
    assert report[0] == ["row", "outcome", "person_id", "field", "message"]
    assert ["3", "error", "", "birth_date", "use YYYY-MM-DD"] in report
    assert len(query(settings, people)) == before

    good_rows = [_row(), _row(full_name="Lê Văn Cường", sex="male", priority_group="elderly", phone="0912000111")]
    good = _csv(tmp_path / "good.csv", good_rows)
    assert (
        "all 2 row(s) are valid; nothing was stored" in run(settings, "people", "import", str(good), "--dry-run").output
    )
    assert len(query(settings, people)) == before
    stored = run(settings, "people", "import", str(good))
    assert "checking every row before anything is stored" in stored.output
    assert "Stored 2 row(s): 2 registered, 0 already registered, 0 probable duplicate(s)" in stored.output
    rows = {r["id_number"]: r for r in query(settings, people)}
    for row in good_rows:
        assert rows[row["id_number"]]["channel"] == "bulk"
        assert rows[row["id_number"]]["registered_by"] == OPERATOR
    again = run(settings, "people", "import", str(good)).output
    assert "0 registered, 2 already registered" in again
    assert len(query(settings, people)) == before + 2

    header_only = tmp_path / "empty.csv"
    header_only.write_text("full_name,birth_date\n", encoding="utf-8")
    assert "file: the header lacks column(s)" in run(settings, "people", "import", str(header_only), code=2).output
    assert "two-digit" in run(settings, "people", "import", str(good), "--province", "1", code=2).output


def test_revoking_a_certificate_by_its_uvci(settings, seeded):
    uvci = seeded["dose"]["certificates"][0]["identifier"]
    short = run(settings, "certificates", "revoke", uvci, "--reason", "typo", code=2).output
    assert "reason" in short and "10" in short
    unknown = run(settings, "certificates", "revoke", "URN:UVCI:01:VN:NOPE", "--reason", "wrong identity data", code=2)
    assert "no certificate with the UVCI" in unknown.output and "UVCI" in unknown.output
    assert query(settings, lambda: Certificate.count().where(Certificate.revoked_at.is_not_null())) == 0

    done = run(settings, "certificates", "revoke", uvci, "--reason", "recorded under the wrong person").output
    assert f"Revoked {uvci}: recorded under the wrong person" in done
    row = query(settings, lambda: Certificate.select().where(Certificate.identifier == uvci).first())
    assert row["revoked_at"] is not None and row["revocation_reason"] == "recorded under the wrong person"
    audit = query(
        settings,
        lambda: AuditLog.select().where(AuditLog.action == "vaccination.certificate.revoke"),
    )
    assert [(a["actor_id"], a["resource_id"], a["detail"]) for a in audit] == [
        (OPERATOR, str(row["id"]), "recorded under the wrong person")
    ]
    again = run(
        settings, "certificates", "revoke", str(row["id"]), "--reason", "recorded under the wrong person", code=2
    )
    assert "already revoked" in again.output


def test_public_figures_and_the_audited_fhir_export(settings, seeded, tmp_path):
    shown = json.loads(run(settings, "figures", "--json").output)
    assert shown["doses"] == {"by": "province", "rows": [{"key": "01", "doses": 1}], "total": 1}
    assert shown["stock"]["rows"][0]["available"] == 99
    assert sum(row["at_least_one_dose"] for row in shown["coverage"]["rows"]) == 1
    text = run(settings, "figures", "--doses-by", "product").output
    assert "Doses by product: 1" in text and PRODUCT in text and "Nguyễn" not in text
    assert "Doses by province: 0" in run(settings, "figures", "--province", "79").output
    assert "--province" in run(settings, "figures", "--province", "1", code=2).output

    person_id = seeded["person"]["id"]
    exported = run(settings, "export-fhir", "--since", "2021-01-01")
    bundle = json.loads(exported.stdout)
    kinds = sorted(entry["resource"]["resourceType"] for entry in bundle["entry"])
    assert bundle["resourceType"] == "Bundle" and kinds == ["Immunization", "Patient"]
    assert "Exported 1 Immunization and 1 Patient resource(s)" in exported.stderr
    audit = query(settings, lambda: AuditLog.select().where(AuditLog.action == "vaccination.export.fhir"))
    assert [(a["actor_id"], a["resource_id"]) for a in audit] == [(OPERATOR, person_id)]

    output = tmp_path / "bundle.json"
    run(settings, "export-fhir", "--province", "79", "--output", str(output))
    assert json.loads(output.read_text())["total"] == 0
    assert "--until: must not be before --since" in (
        run(settings, "export-fhir", "--since", "2025-02-01", "--until", "2025-01-01", code=2).output
    )
    assert "'2025-13-01' does not match" in run(settings, "export-fhir", "--since", "2025-13-01", code=2).output
