"""Results in bulk: a CSV upload or a FHIR R4 Bundle, checked whole, stored whole or not at all.

Both turn into the same ``ResultEntry`` list that ``results.enter_results``
checks and stores in one transaction. Every problem is reported with its
row (the spreadsheet's row number: the header is row 1; 0 is the file
itself) or its bundle entry, and nothing is stored while any remains.
"""

from __future__ import annotations

import csv
import io
import re
from typing import TYPE_CHECKING

import msgspec

from core import InvalidInput
from core.exports import FORMULA_STARTS
from plugins.testing import fhir
from plugins.testing.results import ResultEntry, UploadRejected, enter_results, find_problems
from plugins.testing.schemas import ResultsEntered, RowError

if TYPE_CHECKING:
    from core.platform import Platform
    from core.principal import Principal

CSV_COLUMNS = ("label", "outcome", "ct_value")
REQUIRED_COLUMNS = ("label", "outcome")
_NUMBER = re.compile(r"^\s*-?[0-9]+(?:[.,][0-9]+)?\s*$")
OUTCOME_WORDS = {
    "negative": "negative",
    "neg": "negative",
    "âm tính": "negative",
    "am tinh": "negative",
    "positive": "positive",
    "pos": "positive",
    "dương tính": "positive",
    "duong tinh": "positive",
    "invalid": "invalid",
    "không xác định": "invalid",
    "khong xac dinh": "invalid",
}


# -- CSV ------------------------------------------------------------------------------------


async def import_csv(platform: Platform, principal: Principal, raw: bytes, *, lab: str | None = None) -> ResultsEntered:
    """Store every result of a CSV file (``label,outcome[,ct_value]``), or none, with a per-row report."""
    limit = platform.plugin_config("testing").max_upload_rows
    entries, errors = parse_csv(raw, max_rows=limit)
    return await _store(platform, principal, entries, errors, lab=lab)


def parse_csv(raw: bytes, *, max_rows: int) -> tuple[list[ResultEntry], list[RowError]]:
    """The entries of a result CSV, and every problem with its shape and cells."""
    text = _decode(raw)
    rows = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(rows)
    except StopIteration:
        raise UploadRejected([RowError(row=0, column=None, message="file: it is empty")]) from None
    except csv.Error as exc:
        raise UploadRejected([RowError(row=1, column=None, message=f"file: not a CSV file ({exc})")]) from None
    columns = _columns(header)
    width = len(columns)
    label_at, outcome_at, ct_at = columns["label"], columns["outcome"], columns.get("ct_value")
    entries: list[ResultEntry] = []
    errors: list[RowError] = []
    line = 1
    try:
        for line, cells in enumerate(rows, start=2):
            # The common row (right width, a known outcome word, an empty or plain Ct, no formula
            # look-alike) is read inline; anything else goes through the careful path with its messages.
            if len(cells) == width:
                label = cells[label_at]
                outcome = OUTCOME_WORDS.get(cells[outcome_at])
                ct_text = cells[ct_at] if ct_at is not None else ""
                if (
                    outcome is not None
                    and label
                    and label[0] not in _CAREFUL_STARTS
                    and (not ct_text or _PLAIN_CT.match(ct_text))
                ):
                    if len(entries) >= max_rows:
                        errors.append(
                            RowError(row=line, column=None, message=f"file: more than {max_rows} rows at once")
                        )
                        break
                    entries.append(ResultEntry(row=line, label=label, outcome=outcome, ct_value=_ct(ct_text)))
                    continue
            if not any(cell.strip() for cell in cells):
                continue
            if len(entries) >= max_rows:
                errors.append(RowError(row=line, column=None, message=f"file: more than {max_rows} rows at once"))
                break
            entry = _csv_entry(line, cells, columns, errors)
            if entry is not None:
                entries.append(entry)
    except csv.Error as exc:
        errors.append(RowError(row=line + 1, column=None, message=f"file: broken CSV ({exc})"))
    if not entries and not errors:
        errors.append(RowError(row=0, column=None, message="file: it has a header but no results"))
    return entries, errors


