"""People to vaccinate: registration (self, dependants, walk-ins, organisations in bulk) and
deduplication before anything is stored.

The same ID number is one person, whoever registers it. The same name and
date of birth, compared after Vietnamese-aware normalisation (Unicode NFC,
case, diacritics and spacing: "Nguyễn  Văn An" and "NGUYEN VAN AN" match), is
stored but flagged as a probable duplicate for staff to merge or mark
distinct; it is never silently taken as the same person, nor silently
accepted as a new one.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import uuid
from datetime import date
from typing import TYPE_CHECKING, Any

import msgspec

from core import Conflict, InvalidInput, NotFound, Resource, clock
from core.identity import normalize_phone
from core.tables import Citizen
from plugins.vaccination import localtime, registry
from plugins.vaccination.constraints import is_unique_violation
from plugins.vaccination.schemas import (
    BulkResult,
    BulkRowError,
    BulkRowResult,
    DuplicateView,
    PersonBody,
    PersonView,
    RegistrationView,
)
from plugins.vaccination.tables import AefiReport, Booking, Certificate, Dose, Person, WaitlistEntry

if TYPE_CHECKING:
    from core import Principal
    from core.platform import Platform

PURPOSE = "vaccination.records"
BULK_MAX_ROWS = 10_000
BULK_COLUMNS = ("full_name", "birth_date", "sex", "id_number", "phone", "province", "priority_group")
_ID_NUMBER = re.compile(r"^[A-Z0-9]{6,15}$")
# Lock keys for PostgreSQL advisory locks: one per account while its people are counted.
_ACCOUNT_LOCK = 0x7661636301


# -- names and ID numbers -------------------------------------------------------------------


def clean_name(name: str) -> str:
    """The name as shown: NFC, single spaces, no leading or trailing space."""
    return " ".join(unicodedata.normalize("NFC", name).split())


def name_key(name: str) -> str:
    """The name as compared: no case, no diacritics (đ counts as d), single spaces."""
    text = unicodedata.normalize("NFC", name).casefold().replace("đ", "d")
    text = "".join(ch for ch in unicodedata.normalize("NFD", text) if not unicodedata.combining(ch))
    return " ".join(text.split())


def normalise_id_number(raw: str, *, field: str = "id_number") -> str:
    """Citizen ID (12 digits), old ID card (9 digits) or passport number, without spaces or dots."""
    cleaned = re.sub(r"[\s.\-]", "", raw).upper()
    if not _ID_NUMBER.match(cleaned):
        raise InvalidInput(f"{field}: use the 12-digit citizen ID, the 9-digit ID card number or a passport number")
    if cleaned.isdigit() and len(cleaned) not in (9, 12):
        raise InvalidInput(f"{field}: a citizen ID has 12 digits and an old ID card 9; got {len(cleaned)}")
    return cleaned


def split_name(full_name: str) -> tuple[str, str]:
    """Vietnamese order is family name first: "Nguyễn Văn An" -> ("Nguyễn", "Văn An")."""
    family, _, given = clean_name(full_name).partition(" ")
    return family, given


# -- registration ---------------------------------------------------------------------------


async def register(platform: Platform, principal: Principal, body: PersonBody) -> RegistrationView:
    """Register a person: a citizen for themselves or a dependant, or staff for a walk-in."""
    full_name = _checked_name(body.full_name)
    _check_birth_date(body.birth_date)
    id_number = normalise_id_number(body.id_number)
    if not await platform.province_exists(body.province):
        raise InvalidInput(f"province: unknown province code {body.province!r}")
    group = await registry.group_of(platform, body.province, body.priority_group)
    phone = normalize_phone(body.phone) if body.phone else None
    if principal.kind == "citizen":
        assert principal.subject_id is not None
        subject = principal.subject_id
        channel = body.relationship
        account_phone = await _account_phone(subject)
        phone = phone or account_phone
    else:
        await platform.access.check(
            principal,
            "vaccination.person.register",
            Resource(kind="vaccination_person", province=principal.province or body.province, site=principal.site),
        )
        subject, channel, account_phone = "", "walk_in", None

    existing = await Person.select().where(Person.id_number == id_number).first()
    if existing is not None:
        return await _existing(platform, principal, existing, subject, account_phone)

    person_id = uuid.uuid4()
    row = {
        "id": person_id,
        "subject_id": subject or f"person:{person_id}",
        "account_holder": channel == "self",
        "full_name": full_name,
        "name_key": name_key(full_name),
        "birth_date": body.birth_date,
        "birth_year": body.birth_date.year,
        "sex": body.sex,
        "id_number": id_number,
        "phone": phone,
        "province": body.province,
        "priority_group": group.code,
        "channel": channel,
        "registered_by": principal.id,
    }
    try:
        async with platform.db.transaction():
            if principal.kind == "citizen":
                await _check_account_limits(platform, subject, channel)
            stored = await _insert_checked(row)
    except Exception as exc:
        if is_unique_violation(exc):
            raise Conflict("id_number: this ID number was registered a moment ago; reload and try again") from exc
        raise
    if stored["duplicate_status"] == "probable":
        detail = "Registered, and flagged for staff review: a person with the same name and date of birth exists."
        outcome = "probable_duplicate"
    else:
        detail, outcome = "Registered.", "created"
    return RegistrationView(person=person_view(stored), outcome=outcome, detail=detail)


async def get_person(platform: Platform, principal: Principal, person_id: Any, *, action: str) -> dict[str, Any]:
    """A person the principal may reach for ``action``; staff reads are audited."""
    row = await Person.select().where(Person.id == person_id).first()
    if row is None:
        raise NotFound("person_id: no such person")
    await platform.access.check(principal, action, person_resource(row))
    await audit_read(platform, principal, action, [row])
    return row


async def list_people(platform: Platform, principal: Principal, *, limit: int, offset: int) -> list[PersonView]:
    scope = await platform.access.scope(principal, "vaccination.person.list")
    query = Person.select().where(Person.duplicate_status != "merged")
    where = scope.where(province=Person.province, subject=Person.subject_id)
    if where is not None:
        query = query.where(where)
    rows = await query.order_by(Person.created_at).limit(limit).offset(offset)
    await audit_read(platform, principal, "vaccination.person.list", rows)
    return [person_view(row) for row in rows]


async def audit_read(platform: Platform, principal: Principal, action: str, rows: list[dict[str, Any]]) -> None:
    """One audit record per person read, unless a citizen reads the people of their own account."""
    others = [row for row in rows if row["subject_id"] != principal.subject_id]
    if others:
        await platform.audit.record(principal, action, [person_resource(row) for row in others], purpose=PURPOSE)


def person_resource(row: dict[str, Any]) -> Resource:
    return Resource(
        kind="vaccination_person", id=str(row["id"]), province=row["province"], subject_id=row["subject_id"]
    )


def person_view(row: dict[str, Any]) -> PersonView:
    return PersonView(
        id=row["id"],
        full_name=row["full_name"],
        birth_date=row["birth_date"],
        sex=row["sex"],
        id_number=row["id_number"],
        phone=row["phone"],
        province=row["province"],
        priority_group=row["priority_group"],
        channel=row["channel"],
        account_holder=bool(row["account_holder"]),
        duplicate_status=row["duplicate_status"],
        duplicate_of=row["duplicate_of"],
        doses_received=row["doses_received"],
        primary_complete=bool(row["primary_complete"]),
        boosters=row["boosters"],
        last_dose_on=row["last_dose_on"],
        next_due_on=row["next_due_on"],
    )


# -- duplicates --------------------------------------------------------------------------------


async def list_duplicates(platform: Platform, principal: Principal, *, limit: int) -> list[DuplicateView]:
    scope = await platform.access.scope(principal, "vaccination.duplicate.review")
    query = Person.select().where(Person.duplicate_status == "probable")
    where = scope.where(province=Person.province)
    if where is not None:
        query = query.where(where)
    flagged = await query.order_by(Person.created_at).limit(limit)
    originals = {
        row["id"]: row
        for row in (
            await Person.select().where(Person.id.is_in([r["duplicate_of"] for r in flagged])) if flagged else []
        )
    }
    pairs = [(row, originals[row["duplicate_of"]]) for row in flagged if row["duplicate_of"] in originals]
    await audit_read(platform, principal, "vaccination.duplicate.review", [p for pair in pairs for p in pair])
    return [DuplicateView(person=person_view(a), probable_duplicate_of=person_view(b)) for a, b in pairs]


async def resolve_duplicate(platform: Platform, principal: Principal, person_id: Any, decision: str) -> PersonView:
    """``distinct``: two different people. ``merge``: fold this record into the one it duplicates."""
    row = await Person.select().where(Person.id == person_id).first()
    if row is None:
        raise NotFound("person_id: no such person")
    await platform.access.check(principal, "vaccination.duplicate.review", person_resource(row))
    if row["duplicate_status"] != "probable":
        raise Conflict(f"person_id: this person is not flagged as a probable duplicate ({row['duplicate_status']})")
    if decision == "distinct":
        await Person.update({Person.duplicate_status: "distinct"}).where(Person.id == person_id)
        kept = row["id"]
    else:
        from plugins.vaccination import doses  # doses imports this module

        await doses.merge_people(platform, principal, duplicate=row["id"], into=row["duplicate_of"])
        kept = row["duplicate_of"]
    await platform.audit.record(
        principal, f"vaccination.duplicate.{decision}", person_resource(row), purpose=PURPOSE, detail=str(kept)
    )
    updated = await Person.select().where(Person.id == kept).first()
    assert updated is not None
    return person_view(updated)


# -- bulk registration --------------------------------------------------------------------------


class _BulkRow(msgspec.Struct, kw_only=True):
    full_name: str
    birth_date: date
    sex: str
    id_number: str
    phone: str | None
    province: str
    priority_group: str


async def bulk_register(platform: Platform, principal: Principal, data: bytes, *, dry_run: bool) -> BulkResult:
    """Register people from a CSV file: every row is checked first; any error stores nothing.

    Columns: full_name, birth_date (YYYY-MM-DD), sex (female/male/other),
    id_number, phone (optional), province (2 digits), priority_group. A row
    whose ID number is already registered is reported as ``existing`` and
    left as it is.
    """
    rows, errors = await _parse_bulk(platform, principal, data)
    result = BulkResult(
        stored=False,
        rows=len(rows) + len({e.row for e in errors}),
        created=0,
        existing=0,
        probable_duplicates=0,
        results=[],
        errors=errors,
    )
    if errors or dry_run:
        return result
    results: list[BulkRowResult] = []
    try:
        async with platform.db.transaction():
            for number, item in rows:
                existing = await Person.select(Person.id).where(Person.id_number == item.id_number).first()
                if existing is not None:
                    results.append(BulkRowResult(row=number, outcome="existing", person_id=existing["id"]))
                    continue
                person_id = uuid.uuid4()
                stored = await _insert_checked(
                    {
                        "id": person_id,
                        "subject_id": f"person:{person_id}",
                        "account_holder": False,
                        "full_name": item.full_name,
                        "name_key": name_key(item.full_name),
                        "birth_date": item.birth_date,
                        "birth_year": item.birth_date.year,
                        "sex": item.sex,
                        "id_number": item.id_number,
                        "phone": item.phone,
                        "province": item.province,
                        "priority_group": item.priority_group,
                        "channel": "bulk",
                        "registered_by": principal.id,
                    }
                )
                outcome = "probable_duplicate" if stored["duplicate_status"] == "probable" else "created"
                results.append(BulkRowResult(row=number, outcome=outcome, person_id=person_id))
    except Exception as exc:
        if is_unique_violation(exc):
            raise Conflict("id_number: an ID number in the file was registered meanwhile; send the file again") from exc
        raise
    result.stored = True
    result.results = results
    result.created = sum(r.outcome == "created" for r in results)
    result.probable_duplicates = sum(r.outcome == "probable_duplicate" for r in results)
    result.existing = sum(r.outcome == "existing" for r in results)
    return result


async def _parse_bulk(
    platform: Platform, principal: Principal, data: bytes
) -> tuple[list[tuple[int, _BulkRow]], list[BulkRowError]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput("file: the CSV must be UTF-8 encoded") from exc
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in BULK_COLUMNS if c != "phone" and c not in (reader.fieldnames or [])]
    if missing:
        raise InvalidInput(f"file: the header lacks column(s) {', '.join(missing)}; expected {', '.join(BULK_COLUMNS)}")
    try:
        records = list(reader)
    except csv.Error as exc:
        raise InvalidInput(f"file: not a readable CSV file: {exc}") from exc
    if len(records) > BULK_MAX_ROWS:
        raise InvalidInput(f"file: at most {BULK_MAX_ROWS} rows per file; split it")
    if not records:
        raise InvalidInput("file: the CSV has a header but no rows")
    checker = _BulkChecker(platform, await _bulk_provinces(platform, principal))
    rows: list[tuple[int, _BulkRow]] = []
    errors: list[BulkRowError] = []
    for number, record in enumerate(records, start=2):  # row 1 is the header
        row, row_errors = await checker.check(number, record)
        errors.extend(row_errors)
        if row is not None:
            rows.append((number, row))
    return rows, errors


class _BulkChecker:
    """Checks CSV rows one by one, remembering ID numbers seen and each province's groups."""

    def __init__(self, platform: Platform, allowed_provinces: set[str] | None) -> None:
        self.platform = platform
        self.allowed_provinces = allowed_provinces
        self.seen: dict[str, int] = {}
        self.groups: dict[str, set[str]] = {}

    async def check(self, number: int, record: dict[str, Any]) -> tuple[_BulkRow | None, list[BulkRowError]]:
        errors: list[BulkRowError] = []

        def fail(field: str, message: str) -> None:
            errors.append(BulkRowError(row=number, field=field, message=message))

        values = {key: str(record.get(key) or "").strip() for key in BULK_COLUMNS}
        name = clean_name(values["full_name"])
        if not (2 <= len(name) <= 200) or not any(ch.isalpha() for ch in name):
            fail("full_name", "give the full name (2 to 200 characters)")
        birth: date | None = None
        try:
            birth = date.fromisoformat(values["birth_date"])
            _check_birth_date(birth)
        except InvalidInput as exc:
            fail("birth_date", _reason(exc))
        except ValueError:
            fail("birth_date", "use YYYY-MM-DD")
        if values["sex"] not in ("female", "male", "other"):
            fail("sex", "use female, male or other")
        id_number = ""
        try:
            id_number = normalise_id_number(values["id_number"])
        except InvalidInput as exc:
            fail("id_number", _reason(exc))
        if id_number in self.seen:
            fail("id_number", f"the same ID number is on row {self.seen[id_number]}")
        elif id_number:
            self.seen[id_number] = number
        phone = None
        if values["phone"]:
            try:
                phone = normalize_phone(values["phone"])
            except InvalidInput as exc:
                fail("phone", _reason(exc))
        province, group = values["province"], values["priority_group"]
        if not re.fullmatch(r"[0-9]{2}", province) or not await self.platform.province_exists(province):
            fail("province", f"unknown province code {province!r}")
        elif self.allowed_provinces is not None and province not in self.allowed_provinces:
            fail("province", f"you may register people of province(s) {', '.join(sorted(self.allowed_provinces))} only")
        elif group not in await self._groups(province):
            fail("priority_group", f"unknown priority group {group!r}")
        if errors or birth is None:
            return None, errors
        row = _BulkRow(
            full_name=name,
            birth_date=birth,
            sex=values["sex"],
            id_number=id_number,
            phone=phone,
            province=province,
            priority_group=group,
        )
        return row, errors

    async def _groups(self, province: str) -> set[str]:
        if province not in self.groups:
            self.groups[province] = {g.code for g in await registry.priority_groups(self.platform, province)}
        return self.groups[province]


