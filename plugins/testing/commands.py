"""``phongdich testing ...``: the testing platform from the command line.

Commands act as the operator at the console, a national principal named
after the system user, so their reads are audited like any other.
"""

from __future__ import annotations

import getpass
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
import msgspec

from core import InvalidInput, NotFound, Principal, clock
from plugins.testing import imports, places, pooling, reception, results, samples, turnaround
from plugins.testing.catalogue import known_test_types
from plugins.testing.identifiers import parse_label
from plugins.testing.schemas import CorrectionIn, LabelsIn, LabIn, PersonIn, PoolIn, SampleIn, SiteIn


def register(cli: click.Group) -> None:
    cli.add_command(testing)


def operator() -> Principal:
    """The console operator: national scope, named after the system user for the audit trail."""
    return Principal(id=f"cli:{getpass.getuser()}", kind="service", roles=frozenset({"national_admin"}))


def _run(obj: Any, work: Any) -> Any:
    """Run ``work(platform)``; problems become a message and exit status 1, each upload row listed."""

    async def guarded(platform: Any) -> Any:
        try:
            return await work(platform)
        except results.UploadRejected as exc:
            for error in exc.errors:
                where = f"row {error.row}" + (f" [{error.column}]" if error.column else "")
                click.echo(f"  {where}: {error.message}", err=True)
            raise
        except NotFound as exc:
            raise click.ClickException(str(exc)) from exc

    return obj.run(guarded)


def _echo_json(value: Any) -> None:
    click.echo(msgspec.json.format(msgspec.json.encode(value)).decode())


@click.group()
def testing() -> None:
    """Testing: sites, labs, samples, pools, results and turnaround."""


# -- sites and labs -----------------------------------------------------------------------------


@testing.group()
def sites() -> None:
    """Collection sites."""


@sites.command("add")
@click.option("--code", required=True, help="The site id that staff accounts name (e.g. clinic-hn-1).")
@click.option("--name", required=True)
@click.option("--province", required=True, help="Two-digit province code.")
@click.option("--pool-size", type=click.IntRange(1, 50), help="Samples per pool (default: pool_size_default).")
@click.pass_obj
def sites_add(obj: Any, code: str, name: str, province: str, pool_size: int | None) -> None:
    data = _convert({"code": code, "name": name, "province": province, "pool_size_max": pool_size}, SiteIn)
    site = _run(obj, lambda p: places.create_site(p, operator(), data))
    click.echo(f"Site {site.code} ({site.name}) in province {site.province}, pools of up to {site.pool_size_max}.")


@sites.command("list")
@click.option("--province")
@click.pass_obj
def sites_list(obj: Any, province: str | None) -> None:
    for site in _run(obj, lambda _p: places.list_sites(province)):
        state = "" if site.active else " (closed)"
        click.echo(f"{site.code}  {site.province}  pools<={site.pool_size_max}  {site.name}{state}")


@testing.group()
def labs() -> None:
    """Laboratories."""


@labs.command("add")
@click.option("--code", required=True, help="The lab id that lab accounts and keys name (e.g. lab-hn-1).")
@click.option("--name", required=True)
@click.option("--province", required=True)
@click.pass_obj
def labs_add(obj: Any, code: str, name: str, province: str) -> None:
    data = _convert({"code": code, "name": name, "province": province}, LabIn)
    lab = _run(obj, lambda p: places.create_lab(p, operator(), data))
    click.echo(f"Lab {lab.code} ({lab.name}) in province {lab.province}.")


@labs.command("list")
@click.option("--province")
@click.pass_obj
def labs_list(obj: Any, province: str | None) -> None:
    for lab in _run(obj, lambda _p: places.list_labs(province)):
        click.echo(f"{lab.code}  {lab.province}  {lab.name}")


@testing.command("test-types")
@click.pass_obj
def test_types(obj: Any) -> None:
    """Test types and their LOINC codes."""
    for test_type in sorted(known_test_types(obj.platform).values(), key=lambda t: t.code):
        pooled = "poolable" if test_type.poolable else "not pooled"
        click.echo(f"{test_type.code}  LOINC {test_type.loinc}  {test_type.method}, {pooled}  {test_type.name_en}")


