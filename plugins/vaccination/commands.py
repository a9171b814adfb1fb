"""CLI: ``phongdich keys init|rotate-signer`` for certificate signing keys, and
``phongdich vaccination ...`` for the operator at the console.

The key commands join the core's ``keys`` group (API keys) so that all key
management sits under one command. The ``vaccination`` commands call the same
service functions as the HTTP routes, acting as the console operator: a
national-admin service principal named after the system user, so that what
they read and change is audited under that name like any staff request.
Bad input stops with exit status 2, a message naming the field, and what to
do next; nothing is half-stored.
"""

from __future__ import annotations

import base64
import getpass
import uuid
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click
import msgspec
from litestar.exceptions import PermissionDeniedException

from core import Conflict, InvalidInput, NotFound, Principal, dcc, exports
from core.principal import NATIONAL_ADMIN, PROVINCE_ADMIN


def register(cli: click.Group) -> None:
    keys = cli.commands.get("keys")
    if not isinstance(keys, click.Group):
        keys = click.Group("keys", help="Keys.")
        cli.add_command(keys)
    keys.add_command(keys_init)
    keys.add_command(keys_rotate)
    cli.add_command(vaccination)


def _folder(obj: Any, directory: str | None) -> tuple[Path, Any]:
    settings = obj.platform.plugin_config("vaccination")
    return Path(directory or settings.keys_dir), settings


@click.command("init")
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="Key folder (default: keys_dir setting).")
@click.pass_obj
def keys_init(obj: Any, directory: str | None) -> None:
    """Create the certificate signing keys: a country signing CA and a document signer (X.509)."""
    folder, settings = _folder(obj, directory)
    try:
        signer = dcc.KeyStore(folder).init(country=settings.country, organisation=settings.issuer)
    except FileExistsError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Created certificate signing keys in {folder}/ (private keys readable by this user only):")
    click.echo(f"  {dcc.CSCA_CERT}, {dcc.CSCA_KEY}: country signing CA ({settings.country})")
    click.echo(
        f"  {dcc.DSC_CERT}, {dcc.DSC_KEY}: document signer, "
        f"valid until {signer.certificate.not_valid_after_utc:%Y-%m-%d}"
    )
    click.echo(f"  kid {base64.b64encode(signer.kid).decode()} ({signer.kid.hex()})")
    click.echo(
        f"Keep {dcc.CSCA_KEY} offline once signers are issued; publish the trust list at /api/vaccination/trust-list."
    )


@click.command("rotate-signer")
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="Key folder (default: keys_dir setting).")
@click.pass_obj
def keys_rotate(obj: Any, directory: str | None) -> None:
    """Issue a new document signer; the old one stays in the trust list until it expires."""
    folder, _settings = _folder(obj, directory)
    store = dcc.KeyStore(folder)
    if not store.exists():
        raise click.ClickException(f"no keys in {folder}: run `phongdich keys init` first")
    try:
        signer = store.rotate_signer()
    except dcc.KeysMissing as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"New document signer, kid {base64.b64encode(signer.kid).decode()}; the previous one stays trusted.")


# -- the operator and its errors ----------------------------------------------------------------


def operator(province: str | None = None) -> Principal:
    """The console operator, named after the system user for the audit trail.

    National admin, or, with ``province``, a province admin of that province
    only (so the services refuse anything outside it, as they would over HTTP).
    """
    user = f"cli:{getpass.getuser()}"
    if province is None:
        return Principal(id=user, kind="service", roles=frozenset({NATIONAL_ADMIN}))
    return Principal(id=user, kind="service", roles=frozenset({PROVINCE_ADMIN}), province=province)


class Refused(click.ClickException):
    """A refusal the operator can fix: ``Error: <field>: <why>``, what to do next, exit status 2."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(f"{message}\n{hint}" if hint else message)


# What to run next when a field names something that does not exist.
HINTS = {
    "product_code": "See the products with `phongdich vaccination products list`.",
    "site_id": "See the sites with `phongdich vaccination sites list`.",
    "lot_number": "Register the lot with `phongdich vaccination lots add`, or see a site's lots with "
    "`phongdich vaccination lots list --site SITE`.",
    "certificate_id": "Give the certificate's UVCI (URN:UVCI:...) or its id, as shown by the API.",
}


def _run(obj: Any, work: Any) -> Any:
    """Run ``work(platform)``; refusals by the services become a message and exit status 2."""

    async def guarded(platform: Any) -> Any:
        try:
            return await work(platform)
        except (InvalidInput, NotFound, Conflict) as exc:
            field = str(exc).partition(":")[0]
            raise Refused(str(exc), HINTS.get(field)) from exc
        except PermissionDeniedException as exc:
            raise Refused(str(exc.detail)) from exc

    return obj.run(guarded)


def _convert(values: dict[str, Any], struct: type[Any]) -> Any:
    """Validate options with the API's own request schema; a wrong value is exit status 2."""
    try:
        return msgspec.convert({k: v for k, v in values.items() if v is not None}, struct, strict=False)
    except msgspec.ValidationError as exc:
        # "Expected ... - at `$.field`" reads as the services' errors do: "field: Expected ...".
        why, _, where = str(exc).partition(" - at `$.")
        message = f"{where.rstrip('`')}: {why}" if where else why
        raise Refused(message, "See `--help` for the expected values.") from exc


