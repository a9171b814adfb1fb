"""Benchmarks of issue #5: certificate verification and issuance, and booking under contention.

* verification: real ``HC1:`` certificates, issued by the plugin when doses
  are recorded, are checked with ``core.dcc.verify`` (Base45, zlib, CBOR,
  COSE_Sign1, ES256 against the trust list, validity dates) in one thread,
  ``--verify-iterations`` per round. Also timed: the plugin's
  ``certificates.verify`` (adds the revocation lookup in the database) and
  ``POST /api/vaccination/verify`` through the whole app in process (no
  network, no server). Target: 2,000 verifications/s on one core.
* issuance: ``EuDigitalCovidCertificate.issue`` (the format the plugin
  registers: UVCI, hcert dict, CWT claims, CBOR, ES256 signature, zlib,
  Base45, with the key store's freshness check), ``core.dcc.encode`` alone,
  then ``certificates.issue_for_dose`` in a transaction (the reads of dose,
  person, product and rule, the format hook, the duplicate check and the
  row insert: what recording a dose does per certificate), and QR rendering
  (``certificates.qr_code``, SVG and PNG), which is a separate step done
  only when a QR code is asked for. Target: 500 issuances/s with the
  database write. ``issue_for_dose`` is timed one at a time and with
  ``ISSUERS`` (8) concurrent issuers, each issuance its own committed
  transaction, and so is the baseline it is compared with in the same run:
  the same issuance with its statements built by Piccolo, as it was done
  before the raw-SQL path (the same certificates, signed by
  ``certificates.certify``). ``--issuance-only`` times just that.
* booking: ``--people`` distinct eligible people (1,000) ask at once, with
  ``asyncio.gather`` on one event loop, for a session of ``--capacity``
  places (100), through ``booking.book``, the function ``POST
  /api/vaccination/bookings`` calls. Each round checks exactly ``capacity``
  bookings, ``people - capacity`` "session full" answers, the session's
  counter, and that every answer matches the stored rows (a failure whose
  booking was stored, or a success without one, is counted and reported
  in "answer ≠ database"); any miss fails the run after the report.

Each database is made for the run and dropped at the end: PostgreSQL
(``--database``, a database named ``phongdich_test_<pid>_...``) and SQLite
(a temporary file). Run from the repository root::

    python -m bench.vaccination            # about 6 minutes, most of it SQLite booking
    python -m bench.vaccination --quick    # one short round of each
    python -m bench.vaccination --issuance-only --only postgresql   # issuance with the database
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import logging
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench import _report
from bench._database import DEFAULT_SERVER
from bench._report import median, progress, spread, table
from core import Principal, clock, dcc
from core.platform import Platform
from core.testing import TestDatabases, http_client, staff_headers, started_platform
from plugins.vaccination import booking, certificates, doses, localtime
from plugins.vaccination.schemas import BookingBody, DoseBody
from plugins.vaccination.tables import Booking, Certificate, Person, SiteSession

PROVINCE, SITE, PRODUCT, LOT = "01", "bench-site-1", "COMIRNATY", "FD1234"
NO_SCREENING = {
    "anaphylaxis_previous_dose": False,
    "allergy_to_component": False,
    "acute_illness": False,
    "covid_last_6_months": False,
    "pregnant": False,
    "immunocompromised_or_anticoagulated": False,
}
# Concurrent issuers in the second issuance measurement (each its own transaction, as requests are).
ISSUERS = 8
TARGET_ISSUANCE = 500  # issuances per second with the database write (issue #5)
ADMIN = Principal(id="staff:bench-admin", kind="staff", roles=frozenset({"national_admin"}))
VACCINATOR = Principal(
    id="staff:bench-vaccinator", kind="staff", roles=frozenset({"vaccinator"}), province=PROVINCE, site=SITE
)
_people = itertools.count(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.vaccination", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short round of each")
    parser.add_argument("--rounds", type=int, help="rounds of each measurement (default 3, quick 1)")
    parser.add_argument("--certificates", type=int, default=200, help="doses recorded, so certificates issued")
    parser.add_argument("--verify-iterations", type=int, help="verifications per round (default 5,000)")
    parser.add_argument("--issue-iterations", type=int, help="issuances per round (default 2,000)")
    parser.add_argument("--people", type=int, default=1000, help="concurrent booking requests")
    parser.add_argument("--capacity", type=int, default=100, help="places in the contended session")
    parser.add_argument("--database", default=DEFAULT_SERVER, help="PostgreSQL server URL (a database is made)")
    parser.add_argument("--only", choices=("sqlite", "postgresql"), help="run on one database only")
    parser.add_argument(
        "--issuance-only",
        action="store_true",
        help="time only issue_for_dose with the database against its baseline (3 rounds, 300 doses by default)",
    )
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick and not args.issuance_only else 3)
    args.verify_iterations = args.verify_iterations or (500 if args.quick else 5000)
    args.issue_iterations = args.issue_iterations or (200 if args.quick else 2000)
    if args.issuance_only and "--certificates" not in (argv if argv is not None else sys.argv):
        args.certificates = 300
    elif args.quick:
        args.certificates = min(args.certificates, 50)
    asyncio.run(run(args))


async def run(args: argparse.Namespace) -> None:
    # The in-process client logs every request at INFO: thousands of lines that bury the progress.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    progress(f"bench.vaccination on {_report.machine()}")
    keys = Path(tempfile.mkdtemp(prefix="phongdich-bench-keys-"))
    dcc.KeyStore(keys).init(country="VN", organisation="Ministry of Health of Viet Nam")
    targets = [("SQLite", "sqlite"), ("PostgreSQL", args.database)]
    if args.only:
        targets = [t for t in targets if (t[1] == "sqlite") == (args.only == "sqlite")]
    try:
        cpu_rows, db_rows, issuance_rows, booking_rows = await _measure(args, keys, targets)
    finally:
        shutil.rmtree(keys, ignore_errors=True)
    _summary(args, cpu_rows, db_rows, issuance_rows, booking_rows)


async def _measure(
    args: argparse.Namespace, keys: Path, targets: list[tuple[str, str]]
) -> tuple[list[list[object]], list[list[object]], list[list[object]], list[list[object]]]:
    cpu_rows: list[list[object]] = []
    db_rows: list[list[object]] = []
    issuance_rows: list[list[object]] = []
    booking_rows: list[list[object]] = []
    for index, (label, target) in enumerate(targets):
        databases = TestDatabases(target)
        try:
            platform = await started_platform(
                databases, plugin={"vaccination": {"keys_dir": str(keys)}}, log_level="error"
            )
            try:
                progress(f"{label}: database made and migrated ({platform.settings.database_url.split('@')[-1]})")
                await _setup(platform, stock=args.certificates + 10)
                dose_ids, texts = await _record_doses(platform, args.certificates)
                progress(f"{label}: {len(dose_ids)} doses recorded, {len(texts)} certificates issued")
                issuance_rows += await _issuance(platform, args, label, dose_ids)
                if not args.issuance_only:
                    if index == 0:  # in-memory work: the same on either database
                        cpu_rows = await _cpu_bound(platform, args, texts)
                    db_rows += await _database_bound(platform, args, label, texts)
                    booking_rows.append(await _contention(platform, args, label))
            finally:
                await platform.stop()
                await databases.drop(platform.settings.database_url)
        finally:
            await databases.close()
            progress(f"{label}: database dropped")
    return cpu_rows, db_rows, issuance_rows, booking_rows


def _summary(
    args: argparse.Namespace,
    cpu_rows: list[list[object]],
    db_rows: list[list[object]],
    issuance_rows: list[list[object]],
    booking_rows: list[list[object]],
) -> None:
    print(f"\nMeasured on {_report.machine()}; medians of {args.rounds} rounds.")
    print(
        table(
            f"### Issuance with the database write (`issue_for_dose`, each in its own committed transaction; "
            f"target {TARGET_ISSUANCE}/s)",
            [
                "database",
                "issuers at once",
                "issuances/s (median)",
                "range",
                "CPU µs each",
                "baseline/s (Piccolo-built statements)",
                "baseline range",
                "ratio",
                f"≥ {TARGET_ISSUANCE}/s",
            ],
            issuance_rows,
        )
    )
    if args.issuance_only:
        return
    headers = ["operation (one thread)", "per round", "ops/s (median)", "ops/s range", "µs each", "CPU µs each"]
    print(table("### Certificates, in memory", headers, cpu_rows))
    print(table("### Certificates, with the database", ["database", *headers], db_rows))
    print(
        table(
            f"### Booking: {args.people:,} concurrent requests for {args.capacity:,} places",
            [
                "database",
                "booked (per round)",
                "full",
                "failed",
                "answer ≠ database",
                "wall s (median)",
                "wall s range",
                "requests/s",
            ],
            booking_rows,
        )
    )
    for failure in getattr(args, "failures", []):
        print(f"\nFAILED: {failure}")
    if getattr(args, "failures", []):
        raise SystemExit(1)


# -- set-up -----------------------------------------------------------------------------------------


async def _setup(platform: Platform, *, stock: int) -> None:
    """Product, site, lot, stock and open priority groups, through the HTTP API as an operator would."""
    admin = await staff_headers(platform, ["national_admin"])
    province_admin = await staff_headers(platform, ["province_admin"], province=PROVINCE)
    product = {
        "code": PRODUCT,
        "name": "Comirnaty",
        "manufacturer": "BioNTech Manufacturing GmbH",
        "dcc_vp": "1119349007",
        "dcc_mp": "EU/1/20/1528",
        "dcc_ma": "ORG-100030215",
        "rule": {
            "effective_from": "2021-01-01",
            "primary_doses": 2,
            "min_interval_days": 21,
            "max_interval_days": 42,
            "min_age_years": 12,
            "booster_doses": 1,
            "booster_min_interval_days": 90,
        },
    }
    lot = {
        "number": LOT,
        "product_code": PRODUCT,
        "expires_on": (localtime.today() + timedelta(days=90)).isoformat(),
        "doses_per_vial": 6,
    }
    async with http_client(platform) as api:
        steps = [
            ("/api/vaccination/products", product, admin),
            (
                "/api/vaccination/sites",
                {"id": SITE, "name": "Trạm Y tế Dịch Vọng", "province": PROVINCE},
                province_admin,
            ),
            ("/api/vaccination/lots", lot, admin),
            (
                f"/api/vaccination/sites/{SITE}/stock",
                {"product_code": PRODUCT, "lot_number": LOT, "doses": stock},
                province_admin,
            ),
        ]
        for path, body, headers in steps:
            response = await api.post(path, json=body, headers=headers)
            assert response.status_code == 201, f"{path}: {response.text}"
        opened = await api.put(
            "/api/vaccination/priority-groups/open",
            json={"groups": ["health_workers", "elderly", "general"]},
            headers=admin,
        )
        assert opened.status_code == 200, opened.text


async def _add_people(count: int) -> list[uuid.UUID]:
    """``count`` distinct registered people, eligible for a first dose (untimed: registration is not measured)."""
    now = clock.now()
    rows = []
    for _ in range(count):
        n = next(_people)
        rows.append(
            Person(
                id=uuid.uuid4(),
                subject_id=f"bench:{n}",
                account_holder=True,
                full_name=f"Nguyễn Thị Bench {n}",
                name_key=f"nguyen thi bench {n}",
                birth_date=localtime.today().replace(year=1980),
                birth_year=1980,
                sex="female",
                id_number=f"{800_000_000_000 + n}",
                phone=f"09{n % 100_000_000:08d}",
                province=PROVINCE,
                priority_group="general",
                channel="self",
                registered_by="bench",
                created_at=now,
            )
        )
    for start in range(0, len(rows), 500):
        await Person.insert(*rows[start : start + 500])
    return [row.id for row in rows]


async def _record_doses(platform: Platform, count: int) -> tuple[list[Any], list[str]]:
    """Walk-in doses through ``doses.record``, which issues each one's certificate."""
    dose_ids, texts = [], []
    for person_id in await _add_people(count):
        recorded = await doses.record(
            platform,
            VACCINATOR,
            DoseBody(lot_number=LOT, screening=NO_SCREENING, person_id=person_id, product_code=PRODUCT),
        )
        dose_ids.append(recorded.dose.id)
        texts += [c.content for c in recorded.certificates if c.format == certificates.EU_DCC]
    assert len(texts) == count, f"expected {count} EU certificates, got {len(texts)}"
    return dose_ids, texts


