"""Province isolation, end to end through the HTTP API, with Hà Nội's and the city's plugins both on.

A Hà Nội venue asks Hà Nội's questions, a city venue the city's, a Đà Nẵng
venue only the national ones; Hà Nội's priority group cannot book in the
city; and a message sent for Hà Nội goes out through Hà Nội's gateway while
the city's stay in the core's outbox.
"""

from __future__ import annotations

from core.tables import MessageOutbox
from plugins.checkin.declarations import NATIONAL_QUESTIONS, NATIONAL_VERSION
from provinces.hanoi.tables import SmsQueue
from tests.provinces.conftest import DANANG, HANOI, HCMC, Steps

NATIONAL_IDS = [question.id for question in NATIONAL_QUESTIONS]
HANOI_IDS = ["hn.travel_permit", "hn.workplace", "hn.lockdown_area"]


async def test_each_venue_asks_its_own_provinces_questions_only(steps: Steps, phongdich_app):
    hanoi = await steps.venue(HANOI, district="007", ward="00226", name="Phở Thìn Lò Đúc")
    saigon = await steps.venue(HCMC, district="760", ward="26734", name="Cà phê Tân Định")
    danang = await steps.venue(DANANG, district="490", ward="20194", name="Cà phê Sơn Trà")

    hanoi_form = await steps.questionnaire(hanoi)
    saigon_form = await steps.questionnaire(saigon)
    danang_form = await steps.questionnaire(danang)

    assert [q["id"] for q in hanoi_form["questions"]] == [*NATIONAL_IDS, *HANOI_IDS]
    assert [q["id"] for q in saigon_form["questions"]] == [*NATIONAL_IDS, "hcm.f0_at_home"]
    assert [q["id"] for q in danang_form["questions"]] == NATIONAL_IDS
    assert hanoi_form["version"].startswith(f"{NATIONAL_VERSION}+01.")
    assert saigon_form["version"].startswith(f"{NATIONAL_VERSION}+79.")
    assert danang_form["version"] == NATIONAL_VERSION
    permit = next(q for q in hanoi_form["questions"] if q["id"] == "hn.travel_permit")
    assert (permit["kind"], permit["required"]) == ("text", False)

    citizen = await phongdich_app.actor("citizen")
    answered = await steps.check_in(
        citizen,
        hanoi,
        answers={"hn.travel_permit": "GDD-0112-4471", "hn.workplace": "Bệnh viện Bạch Mai", "hn.lockdown_area": True},
    )
    assert answered.status_code == 201, answered.text
    assert answered.json()["risk_flags"] == ["hn.lockdown_area"]

    # Hà Nội's questions do not exist in Đà Nẵng: answering one there is refused, naming it.
    refused = await steps.check_in(citizen, danang, answers={"hn.travel_permit": "GDD-0112-4471"})
    assert refused.status_code == 400, refused.text
    assert "declaration.answers.hn.travel_permit" in refused.json()["detail"]
    assert (await steps.check_in(citizen, danang)).status_code == 201
    # Nor in the city, whose form has its own question, required.
    missing = await steps.check_in(citizen, saigon)
    assert missing.status_code == 400
    assert "declaration.answers.hcm.f0_at_home" in missing.json()["detail"]
    assert (await steps.check_in(citizen, saigon, answers={"hcm.f0_at_home": False})).status_code == 201

    # Hà Nội's epidemiologists follow up the lockdown-area answer; the city's do not see it.
    hanoi_epi = await phongdich_app.actor("epidemiologist", province=HANOI)
    saigon_epi = await phongdich_app.actor("epidemiologist", province=HCMC)
    flags = (await steps.client.get("/api/checkin/flags", headers=hanoi_epi.headers)).json()
    assert [flag["risk_flags"] for flag in flags] == [["hn.lockdown_area"]]
    assert (await steps.client.get("/api/checkin/flags", headers=saigon_epi.headers)).json() == []