def _reason(exc: InvalidInput) -> str:
    """The message without its leading field name: in a per-row report the field is a column."""
    return str(exc).partition(": ")[2]


async def _bulk_provinces(platform: Platform, principal: Principal) -> set[str] | None:
    """The provinces whose people ``principal`` may register in bulk; None means any."""
    scope = await platform.access.scope(principal, "vaccination.person.bulk_register")
    if scope.everything:
        return None
    if not scope.provinces:
        raise InvalidInput("file: your account is not scoped to a province, so it cannot register people in bulk")
    return set(scope.provinces)


# -- helpers ---------------------------------------------------------------------------------------


async def _existing(
    platform: Platform, principal: Principal, existing: dict[str, Any], subject: str, account_phone: str | None
) -> RegistrationView:
    """A registration whose ID number is known: the same person, never a second record."""
    if principal.kind != "citizen":
        await audit_read(platform, principal, "vaccination.person.register", [existing])
        return RegistrationView(
            person=person_view(existing), outcome="existing", detail="This ID number is already registered."
        )
    if existing["subject_id"] == subject:
        return RegistrationView(
            person=person_view(existing), outcome="existing", detail="Already registered on your account."
        )
    unclaimed = existing["subject_id"].startswith("person:")
    if unclaimed and existing["phone"] and existing["phone"] == account_phone:
        # Registered by staff or an organisation with this very phone: the account holder claims the record.
        await _move_subject(platform, existing["id"], subject)
        claimed = await Person.select().where(Person.id == existing["id"]).first()
        assert claimed is not None
        return RegistrationView(
            person=person_view(claimed), outcome="existing", detail="Found your earlier registration and linked it."
        )
    raise Conflict(
        "id_number: this ID number is already registered by someone else. "
        "If it is yours, bring your ID card to a vaccination site to have the record corrected."
    )


