"""Booking a place in a session: never more than its capacity, a short code to show at the
site, a waitlist that fills cancelled places in priority order, and cancellation.

A place is taken with one conditional update, ``booked = booked + 1 WHERE
booked < capacity``, in the transaction that stores the booking and queues its
SMS. PostgreSQL re-checks the condition on the locked row after a concurrent
commit, and SQLite runs write transactions one at a time, so with any number
of simultaneous requests exactly ``capacity`` places are granted. A person has
at most one active booking, held by a unique column, so two requests of the
same person cannot both win a place.

Nothing that can fail runs after that transaction commits: the answer is
built from what was written, so a request never reports an error for a
booking that was stored, nor success for one that was not.

SQLite's busy handler is a sleep-and-poll loop with no queue: with hundreds
of connections waiting for the write lock at once, a few keep losing it until
their busy timeout expires ("database is locked"), even after their booking's
place has been decided. So on SQLite this process queues its booking writes on
one lock, first come first served, and only the head of the queue asks SQLite
for the write lock (``BEGIN IMMEDIATE``). A write that cannot start within
``WRITE_BUDGET_SECONDS`` is refused with a clear answer and stores nothing.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import uuid
import weakref
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import structlog

from core import Conflict, InvalidInput, Message, NotFound, Resource, clock
from core.signing import Signer
from plugins.vaccination import eligibility, localtime, people, registry
from plugins.vaccination.constraints import is_unique_violation
from plugins.vaccination.schemas import BookingBody, BookingOutcome, BookingView, CheckinBody, WaitlistView
from plugins.vaccination.tables import Booking, Dose, Person, SiteSession, WaitlistEntry

if TYPE_CHECKING:
    from core import Principal
    from core.platform import Platform
    from core.storage import Database

T = TypeVar("T")
log = structlog.get_logger("vaccination.booking")

# No 0/O, 1/I/L: codes are read aloud and typed from a phone screen.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8
ACTIVE = ("booked", "checked_in")
# On SQLite: how many bookings of one process run at once, how long one may wait to be let in, and
# how long its write may wait for its turn; past a budget it is refused and nothing is stored.
ADMITTED_AT_ONCE = 32
ADMISSION_BUDGET_SECONDS = 60.0
WRITE_BUDGET_SECONDS = 30.0

_write_queues: weakref.WeakKeyDictionary[Database, _WriteQueue] = weakref.WeakKeyDictionary()


class SessionFull(Conflict):
    """Every place of the session is taken."""


class WritesBusy(Conflict):
    """The database could not take the write within the budget; nothing was stored."""


async def book(platform: Platform, principal: Principal, body: BookingBody) -> BookingOutcome:
    if platform.db.kind != "sqlite":
        return await _book(platform, principal, body)
    # On SQLite every read opens a connection on its own thread: a thousand bookings reading at once
    # starve the one holding the write lock of the event loop. So only a few are let in at a time.
    admission = _write_queue(platform.db).admission
    try:
        async with asyncio.timeout(ADMISSION_BUDGET_SECONDS):
            await admission.acquire()
    except TimeoutError:
        await _refuse_if_full(body.session_id)  # filled while this one waited: that is the answer
        raise _busy() from None
    try:
        return await _book(platform, principal, body)
    finally:
        admission.release()


async def _book(platform: Platform, principal: Principal, body: BookingBody) -> BookingOutcome:
    person = await people.get_person(platform, principal, body.person_id, action="vaccination.booking.create")
    session = await registry.session_row(body.session_id)
    _check_session_open(session)
    plan, rule = await check_eligibility(platform, person, session, body.screening, body.mixing_justification)
    if await Booking.exists().where(Booking.active_person == str(person["id"])):
        raise Conflict("person_id: this person already has an active booking; cancel it first")
    try:
        booking = await _take_place(platform, principal, person, session, rule, plan, body)
    except SessionFull:
        if not body.join_waitlist:
            raise
        entry = await _join_waitlist(platform, principal, person, session, body)
        return BookingOutcome(
            waitlist=entry,
            detail="The session is full. You are on its waitlist and will get a message if a place frees up.",
        )
    return BookingOutcome(booking=booking, detail=f"Booked. Show code {booking.code} at the site.")


async def check_eligibility(
    platform: Platform,
    person: dict[str, Any],
    session: dict[str, Any],
    screening: dict[str, bool],
    mixing_justification: str,
) -> tuple[eligibility.DosePlan, dict[str, Any]]:
    """Everything that decides whether ``person`` may book ``session``: group, age, interval, mixing, screening."""
    if person["duplicate_status"] == "merged":
        raise InvalidInput("person_id: this record was merged into another; book for that person")
    opened = await registry.open_group_codes(session["province"])
    if person["priority_group"] not in opened:
        raise InvalidInput(
            f"person_id: priority group {person['priority_group']} may not book yet in province {session['province']}"
        )
    # The rule in force today, when the booking is made; the booking keeps it even if the rule changes.
    rule = await registry.rule_for(session["product"], localtime.today())
    plan = eligibility.plan_dose(
        birth_date=person["birth_date"],
        history=await history_of(person["id"]),
        product=session["product"],
        rule=rule,
        on=session["day"],
        mixing_justification=mixing_justification,
        when_field="session_id",
    )
    precautions = eligibility.screen(screening)
    return eligibility.DosePlan(**{**_plan_fields(plan), "precautions": precautions}), rule


async def history_of(person_id: Any) -> eligibility.History:
    last = (
        await Dose.select(Dose.administered_on, Dose.product)
        .where(Dose.person == person_id)
        .order_by(Dose.administered_at, ascending=False)
        .first()
    )
    count = await Dose.count().where(Dose.person == person_id)
    return eligibility.History(
        doses_received=count,
        last_dose_on=last["administered_on"] if last else None,
        last_product=last["product"] if last else None,
    )


async def cancel(platform: Platform, principal: Principal, code: str) -> BookingView:
    """Cancel a booking; its place goes to the waitlist first, in priority order."""
    row = await by_code(code)
    await platform.access.check(principal, "vaccination.booking.cancel", booking_resource(row))

    async def release_place() -> None:
        done = await (
            Booking.update(
                {Booking.status: "cancelled", Booking.active_person: None, Booking.cancelled_at: clock.now()}
            )
            .where((Booking.id == row["id"]) & (Booking.status == "booked"))
            .returning(Booking.id)
        )
        if not done:
            raise Conflict(f"code: the booking is {row['status']} and can no longer be cancelled")
        await SiteSession.update({SiteSession.booked: SiteSession.booked - 1}).where(SiteSession.id == row["session"])
        await _promote_waitlist(platform, row["session"])

    await _queued_write(platform, release_place)
    return await booking_view(row["id"])


async def list_bookings(
    platform: Platform, principal: Principal, *, status: str | None, limit: int
) -> list[BookingView]:
    scope = await platform.access.scope(principal, "vaccination.booking.list")
    where = scope.where(province=Booking.province, site=Booking.site, subject=Booking.subject_id)
    if status:
        where = Booking.status == status if where is None else where & (Booking.status == status)
    return await _booking_views(where, limit=limit)


async def by_code(code: str) -> dict[str, Any]:
    row = await Booking.select().where(Booking.code == normalise_code(code)).first()
    if row is None:
        raise NotFound("code: no booking with this code")
    return row


async def qr_token(platform: Platform, principal: Principal, code: str) -> str:
    """A signed token carrying the booking code, valid until the day after the session."""
    row = await by_code(code)
    await platform.access.check(principal, "vaccination.booking.read", booking_resource(row))
    if row["status"] not in ACTIVE:
        raise Conflict(f"code: the booking is {row['status']}")
    session = await registry.session_row(row["session"])
    days_left = (session["day"] - localtime.today()).days + 2
    return _qr_signer(platform).sign({"b": row["code"]}, ttl=timedelta(days=max(1, days_left)))


def code_from(platform: Platform, body: CheckinBody) -> str:
    """The booking code from a check-in: typed as is, or read from the signed QR code."""
    if body.qr:
        claims = _qr_signer(platform).verify(body.qr, field="qr")
        code = claims.get("b")
        if not isinstance(code, str):
            raise InvalidInput("qr: not a booking code")
        return code
    if body.code:
        return body.code
    raise InvalidInput("code: give the booking code, or the scanned QR code as qr")


def _qr_signer(platform: Platform) -> Signer:
    return Signer.from_settings(platform.settings, "vaccination.booking")


def normalise_code(code: str) -> str:
    return code.replace(" ", "").replace("-", "").upper()


def booking_resource(row: dict[str, Any]) -> Resource:
    return Resource(
        kind="vaccination_booking",
        id=str(row["id"]),
        province=row["province"],
        site=row["site"],
        subject_id=row["subject_id"],
    )


async def booking_view(booking_id: Any) -> BookingView:
    views = await _booking_views(Booking.id == booking_id, limit=1)
    if not views:
        raise NotFound("booking: no such booking")
    return views[0]


async def _booking_views(where: Any, *, limit: int) -> list[BookingView]:
    query = Booking.select(
        *Booking.all_columns(),
        Booking.session.day.as_alias("day"),
        Booking.session.starts_at.as_alias("starts_at"),
    )
    if where is not None:
        query = query.where(where)
    rows = await query.order_by(Booking.created_at, ascending=False).limit(limit)
    return [_booking_view(row) for row in rows]


def _booking_view(row: dict[str, Any]) -> BookingView:
    return BookingView(
        id=row["id"],
        code=row["code"],
        person_id=row["person"],
        session_id=row["session"],
        site=row["site"],
        province=row["province"],
        day=row["day"],
        starts_at=row["starts_at"],
        product=row["product"],
        dose_number=row["dose_number"],
        dose_type=row["dose_type"],
        status=row["status"],
        created_at=clock.as_utc(row["created_at"]),
    )


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


# -- places and the waitlist -----------------------------------------------------------------------


async def _take_place(
    platform: Platform,
    principal: Principal,
    person: dict[str, Any],
    session: dict[str, Any],
    rule: dict[str, Any],
    plan: eligibility.DosePlan,
    body: BookingBody,
) -> BookingView:
    # A cheap read first: when the session is visibly full, no write lock is taken at all.
    await _refuse_if_full(session["id"])
    for _attempt in range(3):
        booking_id, code, created_at = uuid.uuid4(), new_code(), clock.now()

        async def claim_and_store(booking_id: Any = booking_id, code: str = code, created_at: Any = created_at) -> None:
            if not await _claim_place(session["id"]):
                raise SessionFull("session_id: the session is full")
            await _insert_booking(
                booking_id=booking_id,
                code=code,
                person=person,
                session=session,
                rule=rule,
                plan=plan,
                screening=body.screening,
                justification=body.mixing_justification,
                by=principal.id,
                created_at=created_at,
            )
            await _send_code(platform, person, _new_booking_view(booking_id, code, person, session, plan, created_at))

        try:
            await _queued_write(platform, claim_and_store, session_id=session["id"])
        except SessionFull:
            raise
        except Exception as exc:
            if not is_unique_violation(exc):
                raise
            if await Booking.exists().where(Booking.active_person == str(person["id"])):
                raise Conflict("person_id: this person already has an active booking; cancel it first") from exc
            continue  # the random code collided: try another
        # Committed: from here on nothing may fail, so the answer is built from what was written.
        return _new_booking_view(booking_id, code, person, session, plan, created_at)
    raise Conflict("code: could not allocate a booking code; try again")


async def _queued_write(platform: Platform, step: Callable[[], Awaitable[T]], *, session_id: Any = None) -> T:
    """Run ``step`` in one write transaction; on SQLite, queued behind this process's other booking writes.

    With ``session_id``, a ``SessionFull`` from ``step`` is remembered: every
    booking of that session that was already waiting when the session was
    seen full is answered "full" at its turn without touching the database
    (it was concurrent with the request that filled the last place). A write
    that cannot start within ``WRITE_BUDGET_SECONDS`` raises ``WritesBusy``;
    it stored nothing.
    """
    if platform.db.kind != "sqlite":
        # PostgreSQL queues writers on the session's row lock itself.
        async with platform.db.transaction():
            return await step()
    loop = asyncio.get_running_loop()
    arrived = loop.time()
    deadline = arrived + WRITE_BUDGET_SECONDS
    queue = _write_queue(platform.db)
    try:
        async with asyncio.timeout_at(deadline):
            await queue.lock.acquire()
    except TimeoutError:
        if session_id is not None:
            await _refuse_if_full(session_id)  # filled while this one waited: that is the answer
        raise _busy() from None
    try:
        if session_id is not None and queue.full_since.get(session_id, float("-inf")) >= arrived:
            raise SessionFull("session_id: the session is full")
        pause = 0.01
        while True:
            started = loop.time()
            try:
                async with platform.db.transaction():
                    return await step()
            except SessionFull:
                if session_id is not None:
                    queue.seen_full(session_id, started)
                raise
            except sqlite3.OperationalError as exc:
                # BEGIN IMMEDIATE takes the write lock before anything is written, so a busy
                # database means this attempt stored nothing and may be tried again.
                if not _is_busy(exc):
                    raise
                if loop.time() + pause > deadline:
                    raise _busy() from exc
                log.warning("booking.write_busy", retry_in=pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
    finally:
        queue.lock.release()


class _WriteQueue:
    """This process's booking writes to one SQLite database: one at a time, first come first served."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.admission = asyncio.Semaphore(ADMITTED_AT_ONCE)
        self.full_since: dict[Any, float] = {}  # session id -> loop time it was last seen full

    def seen_full(self, session_id: Any, at: float) -> None:
        if len(self.full_since) > 10_000:  # old sessions: only requests waiting at that moment used them
            self.full_since.clear()
        self.full_since[session_id] = at


