"""Demo data for ``phongdich demo``: venues in each demo province, and a morning of check-ins.

The venues belong to the demo venue operators' sites (``venue-hn-1``...), so
``hn.venue_operator`` can print their posters and see their figures at once;
the check-ins are proxy declarations made by that operator (audited as
such), one of them with a symptom, so the province's epidemiologist has a
flagged declaration to follow up and visits that overlap, for tracing.
Idempotent: a site that already has venues is left as it is.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from core import Principal, clock
from core.demo import DEMO_PROVINCES
from core.principal import VENUE_OPERATOR
from plugins.checkin.declarations import Questionnaire, questionnaire_for
from plugins.checkin.schemas import ProxyBody, VenueBody
from plugins.checkin.tables import Venue
from plugins.checkin.venues import load_venue, register_venue
from plugins.checkin.visits import declare_by_proxy

if TYPE_CHECKING:
    from core.platform import Platform

# (name, type, capacity, default stay in minutes, sub-locations)
VENUES = (
    ("Quán cà phê Hoa Sữa", "cafe", 40, 45, ("Tầng 1", "Tầng 2")),
    ("Chợ phường", "market", 600, 60, ()),
    ("Nhà hàng Sen Vàng", "restaurant", 120, 90, ("Bàn 1", "Bàn 2", "Bàn 3")),
)
# The same people (and phones) as the testing plugin's demo samples: its positive result opens a
# tracing case with contacts to find.
VISITORS = ("Nguyễn Văn An", "Trần Thị Bình", "Lê Văn Cường", "Phạm Thị Dung", "Hoàng Văn Em", "Vũ Thị Phương")


def demo_operator(province: str, short: str) -> Principal:
    """The demo venue operator of a province (the account ``<short>.venue_operator``), as a principal."""
    return Principal(
        id=f"staff:{short}.venue_operator",
        kind="staff",
        roles=frozenset({VENUE_OPERATOR}),
        province=province,
        site=f"venue-{short}-1",
    )


def plain_answers(questionnaire: Questionnaire, *, cough: bool = False) -> dict[str, Any]:
    """Answers to every required question that raise no flag (a cough, if asked for)."""
    answers: dict[str, Any] = {}
    for question in questionnaire.questions:
        if question.id == "symptoms" and cough:
            answers[question.id] = ["cough"]
        elif question.kind == "yes_no":
            answers[question.id] = "no" in (question.risky_answers or ("yes",))
        elif question.choices:
            calm = [c.code for c in question.choices if c.code not in question.risky_answers]
            answers[question.id] = calm[:1] if question.kind == "multi_choice" else calm[0]
        elif question.required:
            answers[question.id] = "demo"
    return answers


async def load_demo_data(platform: Platform) -> None:
    now = clock.now()
    for province, short in DEMO_PROVINCES.items():
        operator = demo_operator(province, short)
        if await Venue.exists().where(Venue.site == operator.site):
            continue
        venue_ids = []
        for index, (name, venue_type, capacity, stay, subs) in enumerate(VENUES, start=1):
            body = {
                "name": f"{name} {short.upper()}",
                "address": f"{index * 12} Phố Demo, {short.upper()}",
                "province": province,
                "district": f"{index:03d}",
                "ward": f"{int(province):02d}{index:03d}",
                "venue_type": venue_type,
                "capacity": capacity,
                "contact_phone": f"09{int(province):02d}99{index:04d}",
                "default_stay_minutes": stay,
                "sub_locations": [{"name": sub, "kind": "floor"} for sub in subs],
            }
            view = await register_venue(platform, operator, msgspec.convert(body, VenueBody))
            venue_ids.append(view.id)
        forms = [await questionnaire_for(platform, await load_venue(v)) for v in venue_ids[:2]]
        # This morning: everyone at the café ten minutes apart (the first with a cough), then the market.
        for index, full_name in enumerate(VISITORS):
            for venue_id, form, hours_ago in ((venue_ids[0], forms[0], 3), (venue_ids[1], forms[1], 2)):
                body = {
                    "venue_id": venue_id,
                    "full_name": full_name,
                    "phone": f"09{int(province):02d}00{index:04d}",
                    "declaration": {
                        "questionnaire_version": form.version,
                        "answers": plain_answers(form, cough=index == 0),
                    },
                    "arrived_at": (now - timedelta(hours=hours_ago, minutes=-10 * index)).isoformat(),
                }
                await declare_by_proxy(platform, operator, msgspec.convert(body, ProxyBody), idempotency_key=None)