def _echo_json(value: Any) -> None:
    click.echo(msgspec.json.format(msgspec.json.encode(value)).decode())


def _progress(line: str) -> None:
    click.echo(line, err=True)


def _day(value: datetime | None) -> date | None:
    return value.date() if value is not None else None


DAY = click.DateTime(formats=["%Y-%m-%d"])
PROVINCE = click.option("--province", metavar="CODE", help="Two-digit province code.")


# -- the group ---------------------------------------------------------------------------------


@click.group()
def vaccination() -> None:
    """Vaccination: products, lots and stock, bulk registration, certificates, figures, FHIR export.

    Reminders for the next dose are a scheduled job: `phongdich jobs run vaccination.reminders`.
    """


# -- registry ----------------------------------------------------------------------------------


@vaccination.group()
def products() -> None:
    """Vaccine products and their effective-dated rules."""


@products.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def products_list(obj: Any, as_json: bool) -> None:
    """Every product, with each rule and the date it took effect."""
    from plugins.vaccination import registry

    views = _run(obj, lambda _p: registry.list_products())
    if as_json:
        _echo_json(views)
        return
    for view in views:
        click.echo(f"{view.code}  {view.name} ({view.manufacturer})")
        for rule in view.rules:
            interval = f"{rule.min_interval_days}-{rule.max_interval_days or '…'} days apart"
            ages = f"ages {rule.min_age_years}-{rule.max_age_years if rule.max_age_years is not None else '…'}"
            click.echo(
                f"    from {rule.effective_from}: {rule.primary_doses} dose(s) {interval}, {ages}, "
                f"{rule.booster_doses} booster(s)"
            )
    click.echo(f"{len(views)} product(s).")


@vaccination.group()
def sites() -> None:
    """Vaccination sites."""


@sites.command("list")
@PROVINCE
@click.pass_obj
def sites_list(obj: Any, province: str | None) -> None:
    """Open sites, optionally of one province."""
    from plugins.vaccination import registry

    views = _run(obj, lambda _p: registry.list_sites(province))
    for view in views:
        click.echo(f"{view.id}  {view.province}  {view.name}")
    click.echo(f"{len(views)} site(s).")


@vaccination.group()
def lots() -> None:
    """Lots of a product and the stock of each lot at sites."""


@lots.command("add")
@click.option("--product", "product_code", required=True, help="Product code (see `products list`).")
@click.option("--number", required=True, help="The lot number printed on the box.")
@click.option("--expires", "expires_on", required=True, type=DAY, help="Expiry date, YYYY-MM-DD.")
@click.option("--doses-per-vial", required=True, type=int, help="Doses drawn from one vial (1 to 50).")
@click.pass_obj
def lots_add(obj: Any, product_code: str, number: str, expires_on: datetime, doses_per_vial: int) -> None:
    """Register a lot of a product."""
    from plugins.vaccination import registry
    from plugins.vaccination.schemas import LotBody

    body = _convert(
        {
            "product_code": product_code,
            "number": number,
            "expires_on": expires_on.date().isoformat(),
            "doses_per_vial": doses_per_vial,
        },
        LotBody,
    )
    lot = _run(obj, lambda _p: registry.create_lot(body))
    click.echo(f"Lot {lot.number} of {lot.product}: expires {lot.expires_on}, {lot.doses_per_vial} dose(s) per vial.")


