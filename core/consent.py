"""Processing purposes, their lawful basis, and versioned consent records.

A purpose with basis ``public_health`` needs no consent while an epidemic is
declared (Decree 13/2023, art. 17); otherwise, and for basis ``consent``, the
latest record for the subject and purpose must grant the purpose's current
version. A withdrawal is a new record and takes effect at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec
from litestar.exceptions import PermissionDeniedException

from core import clock
from core.tables import ConsentRecord

LawfulBasis = Literal["consent", "public_health"]


class Purpose(msgspec.Struct, frozen=True, kw_only=True):
    """Why personal data is processed. Bump ``version`` when the use changes: old consents lapse."""

    name: str
    basis: LawfulBasis
    description_vi: str
    description_en: str
    version: int = 1


class ConsentState(msgspec.Struct, frozen=True, kw_only=True):
    purpose: str
    basis: LawfulBasis
    version: int
    granted: bool
    needs_consent: bool
    recorded_at: datetime | None
    description_vi: str
    description_en: str


CORE_PURPOSES: tuple[Purpose, ...] = (
    Purpose(
        name="core.identity",
        basis="public_health",
        description_vi="Đăng nhập và bảo vệ tài khoản của bạn.",
        description_en="Signing you in and keeping your account safe.",
    ),
    Purpose(
        name="core.transparency",
        basis="public_health",
        description_vi="Cho bạn biết ai đã truy cập dữ liệu của bạn.",
        description_en="Showing you who accessed your data.",
    ),
)


class UnknownPurpose(KeyError):
    pass


class Consent:
    """Answers whether personal data may be processed for a purpose, and records consent."""

    def __init__(self, purposes: list[Purpose], *, epidemic_declared: bool) -> None:
        self.purposes: dict[str, Purpose] = {}
        for purpose in purposes:
            if purpose.name in self.purposes:
                raise ValueError(f"purpose {purpose.name!r} is declared twice")
            self.purposes[purpose.name] = purpose
        self.epidemic_declared = epidemic_declared

    def purpose(self, name: str) -> Purpose:
        try:
            return self.purposes[name]
        except KeyError:
            raise UnknownPurpose(name) from None

    def needs_consent(self, purpose: Purpose) -> bool:
        return purpose.basis == "consent" or not self.epidemic_declared

    async def allows(self, subject_id: str, purpose_name: str) -> bool:
        purpose = self.purpose(purpose_name)
        if not self.needs_consent(purpose):
            return True
        latest = await self._latest(subject_id, purpose.name)
        return bool(latest and latest["granted"] and latest["purpose_version"] == purpose.version)

    async def require(self, subject_id: str, purpose_name: str) -> None:
        """Raise 403 naming the purpose unless the subject's consent allows it."""
        if not await self.allows(subject_id, purpose_name):
            purpose = self.purpose(purpose_name)
            raise PermissionDeniedException(
                f"Consent for purpose {purpose.name!r} (version {purpose.version}) has not been "
                "given or was withdrawn. Grant it with PUT /api/me/consents/{purpose}."
            )

    async def record(self, subject_id: str, purpose_name: str, *, granted: bool, by: str) -> ConsentState:
        purpose = self.purpose(purpose_name)
        await ConsentRecord.insert(
            ConsentRecord(
                subject_id=subject_id,
                purpose=purpose.name,
                purpose_version=purpose.version,
                granted=granted,
                recorded_at=clock.now(),
                recorded_by=by,
            )
        )
        return await self.state(subject_id, purpose)

    async def states(self, subject_id: str) -> list[ConsentState]:
        return [await self.state(subject_id, p) for p in sorted(self.purposes.values(), key=lambda p: p.name)]

    async def state(self, subject_id: str, purpose: Purpose) -> ConsentState:
        latest = await self._latest(subject_id, purpose.name)
        needs = self.needs_consent(purpose)
        granted_current = bool(latest and latest["granted"] and latest["purpose_version"] == purpose.version)
        return ConsentState(
            purpose=purpose.name,
            basis=purpose.basis,
            version=purpose.version,
            granted=granted_current or not needs,
            needs_consent=needs,
            recorded_at=latest["recorded_at"] if latest else None,
            description_vi=purpose.description_vi,
            description_en=purpose.description_en,
        )

    async def _latest(self, subject_id: str, purpose: str) -> dict | None:
        return await (
            ConsentRecord.select(ConsentRecord.granted, ConsentRecord.purpose_version, ConsentRecord.recorded_at)
            .where((ConsentRecord.subject_id == subject_id) & (ConsentRecord.purpose == purpose))
            .order_by(ConsentRecord.id, ascending=False)
            .first()
        )
