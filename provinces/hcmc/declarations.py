"""The question the city adds to the national health declaration at its venues."""

from __future__ import annotations

from plugins.checkin.declarations import Question

F0_AT_HOME = "hcm.f0_at_home"


def questions() -> list[Question]:
    # From August 2021 most F0 in the city were treated at home; their households were the next F1.
    return [
        Question(
            id=F0_AT_HOME,
            kind="yes_no",
            text_vi="Trong nhà bạn có người mắc COVID-19 (F0) đang điều trị tại nhà không?",
            text_en="Is anyone in your household being treated for COVID-19 (F0) at home?",
            risk="hcm.f0_at_home",
        )
    ]
