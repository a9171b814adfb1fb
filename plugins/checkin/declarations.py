"""The electronic health declaration: a versioned questionnaire, answer checks, and risk flags.

The national questions (symptoms, contact with a case, travel) come first;
a venue's province may add its own through the ``checkin_declaration_questions``
hook, which runs only for venues in that province. The questionnaire's
version names the national version and a digest of the province's
additions, so a stored declaration always says which questions it answered
and a client holding an old form is told to fetch the new one.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec
import structlog

from core import Principal, Resource, clock
from core.errors import Conflict, InvalidInput
from plugins.checkin.schemas import DeclarationBody, FlagView
from plugins.checkin.tables import Declaration, Visit

if TYPE_CHECKING:
    from core.platform import Platform
    from plugins.checkin.venues import VenueFacts

log = structlog.get_logger("checkin.declarations")

NATIONAL_VERSION = "vn-2021.3"


class Choice(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    label_vi: str
    label_en: str


class Question(msgspec.Struct, frozen=True, kw_only=True):
    """One question. ``risk`` names the flag raised when the answer is in ``risky_answers``.

    For ``yes_no`` questions the risky answer is ``"yes"`` unless
    ``risky_answers`` says ``("no",)``; for choices, the codes listed.
    Province plugins prefix their ids with something of their own
    (``hn.``), since an id the national form uses is ignored.
    """

    id: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_.]{1,60}$")]
    kind: Literal["yes_no", "single_choice", "multi_choice", "text"]
    text_vi: str
    text_en: str
    choices: tuple[Choice, ...] = ()
    required: bool = True
    risk: str | None = None
    risky_answers: tuple[str, ...] = ()


class Questionnaire(msgspec.Struct, frozen=True, kw_only=True):
    version: str
    questions: tuple[Question, ...]


class Assessment(msgspec.Struct, frozen=True, kw_only=True):
    """Checked answers, and the risk flags they raise (empty when nothing signals risk)."""

    version: str
    answers: dict[str, bool | str | list[str]]
    risk_flags: tuple[str, ...]

    @property
    def risky(self) -> bool:
        return bool(self.risk_flags)


SYMPTOMS = (
    Choice(code="fever", label_vi="Sốt", label_en="Fever"),
    Choice(code="cough", label_vi="Ho", label_en="Cough"),
    Choice(code="breathless", label_vi="Khó thở", label_en="Shortness of breath"),
    Choice(code="sore_throat", label_vi="Đau họng", label_en="Sore throat"),
    Choice(code="taste_smell", label_vi="Mất vị giác, khứu giác", label_en="Loss of taste or smell"),
    Choice(code="fatigue", label_vi="Mệt mỏi", label_en="Fatigue"),
    Choice(code="none", label_vi="Không có triệu chứng", label_en="None of these"),
)

NATIONAL_QUESTIONS: tuple[Question, ...] = (
    Question(
        id="symptoms",
        kind="multi_choice",
        text_vi="Trong 14 ngày qua, bạn có triệu chứng nào sau đây không?",
        text_en="In the past 14 days, have you had any of these symptoms?",
        choices=SYMPTOMS,
        risk="symptoms",
        risky_answers=tuple(c.code for c in SYMPTOMS if c.code != "none"),
    ),
    Question(
        id="contact_case",
        kind="yes_no",
        text_vi="Trong 14 ngày qua, bạn có tiếp xúc với ca bệnh, người nghi nhiễm COVID-19 không?",
        text_en="In the past 14 days, were you in contact with a confirmed or suspected COVID-19 case?",
        risk="contact",
    ),
    Question(
        id="travel",
        kind="yes_no",
        text_vi="Trong 14 ngày qua, bạn có đến nơi đang có dịch (trong hoặc ngoài nước) không?",
        text_en="In the past 14 days, have you been to a place with community transmission?",
        risk="travel",
    ),
    Question(
        id="travel_where",
        kind="text",
        text_vi="Nếu có, bạn đã đến đâu?",
        text_en="If so, where?",
        required=False,
    ),
)


async def questionnaire_for(platform: Platform, venue: VenueFacts) -> Questionnaire:
    """The national questions plus those the venue's province adds, under one version.

    The province's hooks are asked every time (their answer may change, see the hookspec);
    a province with no such hook gets the national questionnaire without a call.
    """
    if not platform.hooks.impls("checkin_declaration_questions", venue.province):
        return NATIONAL_QUESTIONNAIRE
    questions = list(NATIONAL_QUESTIONS)
    known = {q.id for q in questions}
    added: list[Question] = []
    groups = await platform.hooks.collect(
        "checkin_declaration_questions", province=venue.province, venue=venue, platform=platform
    )
    for group in groups:
        for question in group:
            if not isinstance(question, Question) or question.id in known:
                log.warning("checkin.question_ignored", province=venue.province, question=repr(question)[:80])
                continue
            known.add(question.id)
            added.append(question)
    if not added:
        return NATIONAL_QUESTIONNAIRE
    digest = hashlib.sha256(msgspec.json.encode(added)).hexdigest()[:10]
    return Questionnaire(version=f"{NATIONAL_VERSION}+{venue.province}.{digest}", questions=(*questions, *added))


def assess(questionnaire: Questionnaire, body: DeclarationBody, *, field: str = "declaration") -> Assessment:
    """Check the answers against the questionnaire; 409 for an outdated form, 400 naming a bad answer."""
    if body.questionnaire_version != questionnaire.version:
        raise Conflict(
            f"{field}.questionnaire_version: the form changed (now {questionnaire.version}); "
            "fetch the current questions and answer again"
        )
    given = body.answers
    if questionnaire is NATIONAL_QUESTIONNAIRE:
        ids = _NATIONAL_IDS
    else:
        ids = frozenset(q.id for q in questionnaire.questions)
    if not ids.issuperset(given):
        unknown = sorted(set(given) - ids)
        raise InvalidInput(f"{field}.answers.{unknown[0]}: no such question in this form")
    answers: dict[str, bool | str | list[str]] = {}
    flags: list[str] = []
    for question in questionnaire.questions:
        if question.id not in given:
            if question.required:
                raise InvalidInput(f"{field}.answers.{question.id}: this question must be answered")
            continue
        value = _checked(question, given[question.id], field)
        answers[question.id] = value
        if question.risk and question.risk not in flags and _is_risky(question, value):
            flags.append(question.risk)
    return Assessment(version=questionnaire.version, answers=answers, risk_flags=tuple(flags))


async def risky_declarations(platform: Platform, principal: Principal, *, hours: int, limit: int) -> list[FlagView]:
    """Declarations of the last ``hours`` that raised a flag, in the principal's provinces; audited."""
    scope = await platform.access.scope(principal, "checkin.flag.list")
    since = int(clock.now().timestamp()) - hours * 3600
    query = (
        Declaration.select()
        .where((Declaration.risky == True) & (Declaration.declared_at >= since))  # noqa: E712
        .order_by(Declaration.declared_at, ascending=False)
        .limit(limit)
    )
    clause = scope.where(province=Declaration.province)
    if clause is not None:
        query = query.where(clause)
    rows = await query
    visits = {}
    if rows:
        found = await Visit.select(Visit.id, Visit.full_name, Visit.phone).where(
            Visit.id.is_in([row["visit_id"] for row in rows]) & (Visit.arrived_at >= since - 86400)
        )
        visits = {str(v["id"]): v for v in found}
    flags = []
    for row in rows:
        visit = visits.get(str(row["visit_id"]), {})
        flags.append(
            FlagView(
                declaration_id=str(row["id"]),
                visit_id=str(row["visit_id"]),
                venue_id=str(row["venue_id"]),
                province=row["province"],
                subject_id=row["subject_id"],
                full_name=visit.get("full_name", ""),
                phone=visit.get("phone"),
                declared_at=datetime.fromtimestamp(row["declared_at"], tz=UTC),
                risk_flags=list(_json_list(row["risk_flags"])),
            )
        )
    await platform.audit.record(
        principal,
        "checkin.flag.list",
        [
            Resource(kind="declaration", id=f.declaration_id, province=f.province, subject_id=f.subject_id)
            for f in flags
        ],
        purpose="checkin.declaration",
    )
    return flags