@lots.command("receive")
@click.option("--site", "site_id", required=True)
@click.option("--product", "product_code", required=True)
@click.option("--lot", "lot_number", required=True)
@click.option("--doses", type=int, help="Doses received.")
@click.option("--vials", type=int, help="Vials received (counted as vials x the lot's doses per vial).")
@click.pass_obj
def lots_receive(
    obj: Any, site_id: str, product_code: str, lot_number: str, doses: int | None, vials: int | None
) -> None:
    """Add a delivery of a lot to a site's stock, in doses or in vials."""
    from plugins.vaccination import registry
    from plugins.vaccination.schemas import StockBody

    body = _convert({"product_code": product_code, "lot_number": lot_number, "doses": doses, "vials": vials}, StockBody)
    stock = _run(obj, lambda p: registry.receive_stock(p, operator(), site_id, body))
    click.echo(
        f"{site_id} now holds {stock.available} dose(s) of lot {stock.lot_number} "
        f"({stock.vials_available} whole vial(s) of {stock.doses_per_vial}); received {stock.received}, "
        f"used {stock.used}."
    )


@lots.command("list")
@click.option("--site", "site_id", required=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def lots_list(obj: Any, site_id: str, as_json: bool) -> None:
    """The lots at a site and their stock, in doses and in whole vials."""
    from plugins.vaccination import registry

    views = _run(obj, lambda p: registry.site_stock(p, operator(), site_id))
    if as_json:
        _echo_json(views)
        return
    for view in views:
        state = "  EXPIRED" if view.expired else ""
        click.echo(
            f"{view.product}  lot {view.lot_number}  expires {view.expires_on}  {view.available} dose(s) left "
            f"= {view.vials_available} vial(s) of {view.doses_per_vial}  (received {view.received}, "
            f"used {view.used}){state}"
        )
    click.echo(f"{len(views)} lot(s) at {site_id}.")


# -- people ------------------------------------------------------------------------------------


@vaccination.group()
def people() -> None:
    """People registered for vaccination."""


@people.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--province",
    metavar="CODE",
    help="Act as a province admin of CODE only: rows of another province are refused (default: any province).",
)
@click.option("--dry-run", is_flag=True, help="Check every row and report, without storing anything.")
@click.option(
    "--report",
    type=click.Path(dir_okay=False, writable=True),
    help="Also write the per-row report as CSV (row, outcome, person_id, field, message).",
)
@click.pass_obj
def people_import(obj: Any, path: str, province: str | None, dry_run: bool, report: str | None) -> None:
    """Register people from a CSV file, as an organisation does in bulk: all rows or none.

    Columns: full_name, birth_date (YYYY-MM-DD), sex (female/male/other), id_number, phone (optional),
    province (2 digits), priority_group. A row whose ID number is already registered is left as it is.
    """
    from plugins.vaccination import people as service

    if province is not None and not (len(province) == 2 and province.isdigit()):
        raise Refused(f"--province: {province!r} is not a two-digit province code", "See `phongdich units list`.")
    raw = Path(path).read_bytes()
    _progress(f"Reading {path} ({len(raw)} bytes); checking every row before anything is stored...")
    principal = operator(province)
    result = _run(obj, lambda p: service.bulk_register(p, principal, raw, dry_run=dry_run))
    if report:
        rows = [(e.row, "error", "", e.field, e.message) for e in result.errors]
        rows += [(r.row, r.outcome, str(r.person_id), "", "") for r in result.results]
        Path(report).write_bytes(exports.to_csv(("row", "outcome", "person_id", "field", "message"), sorted(rows)))
        _progress(f"Per-row report written to {report}.")
    if result.errors:
        for error in result.errors:
            click.echo(f"  row {error.row} [{error.field}]: {error.message}", err=True)
        bad = len({e.row for e in result.errors})
        raise Refused(
            f"file: {bad} of {result.rows} row(s) have errors; nothing was stored.",
            "Fix those rows and run the command again (--dry-run checks a file without storing it).",
        )
    if not result.stored:
        click.echo(f"Dry run: all {result.rows} row(s) are valid; nothing was stored.")
        return
    click.echo(
        f"Stored {result.rows} row(s): {result.created} registered, {result.existing} already registered, "
        f"{result.probable_duplicates} probable duplicate(s) to review."
    )


# -- certificates ------------------------------------------------------------------------------


@vaccination.group()
def certificates() -> None:
    """Vaccination certificates."""