def _write_queue(db: Database) -> _WriteQueue:
    queue = _write_queues.get(db)
    if queue is None:
        queue = _write_queues[db] = _WriteQueue()
    return queue


async def _refuse_if_full(session_id: Any) -> None:
    latest = (
        await SiteSession.select(SiteSession.booked, SiteSession.capacity).where(SiteSession.id == session_id).first()
    )
    if latest is None or latest["booked"] >= latest["capacity"]:
        raise SessionFull("session_id: the session is full")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "database is locked" in message or "database is busy" in message


def _busy() -> WritesBusy:
    return WritesBusy("session_id: too many bookings are being written at this moment; nothing was stored, try again")


def _new_booking_view(
    booking_id: Any,
    code: str,
    person: dict[str, Any],
    session: dict[str, Any],
    plan: eligibility.DosePlan,
    created_at: Any,
) -> BookingView:
    return BookingView(
        id=booking_id,
        code=code,
        person_id=person["id"],
        session_id=session["id"],
        site=session["site"],
        province=session["province"],
        day=session["day"],
        starts_at=session["starts_at"],
        product=session["product"],
        dose_number=plan.dose_number,
        dose_type=plan.dose_type,
        status="booked",
        created_at=clock.as_utc(created_at),
    )


async def _claim_place(session_id: Any) -> bool:
    taken = await (
        SiteSession.update({SiteSession.booked: SiteSession.booked + 1})
        .where(
            (SiteSession.id == session_id)
            & (SiteSession.booked < SiteSession.capacity)
            & (SiteSession.status == "open")
        )
        .returning(SiteSession.booked)
    )
    return bool(taken)