async def _insert_checked(row: dict[str, Any]) -> dict[str, Any]:
    """Insert a person, flagged as a probable duplicate when the name and birth date match someone."""
    twin = (
        await Person.select(Person.id)
        .where(
            (Person.name_key == row["name_key"])
            & (Person.birth_date == row["birth_date"])
            & (Person.duplicate_status != "merged")
        )
        .order_by(Person.created_at)
        .first()
    )
    row = {
        **row,
        "duplicate_status": "probable" if twin else "none",
        "duplicate_of": twin["id"] if twin else None,
        "created_at": clock.now(),
    }
    await Person.insert(Person(**row))
    stored = await Person.select().where(Person.id == row["id"]).first()
    assert stored is not None
    return stored


async def _check_account_limits(platform: Platform, subject: str, channel: str) -> None:
    if platform.db.kind == "postgres":
        # Serialise registrations per account, so two at once cannot both pass the limit.
        await platform.db.execute("SELECT pg_advisory_xact_lock({}, hashtext({}))", _ACCOUNT_LOCK >> 8, subject)
    if channel == "self":
        if await Person.exists().where((Person.subject_id == subject) & (Person.account_holder == True)):  # noqa: E712
            raise Conflict(
                "relationship: this account has registered its holder already; register others as dependants"
            )
        return
    limit = platform.plugin_config("vaccination").max_dependants
    dependants = await Person.count().where(
        (Person.subject_id == subject) & (Person.account_holder == False)  # noqa: E712
    )
    if dependants >= limit:
        raise Conflict(f"relationship: one account can register at most {limit} dependants")


async def _move_subject(platform: Platform, person_id: Any, subject: str) -> None:
    async with platform.db.transaction():
        await Person.update({Person.subject_id: subject}).where(Person.id == person_id)
        for table in (Booking, WaitlistEntry, Dose, AefiReport, Certificate):
            await table.update({table.subject_id: subject}).where(table.person == person_id)  # type: ignore[attr-defined]


async def _account_phone(subject: str) -> str | None:
    row = await Citizen.select(Citizen.phone).where(Citizen.id == subject).first()
    return row["phone"] if row else None


def _checked_name(raw: str) -> str:
    name = clean_name(raw)
    if len(name) < 2 or not any(ch.isalpha() for ch in name):
        raise InvalidInput("full_name: give the full name as on the ID card")
    return name


def _check_birth_date(birth: date) -> None:
    today = localtime.today()
    if birth > today:
        raise InvalidInput("birth_date: cannot be in the future")
    if today.year - birth.year > 130:
        raise InvalidInput("birth_date: more than 130 years ago")