async def test_venue_types_of_the_city_exist_in_the_city_only(steps: Steps, phongdich_app):
    saigon_types = (await steps.client.get("/api/checkin/venue-types", params={"province": HCMC})).json()
    hanoi_types = (await steps.client.get("/api/checkin/venue-types", params={"province": HANOI})).json()
    assert "wholesale_market" in [t["code"] for t in saigon_types]
    assert "wholesale_market" not in [t["code"] for t in hanoi_types]

    market = await steps.venue(
        HCMC, district="783", ward="27259", name="Chợ đầu mối Hóc Môn", venue_type="wholesale_market"
    )
    assert market["venue_type"] == "wholesale_market"
    operator = await phongdich_app.actor("venue_operator", province=HANOI, site="venues-01")
    body = {
        "name": "Chợ Long Biên",
        "address": "Phúc Xá, Ba Đình",
        "province": HANOI,
        "district": "001",
        "ward": "00001",
        "venue_type": "wholesale_market",
        "capacity": 500,
        "contact_phone": "0243 826 1234",
    }
    refused = await steps.client.post("/api/checkin/venues/", json=body, headers=operator.headers)
    assert refused.status_code == 400, refused.text
    assert "venue_type" in refused.json()["detail"]


async def test_hanoi_priority_group_cannot_book_in_the_city(steps: Steps, phongdich_app):
    hanoi_session = await steps.vaccination_site(HANOI, "vax-hn-bachmai")
    saigon_session = await steps.vaccination_site(HCMC, "vax-hcm-q1")
    assert (await steps.open_groups(HANOI, ["01.shippers"])).status_code == 200
    assert (await steps.open_groups(HCMC, ["79.market_traders"])).status_code == 200

    # Each province's groups are listed in that province only.
    hanoi_groups = (await steps.client.get("/api/vaccination/priority-groups", params={"province": HANOI})).json()
    saigon_groups = (await steps.client.get("/api/vaccination/priority-groups", params={"province": HCMC})).json()
    assert {g["code"]: g["open"] for g in hanoi_groups if "." in g["code"]} == {"01.shippers": True}
    assert {g["code"]: g["open"] for g in saigon_groups if "." in g["code"]} == {"79.market_traders": True}

    # The city cannot open Hà Nội's group, and nobody can join it from the city.
    refused_opening = await steps.open_groups(HCMC, ["01.shippers"])
    assert refused_opening.status_code == 400, refused_opening.text
    assert refused_opening.json()["detail"].startswith("groups:")
    elsewhere = await steps.register(await phongdich_app.actor("citizen"), province=HCMC, group="01.shippers")
    assert elsewhere.status_code == 400
    assert elsewhere.json()["detail"].startswith("priority_group:")

    shipper_citizen = await phongdich_app.citizen()
    registered = await steps.register(shipper_citizen, province=HANOI, group="01.shippers")
    assert registered.status_code == 201, registered.text
    shipper = registered.json()["person"]["id"]

    in_the_city = await steps.book(shipper_citizen, shipper, saigon_session)
    assert in_the_city.status_code == 400, in_the_city.text
    assert in_the_city.json()["detail"] == "person_id: priority group 01.shippers may not book yet in province 79"
    at_home = await steps.book(shipper_citizen, shipper, hanoi_session)
    assert at_home.status_code == 201, at_home.text

    trader_citizen = await phongdich_app.citizen()
    trader = (await steps.register(trader_citizen, province=HCMC, group="79.market_traders")).json()["person"]["id"]
    assert (await steps.book(trader_citizen, trader, saigon_session)).status_code == 201

    # Hà Nội's booking SMS went out through Hà Nội's gateway, the city's through the core's outbox.
    hanoi_sms = await SmsQueue.select(SmsQueue.recipient, SmsQueue.kind, SmsQueue.brandname)
    assert hanoi_sms == [{"recipient": shipper_citizen.phone, "kind": "vaccination.booking", "brandname": "SYT HANOI"}]
    outbox = await MessageOutbox.select(MessageOutbox.kind, MessageOutbox.province).where(
        MessageOutbox.kind == "vaccination.booking"
    )
    assert outbox == [{"kind": "vaccination.booking", "province": HCMC}]