async def _insert_booking(
    *,
    booking_id: Any,
    code: str,
    person: dict[str, Any],
    session: dict[str, Any],
    rule: dict[str, Any],
    plan: eligibility.DosePlan,
    screening: dict[str, bool],
    justification: str,
    by: str,
    created_at: Any,
) -> None:
    await Booking.insert(
        Booking(
            id=booking_id,
            code=code,
            person=person["id"],
            subject_id=person["subject_id"],
            session=session["id"],
            site=session["site"],
            province=session["province"],
            product=session["product"],
            rule=rule["id"],
            dose_number=plan.dose_number,
            dose_type=plan.dose_type,
            status="booked",
            active_person=str(person["id"]),
            screening=screening,
            mixing_justification=justification.strip(),
            created_by=by,
            created_at=created_at,
        )
    )


async def _join_waitlist(
    platform: Platform, principal: Principal, person: dict[str, Any], session: dict[str, Any], body: BookingBody
) -> WaitlistView:
    group = await registry.group_of(platform, person["province"], person["priority_group"], field="person_id")
    entry_id = uuid.uuid4()

    async def enter() -> None:
        await WaitlistEntry.insert(
            WaitlistEntry(
                id=entry_id,
                active_key=f"{session['id']}:{person['id']}",
                session=session["id"],
                person=person["id"],
                subject_id=person["subject_id"],
                rank=group.rank,
                status="waiting",
                screening=body.screening,
                mixing_justification=body.mixing_justification.strip(),
                created_by=principal.id,
                created_at=clock.now(),
            )
        )

    try:
        await _queued_write(platform, enter)
    except Exception as exc:
        if is_unique_violation(exc):
            raise Conflict("person_id: this person is already on the waitlist of this session") from exc
        raise
    return WaitlistView(
        id=entry_id, session_id=session["id"], person_id=person["id"], rank=group.rank, status="waiting"
    )