@testing.command("labels")
@click.option("--site", required=True)
@click.option("--kind", type=click.Choice(["sample", "pool"]), default="sample", show_default=True)
@click.option("--count", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.pass_obj
def labels(obj: Any, site: str, kind: str, count: int) -> None:
    """Issue pre-printed labels to a site, one per line."""
    data = _convert({"site": site, "kind": kind, "count": count}, LabelsIn)
    issued = _run(obj, lambda p: places.issue_labels(p, operator(), data))
    click.echo("\n".join(issued.labels))


# -- samples, pools, lab ------------------------------------------------------------------------


@testing.group("samples")
def samples_group() -> None:
    """Samples."""


@samples_group.command("register")
@click.option("--site", required=True)
@click.option("--name", "full_name", required=True)
@click.option("--dob", "date_of_birth", required=True, help="Date of birth, YYYY-MM-DD.")
@click.option("--phone", required=True)
@click.option("--id-number")
@click.option("--test-type", default="rt-pcr", show_default=True)
@click.option("--receipt", type=click.Path(dir_okay=False), help="Write the receipt (SVG) to this file.")
@click.pass_obj
def samples_register(
    obj: Any,
    site: str,
    full_name: str,
    date_of_birth: str,
    phone: str,
    id_number: str | None,
    test_type: str,
    receipt: str | None,
) -> None:
    """Register a walk-in's sample; prints the label and the result code (shown once)."""
    person = {"full_name": full_name, "date_of_birth": date_of_birth, "phone": phone, "id_number": id_number}
    _convert(person, PersonIn)
    data = _convert({"site": site, "test_type": test_type, "person": person}, SampleIn)
    issued = _run(obj, lambda p: samples.register_sample(p, operator(), data))
    click.echo(f"Sample {issued.sample_id}\nResult code {issued.result_code}\n{issued.lookup_url}")
    if receipt:
        Path(receipt).write_text(issued.receipt_svg, encoding="utf-8")
        click.echo(f"Receipt written to {receipt}.")


@samples_group.command("show")
@click.argument("sample_id")
@click.pass_obj
def samples_show(obj: Any, sample_id: str) -> None:
    """Everything about a sample, every result version included (audited)."""
    _echo_json(_run(obj, lambda p: samples.sample_view(p, operator(), sample_id)))


@testing.command("pool")
@click.option("--site", required=True)
@click.argument("sample_labels", nargs=-1, required=True)
@click.pass_obj
def pool(obj: Any, site: str, sample_labels: tuple[str, ...]) -> None:
    """Put samples of a site in a new pool; prints the pool's label."""
    data = _convert({"site": site, "samples": list(sample_labels)}, PoolIn)
    made = _run(obj, lambda p: pooling.create_pool(p, operator(), data))
    click.echo(f"Pool {made.id} with {made.size} sample(s).")


@testing.command("receive")
@click.option("--lab", required=True)
@click.argument("scanned", nargs=-1, required=True)
@click.pass_obj
def receive(obj: Any, lab: str, scanned: tuple[str, ...]) -> None:
    """Receive samples and pools at a lab by their labels (all or none)."""
    received = _run(obj, lambda p: reception.receive(p, operator(), list(scanned), lab))
    for item in received:
        click.echo(f"{item.label}: {item.kind}, {item.samples} sample(s) received")


@testing.command("result")
@click.option("--lab", required=True)
@click.option("--ct", "ct_value", type=click.FloatRange(0, 60))
@click.argument("label")
@click.argument("outcome", type=click.Choice(["negative", "positive", "invalid"]))
@click.pass_obj
def result(obj: Any, lab: str, ct_value: float | None, label: str, outcome: str) -> None:
    """Enter one result for a sample or a pool (a pool's result is deconvoluted)."""
    entry = results.ResultEntry(row=1, label=label, outcome=outcome, ct_value=ct_value)
    done = _run(obj, lambda p: results.enter_results(p, operator(), [entry], lab=lab, single=True))
    _report(done)


@testing.command("import")
@click.option("--lab", required=True)
@click.option("--format", "kind", type=click.Choice(["csv", "fhir"]), default="csv", show_default=True)
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.pass_obj
def import_results(obj: Any, lab: str, kind: str, path: str) -> None:
    """Import a results file (CSV: label,outcome[,ct_value]; or a FHIR R4 Bundle): all or nothing."""
    raw = Path(path).read_bytes()
    reader = imports.import_csv if kind == "csv" else imports.import_fhir_bundle
    done = _run(obj, lambda p: reader(p, operator(), raw, lab=lab))
    _report(done)


@testing.command("correct")
@click.option("--reason", required=True)
@click.option("--ct", "ct_value", type=click.FloatRange(0, 60))
@click.argument("label")
@click.argument("outcome", type=click.Choice(["negative", "positive", "invalid"]))
@click.pass_obj
def correct(obj: Any, reason: str, ct_value: float | None, label: str, outcome: str) -> None:
    """Correct a released result of a sample or a pool (its members are derived again); people are told again."""
    data = _convert({"outcome": outcome, "reason": reason, "ct_value": ct_value}, CorrectionIn)
    try:
        kind, label = parse_label(label, "label")
    except InvalidInput as exc:
        raise click.ClickException(str(exc)) from exc
    if kind == "sample":
        versions = _run(obj, lambda p: results.correct_result(p, operator(), label, data))
        click.echo(f"{label} is now {versions[-1].outcome} (version {versions[-1].version}).")
        return
    done = _run(obj, lambda p: results.correct_pool(p, operator(), label, data))
    click.echo(f"Pool {label} is now {done.pool.status} (version {done.pool.result_version}).")
    if done.withdrawn:
        click.echo(f"Negative withdrawn and retest ordered: {', '.join(done.withdrawn)}")
    if done.released:
        click.echo(f"Negative released, retest cancelled: {', '.join(done.released)}")
    if done.kept:
        click.echo(f"Own result kept: {', '.join(done.kept)}")
    if done.revoked_certificates:
        click.echo(f"{done.revoked_certificates} certificate(s) revoked.")


# -- monitoring ------------------------------------------------------------------------------


@testing.command("overdue")
@click.pass_obj
def overdue(obj: Any) -> None:
    """Samples collected more than overdue_hours ago without a result."""
    rows = _run(obj, lambda p: turnaround.overdue(p, operator()))
    for row in rows:
        where = f"lab {row.lab}" if row.lab else f"site {row.site}"
        click.echo(f"{row.sample_id}  {row.status:9}  {where}  {row.hours_since_collection:.0f} h")
    click.echo(f"{len(rows)} overdue sample(s).")


@testing.command("turnaround")
@click.option("--group-by", type=click.Choice(["lab", "site"]), default="lab", show_default=True)
@click.option("--days", type=click.IntRange(1, 366), default=7, show_default=True)
@click.pass_obj
def turnaround_command(obj: Any, group_by: str, days: int) -> None:
    """Hours from collection to receipt to result: p50 / p90 / p95 per lab or site."""
    since = clock.now() - timedelta(days=days)
    view = _run(obj, lambda p: turnaround.turnaround(p, operator(), group_by=group_by, since=since))  # type: ignore[arg-type]
    for group in view.groups:
        whole = group.collection_to_result
        click.echo(
            f"{group.key}: {group.samples} sample(s), collection to result p50 {whole.p50} h, "
            f"p90 {whole.p90} h, p95 {whole.p95} h"
        )
    if not view.groups:
        click.echo("No results in the period.")


def _report(done: Any) -> None:
    click.echo(f"{len(done.released)} result(s) released, {len(done.retests)} retest(s) ordered.")
    if done.reported_positive:
        click.echo(f"Reported positive to the province: {', '.join(done.reported_positive)}")


def _convert(values: dict[str, Any], struct: type[Any]) -> Any:
    try:
        return msgspec.convert({k: v for k, v in values.items() if v is not None}, struct, strict=False)
    except msgspec.ValidationError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
