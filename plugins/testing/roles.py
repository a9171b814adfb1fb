"""Who may do what in testing: grants to the core's roles, and the lab systems' own role.

Each role keeps its scope (site, lab, province, national, self); the core's
role rules allow an action only on records within that scope.
"""

from __future__ import annotations

from core import Role

LAB_SYSTEM = "lab_system"

READ_SAMPLES = frozenset({"testing.sample.read", "testing.sample.list", "testing.pool.read"})
MONITOR = frozenset({"testing.turnaround.read", "testing.overdue.list"})

TESTING_ROLES: tuple[Role, ...] = (
    Role(name="national_admin", scope="national", grants=frozenset({"testing.*"})),
    Role(
        name="province_admin",
        scope="province",
        grants=frozenset({"testing.site.manage", "testing.lab.manage", "testing.label.issue"}) | MONITOR,
    ),
    Role(
        name="sample_collector",
        scope="site",
        grants=READ_SAMPLES
        | MONITOR
        | frozenset({"testing.label.issue", "testing.sample.create", "testing.pool.create"}),
    ),
    Role(
        name="lab_technician",
        scope="lab",
        grants=READ_SAMPLES
        | MONITOR
        | frozenset(
            {
                "testing.lab.receive",
                "testing.result.enter",
                "testing.result.import",
                "testing.result.correct",
                "testing.retest.list",
                "testing.fhir.export",
            }
        ),
    ),
    Role(
        name=LAB_SYSTEM,
        scope="lab",
        description="A laboratory information system sending results (API key)",
        grants=frozenset(
            {
                "testing.lab.receive",
                "testing.result.enter",
                "testing.result.import",
                "testing.retest.list",
                "testing.pool.read",
            }
        ),
    ),
    Role(
        name="epidemiologist",
        scope="province",
        grants=READ_SAMPLES | MONITOR | frozenset({"testing.report.list", "testing.fhir.export"}),
    ),
    Role(
        name="citizen",
        scope="self",
        grants=frozenset({"testing.registration.create", "testing.result.read_own"}),
    ),
)