async def _promote_waitlist(platform: Platform, session_id: Any) -> list[BookingView]:
    """Give free places to waiting people, best rank first, and queue their SMS; call inside the cancelling
    transaction."""
    promoted: list[BookingView] = []
    session = await registry.session_row(session_id)
    waiting = await (
        WaitlistEntry.select()
        .where((WaitlistEntry.session == session_id) & (WaitlistEntry.status == "waiting"))
        .order_by(WaitlistEntry.rank)
        .order_by(WaitlistEntry.created_at)
    )
    for entry in waiting:
        person = await Person.select().where(Person.id == entry["person"]).first()
        outcome = "skipped"
        if person is not None and not await Booking.exists().where(Booking.active_person == str(person["id"])):
            try:
                plan, rule = await check_eligibility(
                    platform, person, session, _decoded(entry["screening"]), entry["mixing_justification"]
                )
            except InvalidInput as exc:
                log.info("waitlist.skipped", entry=str(entry["id"]), reason=str(exc))
            else:
                if not await _claim_place(session_id):
                    break
                booking_id, code, created_at = uuid.uuid4(), new_code(), clock.now()
                await _insert_booking(
                    booking_id=booking_id,
                    code=code,
                    person=person,
                    session=session,
                    rule=rule,
                    plan=plan,
                    screening=_decoded(entry["screening"]),
                    justification=entry["mixing_justification"],
                    by=entry["created_by"],
                    created_at=created_at,
                )
                promoted.append(_new_booking_view(booking_id, code, person, session, plan, created_at))
                await _send_code(platform, person, promoted[-1], from_waitlist=True)
                outcome = "booked"
        await WaitlistEntry.update(
            {
                WaitlistEntry.status: outcome,
                WaitlistEntry.active_key: None,
                WaitlistEntry.booking: promoted[-1].id if outcome == "booked" else None,
            }
        ).where(WaitlistEntry.id == entry["id"])
    return promoted


