"""Venue staff scanning personal codes with a device key, and proxy declarations for people without a phone."""

from __future__ import annotations

from datetime import timedelta

from core import clock
from core.tables import AuditLog


async def test_device_scans_a_personal_code(kit):
    venue = await kit.venue(await kit.operator(site="pho"))
    device = await kit.device(site="pho")
    citizen, subject = await kit.citizen()
    code = await kit.client.get("/api/checkin/me/code", headers=citizen)
    assert code.status_code == 200, code.text
    assert code.json()["svg"].startswith("<svg")
    scanned = await kit.client.post(
        "/api/checkin/scans",
        json={"personal_code": code.json()["token"], "venue_id": venue["id"], "declaration": kit.declaration()},
        headers=device,
    )
    assert scanned.status_code == 201, scanned.text
    assert scanned.json()["method"] == "personal"
    mine = (await kit.client.get("/api/checkin/me/visits", headers=citizen)).json()
    assert [v["id"] for v in mine] == [scanned.json()["id"]]
    audit = await kit.platform.audit.for_subject(subject)
    assert [(a.action, a.actor_kind) for a in audit] == [("checkin.scan.personal", "device")]


async def test_personal_code_expires_after_a_day(kit, monkeypatch):
    venue = await kit.venue(await kit.operator(site="pho"))
    device = await kit.device(site="pho")
    citizen, _ = await kit.citizen()
    token = (await kit.client.get("/api/checkin/me/code", headers=citizen)).json()["token"]
    later = clock.now() + timedelta(hours=24, minutes=1)
    monkeypatch.setattr(clock, "now", lambda: later)
    response = await kit.client.post(
        "/api/checkin/scans", json={"personal_code": token, "venue_id": venue["id"]}, headers=device
    )
    assert response.status_code == 400
    assert "personal_code" in response.json()["detail"] and "expired" in response.json()["detail"]
    assert await kit.visit_count() == 0


async def test_device_of_another_site_cannot_scan_here(kit):
    venue = await kit.venue(await kit.operator(site="pho"))
    elsewhere = await kit.device(site="bun-cha")
    citizen, _ = await kit.citizen()
    token = (await kit.client.get("/api/checkin/me/code", headers=citizen)).json()["token"]
    response = await kit.client.post(
        "/api/checkin/scans", json={"personal_code": token, "venue_id": venue["id"]}, headers=elsewhere
    )
    assert response.status_code == 403
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    own_device = await kit.device(site="pho")
    forged = await kit.client.post(
        "/api/checkin/scans", json={"personal_code": tampered, "venue_id": venue["id"]}, headers=own_device
    )
    assert forged.status_code == 400
    assert await kit.visit_count() == 0


async def test_citizens_cannot_use_staff_routes(kit):
    venue = await kit.venue(await kit.operator(site="pho"))
    citizen, _ = await kit.citizen()
    body = {"venue_id": venue["id"], "full_name": "Bà Hoa", "phone": "0987654321", "declaration": kit.declaration()}
    assert (await kit.client.post("/api/checkin/proxy-visits", json=body, headers=citizen)).status_code == 403


async def test_proxy_declaration_by_phone_is_audited_as_proxy(kit):
    operator = await kit.operator(site="pho")
    venue = await kit.venue(operator)
    body = {
        "venue_id": venue["id"],
        "full_name": "Bà Nguyễn Thị Hoa",
        "phone": "0987 654 321",
        "declaration": kit.declaration(symptoms=["fever"]),
    }
    response = await kit.client.post(
        "/api/checkin/proxy-visits", json=body, headers={**operator, "X-Request-Id": "proxy-request-0001"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["method"] == "proxy"
    assert response.json()["risk_flags"] == ["symptoms"]
    # The same person signing in later sees the visit staff declared for them.
    citizen, subject = await kit.citizen("0987654321")
    mine = (await kit.client.get("/api/checkin/me/visits", headers=citizen)).json()
    assert [v["id"] for v in mine] == [response.json()["id"]]
    audit = await AuditLog.select().where(AuditLog.subject_id == subject)
    assert [(a["action"], a["detail"], a["request_id"]) for a in audit] == [
        ("checkin.visit.proxy", "proxy declaration by staff", "proxy-request-0001")
    ]
    rows = await kit.platform.db.execute("SELECT proxy_by FROM checkin_declaration")
    assert rows[0]["proxy_by"].startswith("staff:")


async def test_proxy_declaration_by_identity_card(kit):
    operator = await kit.operator(site="pho")
    venue = await kit.venue(operator)
    body = {
        "venue_id": venue["id"],
        "full_name": "Ông Trần Văn Ba",
        "id_number": "001089012345",
        "declaration": kit.declaration(),
    }
    first = await kit.client.post("/api/checkin/proxy-visits", json=body, headers=operator)
    assert first.status_code == 201, first.text
    again = await kit.client.post("/api/checkin/proxy-visits", json=body, headers=operator)
    assert again.json()["id"] == first.json()["id"]  # the same person within ten minutes
    rows = await kit.platform.db.execute("SELECT subject_id, id_number, phone FROM checkin_visit")
    assert len(rows) == 1
    assert rows[0]["subject_id"].startswith("idcard:")
    assert "001089012345" not in rows[0]["subject_id"]
    assert (rows[0]["id_number"], rows[0]["phone"]) == ("001089012345", None)


async def test_proxy_needs_a_phone_or_identity_card(kit):
    operator = await kit.operator(site="pho")
    venue = await kit.venue(operator)
    body = {"venue_id": venue["id"], "full_name": "Ông Ba", "declaration": kit.declaration()}
    response = await kit.client.post("/api/checkin/proxy-visits", json=body, headers=operator)
    assert response.status_code == 400
    assert response.json()["detail"].startswith("phone:")
    bad_card = await kit.client.post("/api/checkin/proxy-visits", json={**body, "id_number": "12345"}, headers=operator)
    assert bad_card.status_code == 400
    assert "id_number" in bad_card.text
    bad_phone = await kit.client.post("/api/checkin/proxy-visits", json={**body, "phone": "0123"}, headers=operator)
    assert bad_phone.status_code == 400
    assert await kit.visit_count() == 0
