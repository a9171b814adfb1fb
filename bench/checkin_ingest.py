"""Benchmark: check-in ingest on PostgreSQL, the whole pipeline against a bare INSERT endpoint (issue #3).

Issue #3 asks that check-ins through the whole pipeline reach at least 1.5x
the requests/s of a bare Litestar endpoint doing one asyncpg INSERT per
request, both measured in one run on this machine with the same load
generator. Two apps are served side by side, same server, same worker count,
same pinning:

* ``pipeline``: the platform's app (``create_app``, as ``phongdich serve``
  builds it) answering the plugin's real ``POST /api/checkin/visits``:
  identity by the citizen's bearer token, the guard (``authorize`` vote,
  consent), the venue code's signature and row, declaration validation,
  the per-person rate limit, then the visit and its declaration stored
  through ``platform.group_commit`` and acknowledged after the commit.
  ``--route scan`` loads ``POST /api/checkin/scans`` instead: a venue
  device's API key, a person's signed personal code, and an audit record
  written with each visit;
* ``bare``: one Litestar handler that decodes the same body into a msgspec
  Struct and does one asyncpg ``INSERT`` (autocommit) into a table shaped
  like ``checkin_visit`` (same columns, indexes and daily partitions), from
  a pool as large as the platform's.

The requests rotate over many citizens (``--citizens``, real bearer tokens)
and venues (``--venues``, real signed codes), so that no request is refused
by the per-person hourly limit or folded into the "same visit within 10
minutes" rule: request ``k`` checks citizen ``k mod C`` in at venue
``(k mod C + k div C) mod V``, and ``k`` keeps counting across wrk runs (a
small state file). Afterwards the stored rows are counted against the
answered requests.

By default both sides are measured at 16, 32, 64, 128, 256 and 512
connections (``--sweep``): a group commit gains with concurrency, where one
INSERT per request does not, so one level cannot tell the two apart. The report gives
the ratio at each level and each side at its best (its requests/s at the
number of connections that suited it most), and says at which levels the
pipeline reaches 1.5x.

    python -m bench.checkin_ingest                  # full sweep, about 6 minutes
    python -m bench.checkin_ingest --quick          # smoke run: 16 and 64 connections, about 30 seconds
    python -m bench.checkin_ingest --connections 32 # one level only, about 70 seconds
    python -m bench.checkin_ingest --connections 32 --max-wait-ms 5 --max-batch 64   # group-commit settings
    python -m bench.checkin_ingest --connections 32 --trace /tmp/timeline.json   # where a batch's time goes
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
from litestar import Litestar, Request, get, post
from litestar.datastructures import State

from bench import _report
from bench._database import DEFAULT_SERVER, BenchDatabase
from bench._load import CpuProbe, LoadError, LoadResult, Target, measure_rounds, resolve_generator
from bench._report import median, progress, table
from bench._serve import SERVERS, ServedApp, cpu_split, database_pinned
from bench.plugin import bench_plugins
from core.app import create_app, served
from core.platform import Platform
from core.principal import Principal
from core.storage import _PooledConnection
from core.testing import citizen_headers, device_headers
from plugins.checkin import retention
from plugins.checkin.declarations import NATIONAL_VERSION
from plugins.checkin.schemas import VenueBody
from plugins.checkin.venues import register_venue
from plugins.checkin.visits import personal_signer, settings_of

ROUTES = {"visit": "/api/checkin/visits", "scan": "/api/checkin/scans"}
BARE_PATHS = {"visit": "/bare/visits", "scan": "/bare/scans"}
BARE_TABLE = "bench_bare_visit"
PROVINCES = ("01", "79", "48", "31")
VENUE_TYPES = ("restaurant", "cafe", "market", "supermarket", "shop", "office", "school", "hospital")
# Read by the app factories below, in the server process.
ENV_MAX_WAIT_MS = "BENCH_GROUP_COMMIT_MAX_WAIT_MS"
ENV_MAX_BATCH = "BENCH_GROUP_COMMIT_MAX_BATCH"
ENV_NO_GC_TUNING = "BENCH_NO_GC_TUNING"  # set: both apps keep CPython's garbage-collector defaults
ENV_BARE_NO_RESET = "BENCH_BARE_NO_RESET"  # set: the bare pool skips asyncpg's reset query, like the platform's
ENV_IN_FLIGHT = "BENCH_GROUP_COMMIT_IN_FLIGHT"
ENV_MIN_PART = "BENCH_GROUP_COMMIT_MIN_PART"
ENV_EARLY_PART = "BENCH_GROUP_COMMIT_EARLY_PART"
ENV_TRACE = "BENCH_TRACE"  # set: the pipeline keeps a timeline of its requests and batches (``--trace``)
# The numbers of connections a run measures both sides at, unless told otherwise (``--sweep``).
SWEEP = [16, 32, 64, 128, 256, 512]
QUICK_SWEEP = [16, 64]
# The wrk script saves its request counter this often; the next run starts past the last save.
SAVE_EVERY = 256
FULL_NAME = "Nguyễn Văn An"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.checkin_ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run: one short round, fewer people")
    parser.add_argument("--rounds", type=int, help="rounds per side (default 3, quick 1)")
    parser.add_argument("--seconds", type=float, help="seconds of load per round (default 8, quick 3)")
    parser.add_argument(
        "--connections", type=int, help="concurrent keep-alive connections: measure at this one level only"
    )
    parser.add_argument(
        "--sweep",
        type=_levels,
        metavar="N,N,...",
        help=f"the numbers of connections to measure both sides at (default {','.join(map(str, SWEEP))}, quick "
        f"{','.join(map(str, QUICK_SWEEP))}); the report compares them at each level and each side at its best",
    )
    parser.add_argument("--route", choices=tuple(ROUTES), default="visit", help="which check-in route to load")
    parser.add_argument(
        "--citizens",
        type=int,
        help="citizens with a bearer token to rotate over (default 10000 per level measured, quick 3000 per "
        "level): each may check in 30 times an hour, so a faster pipeline needs more",
    )
    parser.add_argument("--venues", type=int, help="venues with a code to rotate over (default 500)")
    parser.add_argument("--server", choices=SERVERS, default="granian", help="ASGI server for both sides")
    parser.add_argument("--max-wait-ms", type=float, help="group commit: how long a batch waits for company")
    parser.add_argument("--max-batch", type=int, help="group commit: the most writes in one batch")
    parser.add_argument("--in-flight", type=int, help="group commit: batches committing at once (default 2)")
    parser.add_argument(
        "--min-part", type=int, help="group commit: the fewest writes of a part when a batch is split (default 12)"
    )
    parser.add_argument(
        "--early-part",
        type=int,
        help="group commit: announced writes still coming, this many go at once (default 32; 0: a batch waits "
        "for every announced write)",
    )
    parser.add_argument(
        "--trace",
        type=Path,
        metavar="FILE",
        help="write the pipeline's timeline over the timed rounds (each request's start and end, each hand-in "
        "to the group commit and its answer, each batch's start and end) to FILE as JSON, and sum it up",
    )
    parser.add_argument("--pool-size", type=int, default=10, help="database connections per worker, both sides")
    parser.add_argument(
        "--bare-pool-size", type=int, help="the bare side's pool only (1: every INSERT waits for its own commit)"
    )
    parser.add_argument("--redis", help="Redis URL for the pipeline's rate limits (default: the database)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client to separate CPUs")
    parser.add_argument(
        "--pin-database",
        action="store_true",
        help="pin the local PostgreSQL's processes to the load generator's CPUs for the run (set back "
        "afterwards), so that the server's CPU is its own, as with a database on another machine",
    )
    parser.add_argument("--database", default=DEFAULT_SERVER, help="PostgreSQL server URL (a database is made)")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.seconds = args.seconds or (3.0 if args.quick else 8.0)
    if args.connections is not None and args.sweep is not None:
        parser.error("--connections: give one level or a --sweep, not both")
    if args.connections is not None:
        args.levels = [args.connections]
    else:
        args.sweep = args.sweep or (QUICK_SWEEP if args.quick else SWEEP)
        args.levels = args.sweep
    # Each person may check in 30 times an hour: every level of a sweep needs its own share of people.
    args.citizens = args.citizens or (3000 if args.quick else 10000) * len(args.levels)
    args.venues = args.venues or (100 if args.quick else 500)
    if args.citizens < 2 * max(args.levels):
        parser.error("--citizens: use at least twice the connections, or one person's check-ins would collide")
    if args.sweep and args.trace:
        parser.error("--trace: trace one level at a time (--connections N)")
    if args.pin_database and args.no_pin:
        parser.error("--pin-database: pins PostgreSQL beside the load generator; leave out --no-pin")
    asyncio.run(run(args))


def _levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give numbers of connections separated by commas") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every number of connections must be 1 or more")
    return sorted(set(levels))


# -- the two served apps (factories loaded by the server processes) -------------------------------


def pipeline_app() -> Litestar:
    """The platform's app, as ``phongdich serve`` builds it, with optional group-commit settings.

    It also answers ``GET /bench/group-commit``: how many batches and writes the
    group commit has committed and how long its batches took, so the report can
    say whether the one flusher was busy all the time.
    """
    app = create_app() if os.environ.get(ENV_NO_GC_TUNING) else served(create_app())
    group_commit = app.state.platform.group_commit
    if os.environ.get(ENV_MAX_WAIT_MS):
        group_commit.max_wait = float(os.environ[ENV_MAX_WAIT_MS]) / 1000
    if os.environ.get(ENV_MAX_BATCH):
        group_commit.max_batch = int(os.environ[ENV_MAX_BATCH])
    if os.environ.get(ENV_IN_FLIGHT):
        group_commit.in_flight = int(os.environ[ENV_IN_FLIGHT])
        group_commit._slots = asyncio.Semaphore(group_commit.in_flight)
    if os.environ.get(ENV_MIN_PART):
        group_commit.min_part = int(os.environ[ENV_MIN_PART])
    if os.environ.get(ENV_EARLY_PART):
        group_commit.early_part = int(os.environ[ENV_EARLY_PART])
    busy = {"seconds": 0.0}
    commit = group_commit._commit

    async def timed_commit(batch: Any) -> None:
        started = time.perf_counter()
        try:
            await commit(batch)
        finally:
            busy["seconds"] += time.perf_counter() - started

    group_commit._commit = timed_commit  # type: ignore[method-assign]

    @get("/bench/group-commit", opt={"public": True})
    async def group_commit_stats() -> dict[str, float]:
        return {"batches": group_commit.batches, "writes": group_commit.writes, "busy_seconds": busy["seconds"]}

    app.register(group_commit_stats)
    if os.environ.get(ENV_TRACE):
        _keep_timeline(app)
    return app


def _keep_timeline(app: Litestar) -> None:
    """Record ``(seconds, event, number)`` for the requests and batches; ``GET /bench/trace`` hands them over.

    Events: ``request``/``answered`` around each request, ``hand-in`` (the number: writes already
    waiting) and ``acknowledged`` around each write given to the group commit, ``batch``/``committed``
    (the number: the batch's writes) around each batch. ``GET /bench/trace`` returns what was recorded
    and starts anew.
    """
    events: list[tuple[float, str, int]] = []
    clock = time.perf_counter
    group_commit = app.state.platform.group_commit
    enqueue, commit, handler = group_commit._enqueue, group_commit._commit, app.asgi_handler

    async def traced_enqueue(*args: Any, **kwargs: Any) -> Any:
        events.append((clock(), "hand-in", len(group_commit._pending)))
        try:
            return await enqueue(*args, **kwargs)
        finally:
            events.append((clock(), "acknowledged", 0))

    async def traced_commit(batch: Any) -> None:
        events.append((clock(), "batch", len(batch)))
        try:
            await commit(batch)
        finally:
            events.append((clock(), "committed", len(batch)))

    async def traced_handler(scope: Any, receive: Any, send: Any) -> None:
        events.append((clock(), "request", 0))
        try:
            await handler(scope, receive, send)
        finally:
            events.append((clock(), "answered", 0))

    group_commit._enqueue = traced_enqueue  # type: ignore[method-assign]
    group_commit._commit = traced_commit  # type: ignore[method-assign]
    app.asgi_handler = traced_handler

    @get("/bench/trace", opt={"public": True})
    async def trace() -> list[tuple[float, str, int]]:
        recorded = list(events)
        events.clear()
        return recorded

    app.register(trace)


def summarise_timeline(events: list[tuple[float, str, int]]) -> str:
    """Per batch: its writes, how long it waited after its last hand-in, how long it took to commit."""
    events = sorted(events)
    waits: list[float] = []
    commits: list[float] = []
    sizes: list[int] = []
    last_hand_in: float | None = None
    started: list[float] = []
    for at, event, number in events:
        if event == "hand-in":
            last_hand_in = at
        elif event == "batch":
            sizes.append(number)
            started.append(at)
            if last_hand_in is not None:
                waits.append((at - last_hand_in) * 1000)
        elif event == "committed" and started:
            commits.append((at - started.pop(0)) * 1000)
    if not sizes:
        return "timeline: no batches recorded"

    def spread(values: list[float]) -> str:
        ordered = sorted(values)
        pick = [ordered[int(q * (len(ordered) - 1))] for q in (0.1, 0.5, 0.9)]
        return " / ".join(f"{v:.2f}" for v in pick)

    return (
        f"timeline: {len(sizes):,} batches; p10 / p50 / p90: writes {spread([float(n) for n in sizes])}, "
        f"ms from the last hand-in to the batch {spread(waits)}, ms to commit {spread(commits)}"
    )


class BareVisitBody(msgspec.Struct, kw_only=True):
    """The check-in body, decoded but not checked: the bare side validates nothing."""

    code: str
    full_name: str
    declaration: dict[str, Any]


class BareScanBody(msgspec.Struct, kw_only=True):
    personal_code: str
    venue_id: uuid.UUID
    full_name: str | None = None
    declaration: dict[str, Any] | None = None


class BareReply(msgspec.Struct, kw_only=True):
    id: str
    arrived_at: int


BARE_INSERT = f"""
INSERT INTO {BARE_TABLE} (id, venue_id, sub_location_id, province, site, subject_id, phone, id_number,
                          full_name, arrived_at, left_at, checked_out, method, recorded_by)
VALUES ($1, $2, NULL, '01', 'bench', $3, NULL, NULL, $4, $5, $6, false, $7, 'bare')
"""


async def _bare_insert(
    request: Request[Any, Any, Any], venue_id: uuid.UUID, subject: str, name: str, method: str
) -> BareReply:
    pool: asyncpg.Pool = request.app.state.pool
    arrived = int(time.time())
    visit_id = uuid.uuid4()
    await pool.execute(BARE_INSERT, visit_id, venue_id, subject, name, arrived, arrived + 3600, method)
    return BareReply(id=str(visit_id), arrived_at=arrived)


def _credential_digest(request: Request[Any, Any, Any]) -> str:
    credential = request.headers.get("authorization") or request.headers.get("x-api-key") or ""
    return hashlib.sha256(credential.encode()).hexdigest()[:40]


@post(BARE_PATHS["visit"], status_code=201)
async def bare_visit(data: BareVisitBody, request: Request[Any, Any, Any]) -> BareReply:
    # No lookup of the code or the person: a name-based id stands in for the venue and subject.
    venue_id = uuid.uuid5(uuid.NAMESPACE_URL, data.code)
    return await _bare_insert(request, venue_id, _credential_digest(request), data.full_name, "scan")


@post(BARE_PATHS["scan"], status_code=201)
async def bare_scan(data: BareScanBody, request: Request[Any, Any, Any]) -> BareReply:
    subject = hashlib.sha256(data.personal_code.encode()).hexdigest()[:40]
    return await _bare_insert(request, data.venue_id, subject, data.full_name or "", "personal")


@get("/healthz")
async def bare_ready() -> dict[str, bool]:
    return {"ok": True}


def bare_app() -> Litestar:
    """One handler, one asyncpg INSERT per request: no middleware, guard, identity or validation."""

    @contextlib.asynccontextmanager
    async def pool(app: Litestar) -> Any:
        size = int(os.environ.get("PHONGDICH_DATABASE_POOL_SIZE", "10"))
        # asyncpg's default pool runs a reset query (a round trip) on every release; the platform's pool
        # skips it (core.storage._PooledConnection). BENCH_BARE_NO_RESET=1 gives the bare side the same.
        options: dict[str, Any] = {"connection_class": _PooledConnection} if os.environ.get(ENV_BARE_NO_RESET) else {}
        app.state.pool = await asyncpg.create_pool(
            os.environ["PHONGDICH_DATABASE_URL"], min_size=size, max_size=size, **options
        )
        try:
            yield
        finally:
            await app.state.pool.close()

    app = Litestar(
        route_handlers=[bare_visit, bare_scan, bare_ready], lifespan=[pool], openapi_config=None, state=State()
    )
    # The same process tuning as the platform's server (a garbage collector tuned after start-up).
    return app if os.environ.get(ENV_NO_GC_TUNING) else served(app)


# -- seeding: venues, citizens, devices, the bare table -------------------------------------------


class Seeded(msgspec.Struct, kw_only=True):
    """What the load rotates over: one credential and one body template per person and venue."""

    citizen_tokens: list[str]  # "Bearer ..." for --route visit
    venue_codes: list[str]
    venue_ids: list[str]
    device_keys: list[str]  # one per venue, for --route scan (a device may only scan at its own site)
    personal_codes: list[str]


async def seed(db: BenchDatabase, *, citizens: int, venues: int, route: str) -> Seeded:
    platform = Platform(db.settings(), extra_plugins=bench_plugins())
    await platform.start()  # runs the checkin start-up: today's partitions exist from here on
    try:
        semaphore = asyncio.Semaphore(8)

        async def limited(coroutine: Any) -> Any:
            async with semaphore:
                return await coroutine

        started = time.monotonic()
        views = await asyncio.gather(*(limited(_venue(platform, n)) for n in range(venues)))
        progress(f"{venues:,} venues registered with their codes in {time.monotonic() - started:.1f}s")
        started = time.monotonic()
        people = await asyncio.gather(*(limited(citizen_headers(platform, f"09{n:08d}")) for n in range(citizens + 1)))
        progress(f"{citizens + 1:,} citizens signed in (bearer tokens) in {time.monotonic() - started:.1f}s")
        keys: list[str] = []
        codes: list[str] = []
        if route == "scan":
            started = time.monotonic()
            devices = await asyncio.gather(
                *(limited(device_headers(platform, province=v.province, site=v.site)) for v in views)
            )
            keys = [headers["X-API-Key"] for headers in devices]
            signer = personal_signer(platform)
            hours = settings_of(platform).personal_code_hours
            codes = [signer.sign({"s": subject}, ttl=timedelta(hours=hours)) for _headers, subject in people]
            progress(f"{venues:,} device keys and {len(codes):,} personal codes in {time.monotonic() - started:.1f}s")
        await _create_bare_table(platform)
        return Seeded(
            citizen_tokens=[headers["Authorization"] for headers, _subject in people],
            venue_codes=[v.codes[0].token for v in views],
            venue_ids=[v.id for v in views],
            device_keys=keys,
            personal_codes=codes,
        )
    finally:
        await platform.stop()


async def _venue(platform: Platform, n: int) -> Any:
    province = PROVINCES[n % len(PROVINCES)]
    site = f"{province}-bench-{n:05d}"
    operator = Principal(
        id="staff:bench-operator", kind="staff", roles=frozenset({"venue_operator"}), province=province, site=site
    )
    body = VenueBody(
        name=f"Quán số {n}",
        address=f"{n} Phố Huế, Hai Bà Trưng",
        province=province,
        district="001",
        ward="00001",
        venue_type=VENUE_TYPES[n % len(VENUE_TYPES)],
        capacity=50,
        contact_phone="0243 821 2709",
        default_stay_minutes=60,
        site=site,
    )
    return await register_venue(platform, operator, body)


async def _create_bare_table(platform: Platform) -> None:
    """Shaped like checkin_visit: same columns, the same indexes (read from it), partitioned by day the same way."""
    indexes = await platform.db.fetch(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'checkin_visit' "
        "AND indexname <> 'checkin_visit_pkey'"
    )
    statements = [
        f"CREATE TABLE {BARE_TABLE} (LIKE checkin_visit INCLUDING DEFAULTS) PARTITION BY RANGE (arrived_at)",
        f"ALTER TABLE {BARE_TABLE} ADD PRIMARY KEY (id, arrived_at)",
        *(
            # "CREATE INDEX name ON [ONLY] public.checkin_visit USING ..." -> an unnamed index on the bare table.
            f"CREATE INDEX ON {BARE_TABLE} USING {row['indexdef'].split(' USING ', 1)[1]}"
            for row in indexes
        ),
        f"CREATE TABLE {BARE_TABLE}_default PARTITION OF {BARE_TABLE} DEFAULT",
    ]
    today = datetime.now(UTC).date()
    for offset in (-1, 0, 1):
        day = today + timedelta(days=offset)
        low = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
        name = retention.partition_name(BARE_TABLE, day)
        statements.append(
            f'CREATE TABLE "{name}" PARTITION OF {BARE_TABLE} FOR VALUES FROM ({low}) TO ({low + retention.DAY})'
        )
    for statement in statements:
        await platform.db.execute(statement)


# -- the requests: a wrk script rotating over people and venues ----------------------------------


def rotation_script(seeded: Seeded, route: str, state_file: Path) -> str:
    """Lua ``init`` and ``request`` for wrk: request k is person k mod C at venue (k mod C + k div C) mod V."""
    from bench._load import _lua_string as lua

    declaration = [
        lua(f',"full_name":"{FULL_NAME}","declaration":{{"questionnaire_version":"{NATIONAL_VERSION}",'),
        lua('"answers":{"symptoms":['),
        "symptoms",
        lua('],"contact_case":false,"travel":false}}}'),
    ]
    if route == "visit":
        people = seeded.citizen_tokens[:-1]  # the last one is the preflight's
        places = seeded.venue_codes
        credential = '["Authorization"] = people[c + 1]'
        body = [lua('{"code":"'), "places[v + 1]", lua('"'), *declaration]
    else:
        people = seeded.personal_codes[:-1]
        places = seeded.venue_ids
        credential = '["X-API-Key"] = keys[v + 1]'  # each venue's own device
        body = [
            lua('{"personal_code":"'),
            "people[c + 1]",
            lua('","venue_id":"'),
            "places[v + 1]",
            lua('"'),
            *declaration,
        ]
    return f"""
local people = {{{", ".join(lua(p) for p in people)}}}
local places = {{{", ".join(lua(p) for p in places)}}}
local keys = {{{", ".join(lua(k) for k in seeded.device_keys)}}}
local state_file = {lua(str(state_file))}
local counter = 0

local function save()
  local f = assert(io.open(state_file, "w"))
  f:write(string.format("%d", counter))
  f:close()
end

function init(args)
  local f = io.open(state_file, "r")
  local last = f and tonumber(f:read("*a")) or nil
  if f then f:close() end
  -- Up to {SAVE_EVERY} requests of the previous run came after its last save: start past them.
  counter = last and (last + {SAVE_EVERY}) or 0
  save()
end

function request()
  local c = counter % {len(people)}
  local v = (c + math.floor(counter / {len(people)})) % {len(places)}
  counter = counter + 1
  if counter % {SAVE_EVERY} == 0 then save() end
  -- One declaration in twenty reports a symptom, so some are flagged as risky.
  local symptoms = (counter % 20 == 0) and '"cough"' or '"none"'
  local headers = {{{credential}, ["Content-Type"] = "application/json"}}
  return wrk.format(nil, nil, headers, {" .. ".join(body)})
end
"""


def preflight_request(seeded: Seeded, route: str) -> tuple[dict[str, str], bytes]:
    """One valid request by the person kept out of the rotation."""
    answers = {"symptoms": ["none"], "contact_case": False, "travel": False}
    declaration = {"questionnaire_version": NATIONAL_VERSION, "answers": answers}
    if route == "visit":
        headers = {"Authorization": seeded.citizen_tokens[-1]}
        body: dict[str, Any] = {"code": seeded.venue_codes[0], "full_name": FULL_NAME, "declaration": declaration}
    else:
        headers = {"X-API-Key": seeded.device_keys[0]}
        body = {
            "personal_code": seeded.personal_codes[-1],
            "venue_id": seeded.venue_ids[0],
            "full_name": FULL_NAME,
            "declaration": declaration,
        }
    return {**headers, "Content-Type": "application/json"}, json.dumps(body, ensure_ascii=False).encode()


# -- the run --------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> None:
    generator = resolve_generator("wrk")  # the rotation is a wrk script; httpx could not keep up anyway
    server_cpus, client_cpus = cpu_split(not args.no_pin)
    progress(f"bench.checkin_ingest on {_report.machine()}")
    async with BenchDatabase(args.database) as db:
        progress(f"database {db.name} created and migrated")
        seeded = await seed(db, citizens=args.citizens, venues=args.venues, route=args.route)
        env = {**db.environment(), "PHONGDICH_DATABASE_POOL_SIZE": str(args.pool_size)}
        pipeline_env = dict(env)
        bare_env = {**env, "PHONGDICH_DATABASE_POOL_SIZE": str(args.bare_pool_size or args.pool_size)}
        if args.redis:
            pipeline_env["PHONGDICH_REDIS_URL"] = args.redis
        if args.max_wait_ms is not None:
            pipeline_env[ENV_MAX_WAIT_MS] = str(args.max_wait_ms)
        if args.max_batch is not None:
            pipeline_env[ENV_MAX_BATCH] = str(args.max_batch)
        if args.in_flight is not None:
            pipeline_env[ENV_IN_FLIGHT] = str(args.in_flight)
        if args.min_part is not None:
            pipeline_env[ENV_MIN_PART] = str(args.min_part)
        if args.early_part is not None:
            pipeline_env[ENV_EARLY_PART] = str(args.early_part)
        if args.trace is not None:
            pipeline_env[ENV_TRACE] = "1"
        headers, body = preflight_request(seeded, args.route)
        progress(
            f"{args.server} (1 worker each) on CPU {server_cpus or 'any'}, {generator} on CPU {client_cpus or 'any'}, "
            f"{', '.join(map(str, args.levels))} connections, {args.rounds} round(s) of {args.seconds:g}s per side"
            f"{' and level' if args.sweep else ''}; "
            f"route {args.route}, {args.citizens:,} people x {args.venues:,} venues"
        )
        with (
            tempfile.TemporaryDirectory(prefix="phongdich-ingest-") as tmp,
            database_pinned(client_cpus if args.pin_database else None) as placement,
        ):
            progress(placement)
            async with (
                ServedApp(
                    "bare",
                    args.server,
                    "bench.checkin_ingest:bare_app",
                    env=bare_env,
                    ready_path="/healthz",
                    cpus=server_cpus,
                ) as bare,
                ServedApp(
                    "pipeline",
                    args.server,
                    "bench.checkin_ingest:pipeline_app",
                    env=pipeline_env,
                    ready_path="/healthz",
                    cpus=server_cpus,
                ) as pipeline,
            ):
                targets = {
                    "bare": Target(
                        url=bare.base_url + BARE_PATHS[args.route],
                        method="POST",
                        headers=headers,
                        body=body,
                        expect_status=201,
                        script=rotation_script(seeded, args.route, Path(tmp) / "bare.counter"),
                    ),
                    "pipeline": Target(
                        url=pipeline.base_url + ROUTES[args.route],
                        method="POST",
                        headers=headers,
                        body=body,
                        expect_status=201,
                        script=rotation_script(seeded, args.route, Path(tmp) / "pipeline.counter"),
                    ),
                }
                before = await _group_commit_stats(pipeline)
                if args.trace is not None:
                    await _timeline(pipeline)  # from here on: warm-up and timed rounds
                by_level: dict[int, dict[str, list[LoadResult]]] = {}
                for n, connections in enumerate(args.levels, 1):
                    if args.sweep:
                        progress(f"level {n}/{len(args.levels)}: {connections} connections")
                    by_level[connections] = await measure_rounds(
                        generator,
                        targets,
                        rounds=args.rounds,
                        seconds=args.seconds,
                        warmup_seconds=min(2.0, args.seconds),
                        connections=connections,
                        cpus=client_cpus,
                        cpu_probes={"bare": _probe(bare, db), "pipeline": _probe(pipeline, db)},
                    )
                after = await _group_commit_stats(pipeline)
                timeline = await _timeline(pipeline) if args.trace is not None else None
        results = {side: [r for level in by_level.values() for r in level[side]] for side in ("bare", "pipeline")}
        loaded = len(args.levels) * min(2.0, args.seconds) + sum(r.seconds for r in results["pipeline"])
        flusher = {key: after[key] - before[key] for key in after}
        stored = await verify(db, results, args.route)
    progress(f"database {db.name} dropped")
    if args.sweep:
        report_sweep(by_level, stored, flusher, loaded, args, generator, placement)
    else:
        report(results, stored, flusher, loaded, args, generator, placement)
    if timeline is not None:
        args.trace.write_text(json.dumps(timeline))
        print(summarise_timeline([tuple(event) for event in timeline]))
        print(f"timeline of {len(timeline):,} events written to {args.trace}")


async def _timeline(app: ServedApp) -> list[Any]:
    async with httpx.AsyncClient(timeout=60.0) as client:
        response = await client.get(app.base_url + "/bench/trace")
    response.raise_for_status()
    events: list[Any] = response.json()
    return events


async def _group_commit_stats(app: ServedApp) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        response = await client.get(app.base_url + "/bench/group-commit")
    response.raise_for_status()
    stats: dict[str, float] = response.json()
    return stats


async def verify(db: BenchDatabase, results: dict[str, list[LoadResult]], route: str) -> dict[str, int]:
    """Every answered request stored a new row: no 429, no repeat visit, no half-stored check-in."""
    connection = await asyncpg.connect(db.url)
    try:
        counts = {
            "visits": await connection.fetchval("SELECT count(*) FROM checkin_visit"),
            "declarations": await connection.fetchval("SELECT count(*) FROM checkin_declaration"),
            "bare rows": await connection.fetchval(f"SELECT count(*) FROM {BARE_TABLE}"),
            "audit records": await connection.fetchval("SELECT count(*) FROM audit_log"),
            "people": await connection.fetchval("SELECT count(DISTINCT subject_id) FROM checkin_visit"),
            "most visits of one person": await connection.fetchval(
                "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM checkin_visit GROUP BY subject_id) x"
            ),
            "risky declarations": await connection.fetchval("SELECT count(*) FROM checkin_declaration WHERE risky"),
        }
    finally:
        await connection.close()
    answered = {side: sum(r.requests for r in runs) for side, runs in results.items()}
    progress(
        "stored: "
        + ", ".join(f"{name} {value:,}" for name, value in counts.items())
        + f"; timed rounds answered {answered['pipeline']:,} pipeline and {answered['bare']:,} bare requests"
    )
    if counts["visits"] < answered["pipeline"] or counts["declarations"] != counts["visits"]:
        raise LoadError(
            f"the pipeline answered {answered['pipeline']:,} check-ins but stored {counts['visits']:,} visits and "
            f"{counts['declarations']:,} declarations: some requests were repeats or stored half-way"
        )
    if counts["bare rows"] < answered["bare"]:
        raise LoadError(f"the bare endpoint answered {answered['bare']:,} requests but stored {counts['bare rows']:,}")
    if route == "scan" and counts["audit records"] < counts["visits"]:  # each scan is audited with its visit
        raise LoadError(f"{counts['visits']:,} scanned visits but only {counts['audit records']:,} audit records")
    if counts["most visits of one person"] > 30:
        raise LoadError("a person checked in more than the hourly limit allows: use more --citizens")
    return counts


def report(
    results: dict[str, list[LoadResult]],
    stored: dict[str, int],
    flusher: dict[str, float],
    loaded_seconds: float,
    args: argparse.Namespace,
    generator: str,
    placement: str,
) -> None:
    headers, rows = _report.http_summary(results, baseline="bare")
    route = ROUTES[args.route]
    print(table(f"Check-in ingest: POST {route} against one INSERT (medians of rounds)", headers, rows))
    ratio = median([r.rps for r in results["pipeline"]]) / median([r.rps for r in results["bare"]])
    print(
        _setup(args, generator, stored, placement)
        + f"\nPipeline / bare requests/s: {ratio:.2f}x (target: 1.50x) -> {'met' if ratio >= 1.5 else 'NOT met'}."
    )
    if flusher["batches"]:
        print(
            f"Group commit over the pipeline's {loaded_seconds:.0f}s of load: {flusher['batches']:,.0f} batches, "
            f"{flusher['writes'] / flusher['batches']:.1f} writes per batch, "
            f"{flusher['busy_seconds'] * 1000 / flusher['writes']:.2f} ms of flusher time per write, "
            # (The flusher also drains what was in flight when a round ended, so this can pass 100%.)
            f"flusher busy about {min(1.0, flusher['busy_seconds'] / loaded_seconds):.0%} of the time."
        )


def _setup(args: argparse.Namespace, generator: str, stored: dict[str, int], placement: str) -> str:
    """How the run was made (servers, load, people, group commit, rate limits) and what it stored."""
    load = (
        f"{args.rounds} x {args.seconds:g}s per side and level"
        if args.sweep
        else f"{args.connections} connections, {args.rounds} x {args.seconds:g}s"
    )
    return (
        f"\n{args.server}, 1 worker per side, uvloop, pool of {args.pool_size}"
        + (f" (bare: {args.bare_pool_size})" if args.bare_pool_size else "")
        + f"; load: {generator}, {load}; {args.citizens:,} people x {args.venues:,} venues; group commit: "
        f"{_group_commit_settings(args)}; rate limits in {'Redis' if args.redis else 'PostgreSQL'}; "
        f"{placement}.\nStored: " + ", ".join(f"{name} {value:,}" for name, value in stored.items()) + "."
    )


def _group_commit_settings(args: argparse.Namespace) -> str:
    settings = []
    if args.max_wait_ms is not None:
        settings.append(f"max_wait {args.max_wait_ms:g} ms")
    if args.max_batch is not None:
        settings.append(f"max_batch {args.max_batch}")
    if args.in_flight is not None:
        settings.append(f"{args.in_flight} batches in flight")
    if args.min_part is not None:
        settings.append(f"min_part {args.min_part}")
    if args.early_part is not None:
        settings.append(f"early_part {args.early_part}")
    return ", ".join(settings) or "defaults"


def report_sweep(
    by_level: dict[int, dict[str, list[LoadResult]]],
    stored: dict[str, int],
    flusher: dict[str, float],
    loaded_seconds: float,
    args: argparse.Namespace,
    generator: str,
    placement: str,
) -> None:
    """One row per number of connections; then each side at its best, and where the same load reaches 1.5x."""
    rows: list[list[object]] = []
    best: dict[str, tuple[float, int]] = {}
    met: list[int] = []
    for connections, results in by_level.items():
        rps = {side: median([r.rps for r in runs]) for side, runs in results.items()}
        p50 = {side: median([r.p50_ms for r in runs]) for side, runs in results.items()}
        cpu = {side: _report.cpu_median(runs, "server") for side, runs in results.items()}
        for side, value in rps.items():
            if value > best.get(side, (0.0, 0))[0]:
                best[side] = (value, connections)
        ratio = rps["pipeline"] / rps["bare"]
        if ratio >= 1.5:
            met.append(connections)
        rows.append(
            [
                connections,
                rps["pipeline"],
                rps["bare"],
                f"{ratio:.2f}x",
                p50["pipeline"],
                p50["bare"],
                f"{cpu['pipeline']} / {cpu['bare']}",
            ]
        )
    headers = [
        "connections",
        "pipeline req/s",
        "bare req/s",
        "pipeline / bare",
        "pipeline p50 ms",
        "bare p50 ms",
        "server CPU ms/req pipeline / bare",
    ]
    route = ROUTES[args.route]
    print(table(f"Check-in ingest by concurrency: POST {route} against one INSERT (medians of rounds)", headers, rows))
    (pipeline_best, pipeline_at), (bare_best, bare_at) = best["pipeline"], best["bare"]
    peak = pipeline_best / bare_best
    print(
        _setup(args, generator, stored, placement)
        + f"\nEach side at its best: pipeline {pipeline_best:,.0f} req/s ({pipeline_at} connections), bare "
        f"{bare_best:,.0f} req/s ({bare_at} connections): {peak:.2f}x (target: 1.50x) -> "
        f"{'met' if peak >= 1.5 else 'NOT met'}.\nAt the same number of connections, 1.50x or more at: "
        + (", ".join(map(str, met)) if met else "none")
        + "."
    )
    if flusher["batches"]:
        print(
            f"Group commit over the pipeline's {loaded_seconds:.0f}s of load: {flusher['batches']:,.0f} batches, "
            f"{flusher['writes'] / flusher['batches']:.1f} writes per batch."
        )


def _probe(app: ServedApp, db: BenchDatabase) -> CpuProbe:
    async def sample() -> dict[str, dict[int, float]]:
        return {"server": app.cpu_seconds(), "database": await db.backend_cpu_seconds()}

    return sample


if __name__ == "__main__":
    main()