def _json_list(value: object) -> list[str]:
    # Piccolo hands JSON columns back as text on some engines.
    decoded = msgspec.json.decode(value) if isinstance(value, str | bytes) else value
    return [str(item) for item in decoded] if isinstance(decoded, list) else []


def _checked(question: Question, value: bool | str | list[str], field: str) -> bool | str | list[str]:
    match question.kind:
        case "yes_no":
            if not isinstance(value, bool):
                raise InvalidInput(f"{field}.answers.{question.id}: answer true or false")
            return value
        case "single_choice":
            codes = _codes(question)
            if not isinstance(value, str) or value not in codes:
                raise InvalidInput(f"{field}.answers.{question.id}: choose one of {', '.join(sorted(codes))}")
            return value
        case "multi_choice":
            codes = _codes(question)
            if not isinstance(value, list) or not codes.issuperset(value):
                raise InvalidInput(f"{field}.answers.{question.id}: choose from {', '.join(sorted(codes))}")
            if question.required and not value:
                raise InvalidInput(f"{field}.answers.{question.id}: choose at least one")
            chosen = sorted(set(value))
            if "none" in chosen and len(chosen) > 1:
                raise InvalidInput(f"{field}.answers.{question.id}: 'none' cannot be chosen with other answers")
            return chosen
        case _:
            if not isinstance(value, str):
                raise InvalidInput(f"{field}.answers.{question.id}: answer with text")
            return value.strip()


def _codes(question: Question) -> frozenset[str]:
    """The codes a choice question accepts (the national questions' are worked out once)."""
    codes = _NATIONAL_CODES.get(question.id)
    if codes is not None and question is _NATIONAL_BY_ID[question.id]:
        return codes
    return frozenset(choice.code for choice in question.choices)


def _is_risky(question: Question, value: bool | str | list[str]) -> bool:
    if question.kind == "yes_no":
        return ("yes" if value else "no") in (question.risky_answers or ("yes",))
    if isinstance(value, list):
        return any(code in question.risky_answers for code in value)
    return value in question.risky_answers


# The questionnaire of a venue whose province adds no questions: the same object every time.
NATIONAL_QUESTIONNAIRE = Questionnaire(version=NATIONAL_VERSION, questions=NATIONAL_QUESTIONS)
_NATIONAL_IDS = frozenset(q.id for q in NATIONAL_QUESTIONS)
_NATIONAL_BY_ID = {q.id: q for q in NATIONAL_QUESTIONS}
_NATIONAL_CODES = {q.id: frozenset(choice.code for choice in q.choices) for q in NATIONAL_QUESTIONS}