_CAREFUL_STARTS = FORMULA_STARTS | {" "}
# A Ct value from 0 to 60 with a dot, as lab systems write it.
_PLAIN_CT = re.compile(r"^(?:[0-9]|[1-5][0-9])(?:\.[0-9]+)?$|^60(?:\.0+)?$")


def _ct(text: str) -> float | None:
    return float(text) if text else None


def _decode(raw: bytes) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UploadRejected(
            [RowError(row=0, column=None, message="file: it is UTF-16 text; save it as 'CSV UTF-8' instead")]
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        message = (
            f"file: not UTF-8 text (byte {exc.start} cannot be read); "
            "save it as 'CSV UTF-8 (Comma delimited)' and upload it again"
        )
        raise UploadRejected([RowError(row=0, column=None, message=message)]) from None


def _columns(header: list[str]) -> dict[str, int]:
    names = [name.strip().lower() for name in header]
    if len(names) == 1 and ";" in names[0]:
        message = "header: the columns are separated by ';'; use commas (label,outcome,ct_value)"
        raise UploadRejected([RowError(row=1, column=None, message=message)])
    problems: list[RowError] = []
    unknown = [name for name in names if name not in CSV_COLUMNS]
    if unknown:
        message = f"header: unknown column(s) {', '.join(repr(n) for n in unknown)}; expected {', '.join(CSV_COLUMNS)}"
        problems.append(RowError(row=1, column=None, message=message))
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        problems.append(RowError(row=1, column=None, message=f"header: column(s) {', '.join(repeated)} appear twice"))
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        problems.append(RowError(row=1, column=None, message=f"header: missing column(s) {', '.join(missing)}"))
    if problems:
        raise UploadRejected(problems)
    return {name: index for index, name in enumerate(names)}


def _csv_entry(line: int, cells: list[str], columns: dict[str, int], errors: list[RowError]) -> ResultEntry | None:
    if len(cells) != len(columns):
        errors.append(
            RowError(row=line, column=None, message=f"row: it has {len(cells)} cells but the header has {len(columns)}")
        )
        return None
    found = len(errors)
    for name, index in columns.items():
        cell = cells[index]
        if cell.lstrip(" ")[:1] in FORMULA_STARTS and not _NUMBER.match(cell):
            errors.append(
                RowError(row=line, column=name, message=f"{name}: {cell[:20]!r} looks like a spreadsheet formula")
            )
    if len(errors) > found:
        return None
    outcome = OUTCOME_WORDS.get(cells[columns["outcome"]].strip().lower())
    if outcome is None:
        message = f"outcome: {cells[columns['outcome']][:20]!r} is not negative, positive or invalid"
        errors.append(RowError(row=line, column="outcome", message=message))
        return None
    ct_value = None
    if "ct_value" in columns and cells[columns["ct_value"]].strip():
        try:
            ct_value = float(cells[columns["ct_value"]].strip().replace(",", "."))
        except ValueError:
            ct_value = -1.0
        if not 0 <= ct_value <= 60:
            message = f"ct_value: {cells[columns['ct_value']][:20]!r} is not a number from 0 to 60"
            errors.append(RowError(row=line, column="ct_value", message=message))
            return None
    return ResultEntry(row=line, label=cells[columns["label"]].strip(), outcome=outcome, ct_value=ct_value)


# -- FHIR -------------------------------------------------------------------------------------


async def import_fhir_bundle(
    platform: Platform, principal: Principal, raw: bytes, *, lab: str | None = None
) -> ResultsEntered:
    """Store the results of a FHIR R4 Bundle of Observations (or DiagnosticReports), or none."""
    try:
        bundle = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"bundle: not JSON ({exc})") from None
    limit = platform.plugin_config("testing").max_upload_rows
    entries, errors = fhir.result_entries(bundle, max_entries=limit)
    return await _store(platform, principal, entries, errors, lab=lab)


async def _store(
    platform: Platform, principal: Principal, entries: list[ResultEntry], errors: list[RowError], *, lab: str | None
) -> ResultsEntered:
    if errors:
        # Report the stored-state problems of the readable rows too, so one round of fixes is enough.
        errors = errors + await find_problems(platform, principal, entries, lab=lab)
        raise UploadRejected(sorted(errors, key=lambda e: e.row))
    return await enter_results(platform, principal, entries, lab=lab)
