"""Who may do what in vaccination: the actions each role is granted.

Scopes come from the roles themselves (core): a vaccinator acts at their
site, province staff in their province, a citizen on the people of their own
account, a national admin anywhere. Organisations registering staff in bulk
use an API key with ``vaccination_registrar``.
"""

from __future__ import annotations

from core import Role
from core.principal import CITIZEN, EPIDEMIOLOGIST, NATIONAL_ADMIN, PROVINCE_ADMIN, VACCINATOR

REGISTRAR = "vaccination_registrar"

_READ_PEOPLE = {
    "vaccination.person.read",
    "vaccination.person.list",
    "vaccination.dose.read",
    "vaccination.dose.history",
    "vaccination.booking.read",
    "vaccination.booking.list",
    "vaccination.certificate.read",
    "vaccination.aefi.read",
}

ROLES: tuple[Role, ...] = (
    Role(name=NATIONAL_ADMIN, scope="national", grants=frozenset({"vaccination.*"})),
    Role(
        name=PROVINCE_ADMIN,
        scope="province",
        grants=frozenset(
            _READ_PEOPLE
            | {
                "vaccination.site.manage",
                "vaccination.session.manage",
                "vaccination.stock.manage",
                "vaccination.stock.read",
                "vaccination.priority.manage",
                "vaccination.person.register",
                "vaccination.person.bulk_register",
                "vaccination.duplicate.review",
                "vaccination.booking.cancel",
                "vaccination.dose.correct",
                "vaccination.aefi.report",
                "vaccination.certificate.revoke",
                "vaccination.export.fhir",
            }
        ),
    ),
    Role(
        name=VACCINATOR,
        scope="site",
        grants=frozenset(
            {
                "vaccination.checkin",
                "vaccination.dose.record",
                "vaccination.dose.correct",
                "vaccination.dose.read",
                "vaccination.dose.history",
                "vaccination.person.register",
                "vaccination.person.read",
                "vaccination.booking.read",
                "vaccination.booking.list",
                "vaccination.booking.cancel",
                "vaccination.stock.read",
                "vaccination.aefi.report",
                "vaccination.aefi.read",
            }
        ),
    ),
    Role(
        name=EPIDEMIOLOGIST,
        scope="province",
        grants=frozenset({"vaccination.aefi.read", "vaccination.dose.read", "vaccination.export.fhir"}),
    ),
    Role(
        name=CITIZEN,
        scope="self",
        grants=frozenset(
            {
                "vaccination.person.register",
                "vaccination.person.read",
                "vaccination.person.list",
                "vaccination.dose.read",
                "vaccination.booking.create",
                "vaccination.booking.list",
                "vaccination.booking.read",
                "vaccination.booking.cancel",
                "vaccination.certificate.read",
                "vaccination.aefi.report",
            }
        ),
    ),
    Role(
        name=REGISTRAR,
        scope="province",
        grants=frozenset({"vaccination.person.bulk_register"}),
        description="An organisation registering its people in bulk (API key)",
    ),
)