# -- timing -----------------------------------------------------------------------------------------


def _time_sync(action: Callable[[int], object], iterations: int) -> tuple[float, float]:
    """Wall and CPU seconds for ``iterations`` calls, with the garbage collector paused."""
    gc.collect()
    gc.disable()
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(iterations):
            action(i)
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        gc.enable()


async def _time_async(action: Callable[[int], Awaitable[object]], iterations: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(iterations):
        await action(i)
    return time.perf_counter() - wall, time.process_time() - cpu


async def _time_concurrent(
    action: Callable[[int], Awaitable[object]], iterations: int, workers: int
) -> tuple[float, float]:
    """``iterations`` actions shared by ``workers`` concurrent tasks (as several requests at once would be)."""
    indices = iter(range(iterations))

    async def worker() -> None:
        for i in indices:
            await action(i)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return time.perf_counter() - wall, time.process_time() - cpu


def _row(label: str, iterations: int, rounds: list[tuple[float, float]]) -> list[object]:
    rates = [iterations / wall for wall, _cpu in rounds]
    wall_us = median([wall for wall, _cpu in rounds]) / iterations * 1e6
    cpu_us = median([cpu for _wall, cpu in rounds]) / iterations * 1e6
    return [label, iterations, median(rates), spread(rates), wall_us, cpu_us]


async def _cpu_bound(platform: Platform, args: argparse.Namespace, texts: list[str]) -> list[list[object]]:
    trust = certificates.keystore(platform).trust_list()
    now = clock.now()
    n = len(texts)
    for text in texts:  # every certificate must verify before any is timed
        dcc.verify(text, trust, now=now)
    requests = [await _request(platform, i) for i in range(args.issue_iterations)]
    fmt = certificates.EuDigitalCovidCertificate()
    issued = fmt.issue(requests[0], platform)
    dcc.verify(issued.content, trust, now=clock.now())
    signer = certificates.keystore(platform).signer()
    health = dcc.verify(texts[0], trust, now=now).hcert
    expires = now + timedelta(days=365)
    qr_iterations = max(20, args.issue_iterations // 20)
    measured: dict[str, tuple[int, list[tuple[float, float]]]] = {}

    def add(label: str, iterations: int, action: Callable[[int], object]) -> None:
        measured.setdefault(label, (iterations, []))[1].append(_time_sync(action, iterations))

    for r in range(args.rounds):
        progress(f"in-memory round {r + 1}/{args.rounds}")
        add(
            "verify: `dcc.verify` (decode + ES256 + dates)",
            args.verify_iterations,
            lambda i: dcc.verify(texts[i % n], trust, now=now),
        )
        add(
            "verify: `dcc.decode` only (Base45, zlib, CBOR)", args.verify_iterations, lambda i: dcc.decode(texts[i % n])
        )
        add(
            "issue: `EuDigitalCovidCertificate.issue`",
            args.issue_iterations,
            lambda i: fmt.issue(requests[i], platform),
        )
        add(
            "issue: `dcc.encode` only (CBOR, ES256, zlib, Base45)",
            args.issue_iterations,
            lambda i: dcc.encode(health, signer=signer, issuer="VN", issued_at=now, expires_at=expires),
        )
        add(
            "QR code SVG: `certificates.qr_code(.., 'svg')`",
            qr_iterations,
            lambda i: certificates.qr_code(texts[i % n], "svg"),
        )
        add(
            "QR code PNG: `certificates.qr_code(.., 'png')`",
            qr_iterations,
            lambda i: certificates.qr_code(texts[i % n], "png"),
        )
    rows = [_row(label, iterations, rounds) for label, (iterations, rounds) in measured.items()]
    for row in rows:
        progress(f"  {row[0]}: {row[2]:,.0f}/s")
    return rows


async def _request(platform: Platform, index: int) -> certificates.CertificateRequest:
    """What ``issue_for_dose`` hands a format, for a distinct certificate each time."""
    settings = platform.plugin_config("vaccination")
    return certificates.CertificateRequest(
        certificate_id=uuid.uuid4(),
        dose_id=uuid.uuid4(),
        full_name=f"Nguyễn Thị Bench {index}",
        family_name="Nguyễn",
        given_name=f"Thị Bench {index}",
        birth_date=localtime.today().replace(year=1980),
        dose_number=1,
        series_doses=2,
        dose_type="primary",
        product_code=PRODUCT,
        product_name="Comirnaty",
        dcc_vp="1119349007",
        dcc_mp="EU/1/20/1528",
        dcc_ma="ORG-100030215",
        administered_on=localtime.today(),
        province=PROVINCE,
        site=SITE,
        country=settings.country,
        issuer=settings.issuer,
    )


async def _issuance(
    platform: Platform, args: argparse.Namespace, label: str, dose_ids: list[Any]
) -> list[list[object]]:
    """``issue_for_dose`` and its baseline, one at a time and ``ISSUERS`` at once, in alternating order."""
    n = len(dose_ids)
    timed: dict[tuple[str, int], list[tuple[float, float]]] = {}

    def issuing(issue: Callable[[Platform, Any], Awaitable[list[Any]]]) -> Callable[[int], Awaitable[None]]:
        async def action(i: int) -> None:
            async with platform.db.transaction():
                made = await issue(platform, dose_ids[i])
            assert len(made) == 1, "nothing issued: the old certificates were not cleared"

        return action

    ways = [("new", certificates.issue_for_dose), ("baseline", _issue_with_piccolo)]
    for r in range(args.rounds):
        progress(f"{label}: issuance round {r + 1}/{args.rounds}")
        for issuers in (1, ISSUERS):
            for name, issue in ways if r % 2 == 0 else ways[::-1]:  # alternate which goes first
                await Certificate.delete(force=True)  # untimed: lets every dose be issued again
                gc.collect()
                timed.setdefault((name, issuers), []).append(await _time_concurrent(issuing(issue), n, issuers))
    await Certificate.delete(force=True)
    rows: list[list[object]] = []
    for issuers in (1, ISSUERS):
        new_rates = [n / wall for wall, _cpu in timed["new", issuers]]
        base_rates = [n / wall for wall, _cpu in timed["baseline", issuers]]
        cpu_us = median([cpu for _wall, cpu in timed["new", issuers]]) / n * 1e6
        rate = median(new_rates)
        rows.append(
            [
                label,
                issuers,
                rate,
                spread(new_rates),
                cpu_us,
                median(base_rates),
                spread(base_rates),
                _report.ratio(rate, median(base_rates)),
                "yes" if rate >= TARGET_ISSUANCE else "NO",
            ]
        )
        progress(f"  {issuers} issuer(s): {rate:,.0f}/s, baseline {median(base_rates):,.0f}/s")
    return rows


async def _issue_with_piccolo(platform: Platform, dose_id: Any) -> list[Any]:
    """The baseline: ``issue_for_dose`` as it was before its raw SQL, the statements built by Piccolo
    (the read compiled by ``Database.execute``, the live-format check and the insert through the ORM).
    The certificates are the same ones, signed by ``certificates.certify``."""
    dose = (await platform.db.execute(certificates.ISSUE_READ, str(dose_id)))[0]
    live: set[str] = set()
    if dose["live_certificates"]:
        live = {
            row["format"]
            for row in await Certificate.select(Certificate.format).where(
                (Certificate.dose == dose_id)
                & (Certificate.dose_version == dose["version"])
                & Certificate.revoked_at.is_null()
            )
        }
    stored, issued = await certificates.certify(platform, uuid.UUID(str(dose_id)), dose, skip=live)
    if stored:
        await Certificate.insert(
            *(Certificate(**dict(zip(certificates.STORED_COLUMNS, row, strict=True))) for row in stored)
        )
    return issued


async def _database_bound(
    platform: Platform, args: argparse.Namespace, label: str, texts: list[str]
) -> list[list[object]]:
    n = len(texts)
    http_iterations = max(50, n)
    measured: dict[str, tuple[int, list[tuple[float, float]]]] = {}

    async def plugin_verify(i: int) -> None:
        view = await certificates.verify(platform, texts[i % n])
        assert view.valid, view.reason

    async with http_client(platform) as api:

        async def http_verify(i: int) -> None:
            response = await api.post("/api/vaccination/verify", json={"hc1": texts[i % n]})
            assert response.status_code == 200 and response.json()["valid"], response.text

        for r in range(args.rounds):
            progress(f"{label}: database round {r + 1}/{args.rounds}")
            for name, iterations, action in (
                ("verify: `certificates.verify` (+ revocation lookup)", n, plugin_verify),
                ("verify: `POST /api/vaccination/verify` in process", http_iterations, http_verify),
            ):
                measured.setdefault(name, (iterations, []))[1].append(await _time_async(action, iterations))
    rows = [[label, *_row(name, iterations, rounds)] for name, (iterations, rounds) in measured.items()]
    for row in rows:
        progress(f"  {row[1]}: {row[3]:,.0f}/s")
    return rows


async def _contention(platform: Platform, args: argparse.Namespace, label: str) -> list[object]:
    walls: list[float] = []
    failures: list[str] = []
    counts: list[tuple[int, int, int, int]] = []
    for r in range(args.rounds):
        session_id = await _new_session(platform, args.capacity, day_offset=r)
        people = await _add_people(args.people)

        async def attempt(person_id: uuid.UUID, session: uuid.UUID = session_id) -> tuple[uuid.UUID, str]:
            try:
                outcome = await booking.book(
                    platform, ADMIN, BookingBody(person_id=person_id, session_id=session, screening=NO_SCREENING)
                )
            except booking.SessionFull:
                return person_id, "full"
            except Exception as exc:  # counted and shown: a request that neither booked nor was told "full"
                return person_id, f"error: {type(exc).__name__}: {exc}"
            return person_id, "booked" if outcome.booking is not None else "error: no booking in the answer"

        gc.collect()
        started = time.perf_counter()
        outcomes = dict(await asyncio.gather(*(attempt(p) for p in people)))
        wall = time.perf_counter() - started
        answers = list(outcomes.values())
        booked, full = answers.count("booked"), answers.count("full")
        errors = [a for a in answers if a.startswith("error")]
        stored = {row["person"] for row in await Booking.select(Booking.person).where(Booking.session == session_id)}
        counter = await SiteSession.select(SiteSession.booked).where(SiteSession.id == session_id).first()
        # Every answer must match what was stored: "booked" with a row, anything else without one.
        mismatched = sorted(
            f"{answer} (stored)" if person in stored else f"{answer} (not stored)"
            for person, answer in outcomes.items()
            if (answer == "booked") != (person in stored)
        )
        progress(
            f"{label}: booking round {r + 1}/{args.rounds}: {booked} booked, {full} full, "
            f"{len(errors)} failed, {len(mismatched)} answers that disagree with the database in {wall:.2f} s"
        )
        where = f"{label} round {r + 1}"
        if len(stored) > args.capacity:
            failures.append(f"{where}: OVERBOOKED, {len(stored)} bookings stored for {args.capacity} places")
        if counter is None or counter["booked"] != len(stored):
            failures.append(f"{where}: the session's counter says {counter} for {len(stored)} stored bookings")
        if mismatched:
            failures.append(f"{where}: {len(mismatched)} answers disagree with the database, e.g. {mismatched[0]}")
        if errors:
            failures.append(f"{where}: {len(errors)} x {sorted(set(errors))[0]}")
        elif (booked, full) != (args.capacity, args.people - args.capacity):
            failures.append(f"{where}: {booked} booked and {full} full")
        counts.append((booked, full, len(errors), len(mismatched)))
        walls.append(wall)
    args.failures = [*getattr(args, "failures", []), *failures]
    columns = ["/".join(str(c[i]) for c in counts) for i in range(4)]
    return [label, *columns, median(walls), spread(walls), args.people / median(walls)]


async def _new_session(platform: Platform, capacity: int, *, day_offset: int) -> uuid.UUID:
    headers = await staff_headers(platform, ["province_admin"], province=PROVINCE)
    async with http_client(platform) as api:
        response = await api.post(
            f"/api/vaccination/sites/{SITE}/sessions",
            json={
                "day": (localtime.today() + timedelta(days=1 + day_offset)).isoformat(),
                "starts_at": "08:00",
                "ends_at": "11:30",
                "product_code": PRODUCT,
                "capacity": capacity,
            },
            headers=headers,
        )
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


if __name__ == "__main__":
    main()