async def _send_code(
    platform: Platform, person: dict[str, Any], booking: BookingView, *, from_waitlist: bool = False
) -> None:
    if not person["phone"]:
        return
    when = f"{booking.day:%d/%m/%Y} {booking.starts_at}"
    lead_vi = "Da co cho trong danh sach cho. " if from_waitlist else ""
    lead_en = "A place freed up on the waitlist. " if from_waitlist else ""
    await platform.messages.send(
        Message(
            channel="sms",
            recipient=person["phone"],
            kind="vaccination.booking",
            body_vi=f"{lead_vi}Lich tiem mui {booking.dose_number} ({booking.product}) luc {when} tai {booking.site}. "
            f"Ma dat lich: {booking.code}. Mang CCCD khi den.",
            body_en=f"{lead_en}Dose {booking.dose_number} ({booking.product}) on {when} at {booking.site}. "
            f"Booking code: {booking.code}. Bring your ID card.",
            province=booking.province,
        )
    )


def _check_session_open(session: dict[str, Any]) -> None:
    if session["status"] != "open":
        raise Conflict("session_id: the session is closed")
    if session["day"] < localtime.today():
        raise InvalidInput("session_id: the session is in the past")


def _decoded(value: Any) -> Any:
    # Piccolo hands JSON columns back as text.
    return msgspec.json.decode(value) if isinstance(value, str | bytes) else value


def _plan_fields(plan: eligibility.DosePlan) -> dict[str, Any]:
    return {"dose_number": plan.dose_number, "dose_type": plan.dose_type, "series_doses": plan.series_doses}
