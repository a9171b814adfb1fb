"""The questions Hà Nội adds to the national health declaration at its venues (2021)."""

from __future__ import annotations

from plugins.checkin.declarations import Question
from provinces.hanoi.settings import HanoiSettings

TRAVEL_PERMIT = "hn.travel_permit"
WORKPLACE = "hn.workplace"
LOCKDOWN_AREA = "hn.lockdown_area"


def questions(settings: HanoiSettings) -> list[Question]:
    return [
        Question(
            id=TRAVEL_PERMIT,
            kind="text",
            text_vi="Số giấy đi đường (do công an phường, xã cấp)",
            text_en="Travel permit number (issued by the ward police)",
            required=settings.travel_permit_required,
        ),
        Question(
            id=WORKPLACE,
            kind="text",
            text_vi="Nơi làm việc (tên cơ quan, địa chỉ)",
            text_en="Workplace (name and address)",
            required=False,
        ),
        Question(
            id=LOCKDOWN_AREA,
            kind="yes_no",
            text_vi="Trong 14 ngày qua, bạn có ở trong khu vực đang bị phong tỏa tại Hà Nội không?",
            text_en="In the past 14 days, have you stayed in an area of Hà Nội under lockdown?",
            risk="hn.lockdown_area",
        ),
    ]
