"""Who may have which dose when: age, interval since the last dose, mixing of products, and
the contraindication screening questions. Used at booking and again at the site.

Every refusal is an ``InvalidInput`` whose message starts with the field to
fix and says what would be acceptable.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import msgspec

from core import InvalidInput
from plugins.vaccination.localtime import age_on
from plugins.vaccination.schemas import ScreeningQuestion

# The pre-vaccination screening of the Ministry of Health's guidance (Decision 2995/QĐ-BYT, 2021).
SCREENING_QUESTIONS: tuple[ScreeningQuestion, ...] = (
    ScreeningQuestion(
        id="anaphylaxis_previous_dose",
        text_vi="Có phản vệ độ 3 trở lên sau lần tiêm vắc xin COVID-19 trước?",
        text_en="A severe allergic reaction (anaphylaxis grade 3+) after an earlier COVID-19 dose?",
        if_yes="contraindicated",
    ),
    ScreeningQuestion(
        id="allergy_to_component",
        text_vi="Dị ứng với bất kỳ thành phần nào của vắc xin?",
        text_en="An allergy to any component of the vaccine?",
        if_yes="contraindicated",
    ),
    ScreeningQuestion(
        id="acute_illness",
        text_vi="Đang sốt trên 37,5°C hoặc mắc bệnh cấp tính?",
        text_en="A fever above 37.5 °C or an acute illness now?",
        if_yes="defer",
    ),
    ScreeningQuestion(
        id="covid_last_6_months",
        text_vi="Mắc COVID-19 trong vòng 6 tháng qua?",
        text_en="Had COVID-19 in the past 6 months?",
        if_yes="defer",
    ),
    ScreeningQuestion(
        id="pregnant",
        text_vi="Đang mang thai?",
        text_en="Pregnant?",
        if_yes="precaution",
    ),
    ScreeningQuestion(
        id="immunocompromised_or_anticoagulated",
        text_vi="Suy giảm miễn dịch hoặc đang dùng thuốc chống đông?",
        text_en="Immunocompromised, or taking anticoagulants?",
        if_yes="precaution",
    ),
)
_QUESTIONS = {q.id: q for q in SCREENING_QUESTIONS}


class DosePlan(msgspec.Struct, frozen=True, kw_only=True):
    """The dose a person would get: its number, type, and the series size certificates show."""

    dose_number: int
    dose_type: str  # primary | booster
    series_doses: int
    precautions: tuple[str, ...] = ()


class History(msgspec.Struct, frozen=True, kw_only=True):
    """What matters of a person's earlier doses."""

    doses_received: int
    last_dose_on: date | None
    last_product: str | None


def screen(answers: dict[str, bool], *, field: str = "screening") -> tuple[str, ...]:
    """Check every question is answered; refuse on a contraindication or a reason to defer.

    Returns the precautions (questions answered yes that allow the dose with care).
    """
    unknown = sorted(set(answers) - set(_QUESTIONS))
    if unknown:
        raise InvalidInput(f"{field}: unknown question(s) {', '.join(unknown)}")
    missing = [q.id for q in SCREENING_QUESTIONS if q.id not in answers]
    if missing:
        raise InvalidInput(f"{field}: answer every screening question; missing {', '.join(missing)}")
    yes = [_QUESTIONS[qid] for qid, answer in answers.items() if answer]
    contraindicated = [q.id for q in yes if q.if_yes == "contraindicated"]
    if contraindicated:
        raise InvalidInput(
            f"{field}.{contraindicated[0]}: a contraindication; this vaccine must not be given. "
            "A doctor will advise on alternatives."
        )
    deferred = [q.id for q in yes if q.if_yes == "defer"]
    if deferred:
        raise InvalidInput(
            f"{field}.{deferred[0]}: vaccination must be postponed; book again when it no longer applies"
        )
    return tuple(q.id for q in yes if q.if_yes == "precaution")


def plan_dose(
    *,
    birth_date: date,
    history: History,
    product: str,
    rule: dict[str, Any],
    on: date,
    mixing_justification: str,
    when_field: str,
) -> DosePlan:
    """The next dose of ``product`` under ``rule`` on ``on``, or an ``InvalidInput`` saying why not.

    ``when_field`` names the input that chose the date (a session, a booking,
    or the time of administration), so the refusal points at it.
    """
    age = age_on(birth_date, on)
    if age < rule["min_age_years"] or (rule["max_age_years"] is not None and age > rule["max_age_years"]):
        upper = f" to {rule['max_age_years']}" if rule["max_age_years"] is not None else " and over"
        raise InvalidInput(
            f"person_id: aged {age} on {on}; {product} is for people aged {rule['min_age_years']}{upper}"
        )
    number = history.doses_received + 1
    primary = rule["primary_doses"]
    boosters_allowed = rule["booster_doses"]
    if number > primary + boosters_allowed:
        raise InvalidInput(
            f"person_id: already has {history.doses_received} dose(s); the rule for {product} allows "
            f"{primary} primary and {boosters_allowed} booster dose(s)"
        )
    dose_type = "primary" if number <= primary else "booster"
    if history.last_dose_on is not None:
        needed = rule["min_interval_days"] if dose_type == "primary" else rule["booster_min_interval_days"]
        due = history.last_dose_on + timedelta(days=needed or 0)
        if on < due:
            raise InvalidInput(
                f"{when_field}: too early: dose {number} of {product} is due from {due}, "
                f"{needed} days after the dose of {history.last_dose_on}"
            )
    if history.last_product is not None and history.last_product != product and not mixing_justification.strip():
        raise InvalidInput(
            f"mixing_justification: dose {number} would be {product} after {history.last_product}; "
            "record why the products are mixed"
        )
    return DosePlan(dose_number=number, dose_type=dose_type, series_doses=series_doses(number, primary))


def series_doses(dose_number: int, primary_doses: int) -> int:
    """The ``sd`` of an EU certificate: the primary series, or for boosters the eHN convention
    (3/3 after a two-dose series, 2/1 after a one-dose vaccine)."""
    if dose_number <= primary_doses:
        return primary_doses
    return 1 if primary_doses == 1 else dose_number
