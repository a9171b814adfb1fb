"""Telling people their results through ``send_message``, durably and after the release commits.

Releasing a result queues its sample in ``testing_untold`` in the same
transaction, so a released result is always told, even after a crash, and
a 100,000-row upload is not held up by 100,000 SMS hand-overs: small
releases (one result, a pool) are told as soon as they commit, and the
``testing.notices.send`` job tells the rest. A queued sample is claimed
before it is told, so two workers never tell it twice, and retried when
its channel fails. A big release (an upload's samples) is queued as one
row of ``testing_untold_batch``, which the job spreads into
``testing_untold`` before telling it. The person hears the sample's latest result: as a plain
result if they were told nothing before, else as a correction; a result
withdrawn by a pool correction is taken back if they had been told it.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from core import Message, clock
from plugins.testing import bulk
from plugins.testing.catalogue import known_test_types
from plugins.testing.printing import VIETNAM
from plugins.testing.tables import Sample, UntoldBatch, UntoldResult

if TYPE_CHECKING:
    from core.platform import Platform

log = structlog.get_logger("testing.notices")

INLINE = 50  # releases this small are told at once, inside the request
CLAIM = timedelta(minutes=2)
BATCH = 500


async def queue_first(platform: Platform, sample_ids: list[str], *, now: datetime) -> None:
    """Queue first results (no sample is queued yet); call in the release transaction."""
    await bulk.insert(
        platform,
        UntoldResult,
        ("sample", "queued_at", "attempts", "last_error"),
        [(sample_id, now, 0, "") for sample_id in sample_ids],
    )


async def queue_again(sample_id: str, *, now: datetime) -> None:
    """Queue a corrected result; a sample still waiting is told once, with its latest result."""
    await UntoldResult.insert(UntoldResult(sample=sample_id, queued_at=now)).on_conflict(
        target=UntoldResult.sample,
        action="DO UPDATE",
        values=[UntoldResult.queued_at, UntoldResult.claimed_until],
    )


async def spread_batch(platform: Platform) -> int:
    """Queue the samples of the oldest batch one by one (``testing_untold``); returns how many it held.

    One transaction, and on PostgreSQL a batch another worker is spreading is
    skipped. A sample queued meanwhile (a correction) keeps its own, later row;
    one already told its latest result (a correction told at once) is left out.
    """
    async with platform.db.transaction():
        query = UntoldBatch.select().order_by(UntoldBatch.id).limit(1)
        if platform.db.kind == "postgres":
            query = query.lock_rows(skip_locked=True)
        batch = await query.first()
        if batch is None:
            return 0
        samples = [sample for sample in batch["samples"].split(",") if sample]
        if platform.db.kind == "postgres":
            await platform.db.fetch(_SPREAD, batch["queued_at"], samples)
        else:
            for start in range(0, len(samples), SPREAD_CHUNK):
                untold = await Sample.select(Sample.id).where(
                    Sample.id.is_in(samples[start : start + SPREAD_CHUNK])
                    & (Sample.notified_version < Sample.result_version)
                )
                if untold:
                    await UntoldResult.insert(
                        *[UntoldResult(sample=row["id"], queued_at=batch["queued_at"]) for row in untold]
                    ).on_conflict(action="DO NOTHING")
        await UntoldBatch.delete().where(UntoldBatch.id == batch["id"])
    return len(samples)


SPREAD_CHUNK = 100  # rows per insert on SQLite (5 columns: 500 parameters)
# A sample told its latest version meanwhile (a correction told at once) is not queued again.
_SPREAD = (
    "INSERT INTO testing_untold (sample, queued_at, claimed_until, attempts, last_error) "
    "SELECT id, {}, NULL, 0, '' FROM testing_sample WHERE id = ANY({}::varchar[]) "
    "AND notified_version < result_version ON CONFLICT (sample) DO NOTHING"
)
# Samples queued in batches: commas plus one per batch.
_BATCHED = (
    "SELECT coalesce(sum(length(samples) - length(replace(samples, ',', '')) + 1), 0) AS waiting "
    "FROM testing_untold_batch"
)


async def send_soon(platform: Platform, sample_ids: list[str]) -> None:
    """After a release committed: tell a small one now; the job tells big ones."""
    if 0 < len(sample_ids) <= INLINE:
        await send_pending(platform, samples=sample_ids)


async def send_pending(platform: Platform, *, samples: list[str] | None = None, limit: int = BATCH) -> int:
    """Tell the people of queued samples (these ``samples``, or the oldest ``limit``); returns how many.

    Without ``samples`` (the job), the oldest queued batch is spread first.
    """
    if samples is None:
        await spread_batch(platform)
    now = clock.now()
    claimable = UntoldResult.claimed_until.is_null() | (UntoldResult.claimed_until < now)
    pending = UntoldResult.select(UntoldResult.sample).where(claimable)
    if samples is not None:
        pending = pending.where(UntoldResult.sample.is_in(samples))
    wanted = [row["sample"] for row in await pending.order_by(UntoldResult.queued_at).limit(limit)]
    if not wanted:
        return 0
    claimed = await (
        UntoldResult.update({UntoldResult.claimed_until: now + CLAIM})
        .where(UntoldResult.sample.is_in(wanted) & claimable)
        .returning(UntoldResult.sample, UntoldResult.queued_at)
    )
    queued_at = {row["sample"]: row["queued_at"] for row in claimed}
    rows = await Sample.select(
        Sample.id,
        Sample.province,
        Sample.test_type,
        Sample.collected_at,
        Sample.result,
        Sample.result_version,
        Sample.notified_version,
        Sample.retest_reason,
        Sample.person.full_name.as_alias("full_name"),
        Sample.person.phone.as_alias("phone"),
    ).where(Sample.id.is_in(list(queued_at) or [""]))
    told = 0
    for row in rows:
        if row["result"] is None and row["notified_version"] == 0:
            # A result withdrawn before it was told: there is nothing to take back.
            await UntoldResult.delete().where(
                (UntoldResult.sample == row["id"]) & (UntoldResult.queued_at == queued_at[row["id"]])
            )
            continue
        try:
            await platform.messages.send(_message(platform, row))
        except Exception as exc:
            log.warning("testing.notice_failed", sample=row["id"], error=f"{type(exc).__name__}: {exc}")
            await UntoldResult.update(
                {
                    UntoldResult.attempts: UntoldResult.attempts + 1,
                    UntoldResult.last_error: f"{type(exc).__name__}: {exc}"[:500],
                }
            ).where(UntoldResult.sample == row["id"])
            continue
        await Sample.update({Sample.notified_version: row["result_version"]}).where(Sample.id == row["id"])
        # A correction queued meanwhile moved queued_at: that row stays, to be told next.
        await UntoldResult.delete().where(
            (UntoldResult.sample == row["id"]) & (UntoldResult.queued_at == queued_at[row["id"]])
        )
        told += 1
    return told


async def send_job(platform: Platform) -> str:
    """Job: tell every queued sample, batch after batch, until none is left that can be told now."""
    total = 0
    while True:
        told = await send_pending(platform)
        total += told
        if told == 0:
            break
    batched = await platform.db.fetch(_BATCHED)
    waiting = await UntoldResult.count() + int(batched[0]["waiting"])
    return f"sent {total} result notice(s); {waiting} waiting"


def _message(platform: Platform, row: dict[str, Any]) -> Message:
    test_type = known_test_types(platform).get(row["test_type"])
    if row["result"] is None:
        body_vi, body_en = withdrawn_message(
            full_name=row["full_name"],
            test_name_vi=test_type.name_vi if test_type else row["test_type"],
            test_name_en=test_type.name_en if test_type else row["test_type"],
            collected_at=clock.as_utc(row["collected_at"]),
        )
        return Message(
            channel="sms",
            recipient=row["phone"],
            kind="testing.result.withdrawn",
            body_vi=body_vi,
            body_en=body_en,
            province=row["province"],
        )
    body_vi, body_en = result_message(
        full_name=row["full_name"],
        test_name_vi=test_type.name_vi if test_type else row["test_type"],
        test_name_en=test_type.name_en if test_type else row["test_type"],
        collected_at=clock.as_utc(row["collected_at"]),
        outcome=row["result"],
        corrected=row["notified_version"] > 0,
    )
    return Message(
        channel="sms",
        recipient=row["phone"],
        kind="testing.result.corrected" if row["notified_version"] > 0 else "testing.result",
        body_vi=body_vi,
        body_en=body_en,
        province=row["province"],
    )


OUTCOME_WORDS = {
    "negative": ("AM TINH", "NEGATIVE", "", ""),
    "positive": (
        "DUONG TINH",
        "POSITIVE",
        " Hay cach ly tai nha va cho huong dan cua y te dia phuong.",
        " Please isolate at home and wait for instructions from your local health service.",
    ),
    "invalid": (
        "KHONG XAC DINH",
        "INVALID",
        " Vui long quay lai diem lay mau de xet nghiem lai.",
        " Please return to the collection site to be tested again.",
    ),
}


def result_message(
    *,
    full_name: str,
    test_name_vi: str,
    test_name_en: str,
    collected_at: datetime,
    outcome: str,
    corrected: bool,
) -> tuple[str, str]:
    """The SMS, in Vietnamese without diacritics (every handset shows it) and in English."""
    word_vi, word_en, advice_vi, advice_en = OUTCOME_WORDS[outcome]
    day = collected_at.astimezone(VIETNAM).strftime("%d/%m/%Y")
    name = ascii_text(full_name)
    prefix_vi, prefix_en = ("DINH CHINH: ", "CORRECTED: ") if corrected else ("", "")
    return (
        f"{prefix_vi}Ket qua xet nghiem {ascii_text(test_name_vi)} cua {name} (lay mau {day}): {word_vi}.{advice_vi}",
        f"{prefix_en}{test_name_en} result for {name} (sampled {day}): {word_en}.{advice_en}",
    )


def withdrawn_message(
    *, full_name: str, test_name_vi: str, test_name_en: str, collected_at: datetime
) -> tuple[str, str]:
    """The SMS when a corrected pool result takes back the negative the person was told."""
    day = collected_at.astimezone(VIETNAM).strftime("%d/%m/%Y")
    name = ascii_text(full_name)
    return (
        f"DINH CHINH: Ket qua AM TINH xet nghiem {ascii_text(test_name_vi)} cua {name} (lay mau {day}) da bi thu hoi "
        "vi ket qua mau gop da duoc dinh chinh. Mau cua ban dang duoc xet nghiem lai rieng; ket qua moi se duoc gui "
        "toi ban.",
        f"CORRECTED: The NEGATIVE {test_name_en} result for {name} (sampled {day}) is withdrawn because the pooled "
        "test result was corrected. Your sample is being tested again on its own; you will get the new result.",
    )


def ascii_text(text: str) -> str:
    """Vietnamese without diacritics: Nguyễn Đức Anh -> Nguyen Duc Anh."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(char for char in decomposed if not unicodedata.combining(char))