@certificates.command("revoke")
@click.argument("certificate")
@click.option("--reason", required=True, help="Why (10 to 1000 characters); kept with the revocation and audited.")
@click.pass_obj
def certificates_revoke(obj: Any, certificate: str, reason: str) -> None:
    """Revoke one certificate, by its UVCI or id; it joins the published revocation list."""
    from plugins.vaccination import certificates as service
    from plugins.vaccination.schemas import RevokeBody
    from plugins.vaccination.tables import Certificate

    body = _convert({"reason": reason}, RevokeBody)

    async def work(platform: Any) -> Any:
        row = await Certificate.select(Certificate.id).where(Certificate.identifier == certificate).first()
        if row is None:
            try:
                certificate_id = uuid.UUID(certificate)
            except ValueError as exc:
                raise NotFound(f"certificate_id: no certificate with the UVCI {certificate!r}") from exc
        else:
            certificate_id = row["id"]
        return await service.revoke(platform, operator(), certificate_id, body.reason)

    view = _run(obj, work)
    click.echo(f"Revoked {view.identifier}: {view.revocation_reason}")
    click.echo("Verifiers refuse it once they fetch /api/vaccination/revocations.")


# -- figures and export ------------------------------------------------------------------------


@vaccination.command("figures")
@PROVINCE
@click.option("--doses-by", type=click.Choice(["day", "province", "product"]), default="province", show_default=True)
@click.option("--coverage-by", type=click.Choice(["age_band", "priority_group"]), default="age_band", show_default=True)
@click.option("--since", type=DAY, help="Doses from this day, YYYY-MM-DD.")
@click.option("--until", type=DAY, help="Doses up to this day, YYYY-MM-DD.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output: {doses, coverage, stock}.")
@click.pass_obj
def figures_command(
    obj: Any,
    province: str | None,
    doses_by: str,
    coverage_by: str,
    since: datetime | None,
    until: datetime | None,
    as_json: bool,
) -> None:
    """The public figures: doses given, coverage, and stock (aggregates only, never a person)."""
    from plugins.vaccination import figures

    if province is not None and not (len(province) == 2 and province.isdigit()):
        raise Refused(f"--province: {province!r} is not a two-digit province code", "See `phongdich units list`.")

    async def work(_platform: Any) -> dict[str, Any]:
        return {
            "doses": await figures.doses(doses_by, province=province, since=_day(since), until=_day(until)),
            "coverage": await figures.coverage(coverage_by, province=province),
            "stock": await figures.stock(province=province),
        }

    shown = _run(obj, work)
    if as_json:
        _echo_json(shown)
        return
    doses, coverage, stock = shown["doses"], shown["coverage"], shown["stock"]
    click.echo(f"Doses by {doses_by}: {doses.total}")
    for row in doses.rows:
        click.echo(f"  {row.key:12} {row.doses:>10}")
    click.echo(f"Coverage by {coverage_by}: registered / at least one dose / primary series / boosted")
    for row in coverage.rows:
        click.echo(
            f"  {row.key:20} {row.registered:>8} {row.at_least_one_dose:>8} {row.primary_complete:>8} {row.boosted:>8}"
        )
    click.echo("Stock (doses): province, product, received / used / left / expired unused")
    for row in stock.rows:
        click.echo(
            f"  {row.province} {row.product:16} {row.received:>8} {row.used:>8} {row.available:>8} "
            f"{row.expired_unused:>8}"
        )


@vaccination.command("export-fhir")
@PROVINCE
@click.option("--since", type=DAY, help="Doses from this day, YYYY-MM-DD.")
@click.option("--until", type=DAY, help="Doses up to this day, YYYY-MM-DD.")
@click.option(
    "--limit", type=click.IntRange(1, 50_000), default=5000, show_default=True, help="At most this many doses."
)
@click.option("--output", type=click.Path(dir_okay=False, writable=True), help="Write here instead of standard output.")
@click.pass_obj
def export_fhir(
    obj: Any, province: str | None, since: datetime | None, until: datetime | None, limit: int, output: str | None
) -> None:
    """A FHIR R4 Bundle of Immunization and Patient resources (each person read is audited)."""
    from plugins.vaccination import fhir

    if province is not None and not (len(province) == 2 and province.isdigit()):
        raise Refused(f"--province: {province!r} is not a two-digit province code", "See `phongdich units list`.")
    if since and until and until < since:
        raise Refused("--until: must not be before --since")
    bundle = _run(
        obj,
        lambda p: fhir.export(p, operator(), province=province, since=_day(since), until=_day(until), limit=limit),
    )
    text = msgspec.json.encode(bundle)
    if output:
        Path(output).write_bytes(text)
    else:
        click.echo(text.decode())
    kinds = [entry["resource"]["resourceType"] for entry in bundle["entry"]]
    _progress(
        f"Exported {kinds.count('Immunization')} Immunization and {kinds.count('Patient')} Patient resource(s)"
        + (f" to {output}" if output else "")
        + f"; the read is audited as {operator().id}."
    )
    if kinds.count("Immunization") == limit:
        _progress(f"Stopped at --limit {limit}: export again with a later --since, or a higher --limit.")
