"""Consent: purposes, lawful bases, versions, and withdrawal that takes effect at once."""

from __future__ import annotations

import pytest

from core.consent import Consent, Purpose, UnknownPurpose
from core.testing import citizen_headers, http_client
from tests.core.example_plugins.research import OUTBREAK, SURVEY, Research


async def set_consent(client, headers, purpose: str, granted: bool) -> dict:
    response = await client.put(f"/api/me/consents/{purpose}", json={"granted": granted}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_consent_purpose_needs_a_grant_and_withdrawal_is_immediate(start_platform):
    platform = await start_platform(("research", Research()))
    headers, subject = await citizen_headers(platform)
    async with http_client(platform) as client:
        refused = await client.get("/api/research/survey", headers=headers)
        assert refused.status_code == 403
        assert SURVEY in refused.json()["detail"]

        state = await set_consent(client, headers, SURVEY, True)
        assert state["granted"] is True and state["needs_consent"] is True and state["version"] == 1
        assert (await client.get("/api/research/survey", headers=headers)).status_code == 200

        await set_consent(client, headers, SURVEY, False)
        assert (await client.get("/api/research/survey", headers=headers)).status_code == 403

        listed = {s["purpose"]: s for s in (await client.get("/api/me/consents", headers=headers)).json()}
        assert listed[SURVEY]["granted"] is False
        assert listed[OUTBREAK]["granted"] is True and listed[OUTBREAK]["needs_consent"] is False
    # One citizen's consent is not another's.
    assert not await platform.consent.allows("someone-else", SURVEY)
    assert not await platform.consent.allows(subject, SURVEY)


async def test_unknown_purpose_is_404_naming_it(start_platform):
    platform = await start_platform(("research", Research()))
    headers, _subject = await citizen_headers(platform)
    async with http_client(platform) as client:
        response = await client.put("/api/me/consents/research.surveys", json={"granted": True}, headers=headers)
    assert response.status_code == 404
    assert "research.surveys" in response.json()["detail"]


async def test_public_health_needs_no_consent_only_while_an_epidemic_is_declared(start_platform):
    declared = await start_platform(("research", Research()), epidemic_declared=True)
    headers, _subject = await citizen_headers(declared)
    async with http_client(declared) as client:
        assert (await client.get("/api/research/outbreak", headers=headers)).status_code == 200

    ended = await start_platform(("research", Research()), epidemic_declared=False)
    headers, _subject = await citizen_headers(ended)
    async with http_client(ended) as client:
        refused = await client.get("/api/research/outbreak", headers=headers)
        assert refused.status_code == 403
        assert OUTBREAK in refused.json()["detail"]
        state = await set_consent(client, headers, OUTBREAK, True)
        assert state["needs_consent"] is True
        assert (await client.get("/api/research/outbreak", headers=headers)).status_code == 200


async def test_bumping_the_purpose_version_lapses_old_grants(start_platform):
    first = await start_platform(("research", Research(survey_version=1)))
    headers, subject = await citizen_headers(first)
    async with http_client(first) as client:
        await set_consent(client, headers, SURVEY, True)
        assert (await client.get("/api/research/survey", headers=headers)).status_code == 200
    url = first.settings.database_url
    await first.stop()

    # The plugin's next release changes what the survey is used for: version 2.
    upgraded = await start_platform(("research", Research(survey_version=2)), url=url)
    async with http_client(upgraded) as client:
        lapsed = await client.get("/api/research/survey", headers=headers)
        assert lapsed.status_code == 403
        assert "version 2" in lapsed.json()["detail"]
        state = await set_consent(client, headers, SURVEY, True)
        assert state["version"] == 2 and state["granted"] is True
        assert (await client.get("/api/research/survey", headers=headers)).status_code == 200
    assert await upgraded.consent.allows(subject, SURVEY)


def test_purposes_are_declared_once():
    purpose = Purpose(name="x.y", basis="consent", description_vi="a", description_en="b")
    with pytest.raises(ValueError, match="declared twice"):
        Consent([purpose, purpose], epidemic_declared=True)
    with pytest.raises(UnknownPurpose):
        Consent([purpose], epidemic_declared=True).purpose("x.z")
