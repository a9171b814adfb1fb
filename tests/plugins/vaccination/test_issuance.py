"""Issuing after a dose, as stored: the row written by the raw-SQL insert is exactly what the
recording answered, a dose version is never certified twice in a format, and several formats are
stored together, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import base64
import re

from core import dcc, hookimpl
from core.testing import http_client
from plugins.vaccination import certificates
from plugins.vaccination.tables import Certificate, Person
from tests.plugins.vaccination.support import build_world


async def test_the_stored_certificate_is_what_recording_answered(world):
    headers, person, recorded = await world.vaccinated_person()
    (answered,) = recorded["certificates"]
    stored = await world.api.get(f"/api/vaccination/certificates/{answered['id']}", headers=headers)
    assert stored.status_code == 200, stored.text
    assert stored.json() == answered
    assert answered["revoked"] is False and answered["revocation_reason"] == ""
    assert answered["dose_id"] == recorded["dose"]["id"] and answered["dose_version"] == 1

    # A UVCI around the certificate's own 128-bit id, with its check character.
    assert re.fullmatch(r"URN:UVCI:01:VN:[0-9A-F]{32}#[A-Z0-9/:]", answered["identifier"])
    assert answered["identifier"][15:47] == answered["id"].replace("-", "").upper()
    assert dcc.uvci_is_well_formed(answered["identifier"])

    row = await Certificate.select().where(Certificate.id == answered["id"]).first()
    assert row is not None
    person_row = await Person.select(Person.subject_id).where(Person.id == person["id"]).first()
    assert str(row["person"]) == person["id"] and row["subject_id"] == person_row["subject_id"]
    assert row["province"] == "01" and row["format"] == "eu-dcc"
    assert row["revoked_at"] is None and row["revocation_reason"] == ""
    signer = certificates.keystore(world.platform).signer()
    assert row["kid"] == base64.b64encode(signer.kid).decode()
    assert dcc.decode(row["content"]).kid == signer.kid


async def test_a_dose_version_is_certified_once_per_format(world):
    _headers, _person, recorded = await world.vaccinated_person()
    dose_id = recorded["dose"]["id"]
    async with world.platform.db.transaction():
        again = await certificates.issue_for_dose(world.platform, dose_id)
    assert again == []
    assert await Certificate.count().where(Certificate.dose == dose_id) == 1


class _SecondFormat:
    name = "second"

    def issue(self, request, platform):
        return certificates.IssuedCertificate(
            identifier=f"SECOND-{request.certificate_id}", content=request.full_name, media_type="text/plain"
        )


class _SecondFormatPlugin:
    @hookimpl
    def vaccination_certificate_formats(self, platform):
        return [_SecondFormat()]


async def test_certificates_of_several_formats_are_stored_together(make_platform, keys_dir):
    platform = await make_platform(
        extra_plugins=[("second_format", _SecondFormatPlugin())], plugin={"vaccination": {"keys_dir": str(keys_dir)}}
    )
    async with http_client(platform) as api:
        world = await build_world(platform, api)
        headers, person, recorded = await world.vaccinated_person()
        answered = sorted(recorded["certificates"], key=lambda c: c["format"])
        assert [c["format"] for c in answered] == ["eu-dcc", "second"]
        listed = await api.get(f"/api/vaccination/people/{person['id']}/certificates", headers=headers)
        assert sorted(listed.json(), key=lambda c: c["format"]) == answered
        rows = await Certificate.select(Certificate.format, Certificate.kid, Certificate.expires_at).order_by(
            Certificate.format
        )
        assert [(r["format"], bool(r["kid"]), r["expires_at"] is None) for r in rows] == [
            ("eu-dcc", True, False),
            ("second", False, True),
        ]
