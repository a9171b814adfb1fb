"""Exports of lists (contacts, results, doses) as CSV that is safe to open in a spreadsheet, and JSON.

A text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return (or their full-width forms) would run as a formula in Excel or
LibreOffice; such cells get a leading ``'`` so they show as text
(OWASP "CSV injection"). The CSV is UTF-8 with a byte-order mark, so Excel
shows Vietnamese names correctly, and uses CRLF line ends as RFC 4180 says.
Numbers, booleans and dates are written as they are: they cannot be formulas.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

import msgspec
from litestar import Response

# The full-width forms (U+FF1D, U+FF0B, U+FF0D, U+FF20) are read as formulas too.
FORMULA_STARTS = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
UTF8_BOM = "\ufeff"
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
JSON_MEDIA_TYPE = "application/json"


def spreadsheet_cell(value: Any) -> str:
    """One value as CSV cell text, neutralised when a spreadsheet would read it as a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    text = str(value)
    # Spreadsheets skip leading spaces before deciding that a cell is a formula.
    if text.lstrip(" ")[:1] in FORMULA_STARTS:
        return "'" + text
    return text


def to_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """A whole CSV file: BOM, header, then the rows, every cell neutralised."""
    buffer = io.StringIO()
    buffer.write(UTF8_BOM)
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([spreadsheet_cell(name) for name in header])
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"row has {len(row)} cells but the header has {len(header)}")
        writer.writerow([spreadsheet_cell(value) for value in row])
    return buffer.getvalue().encode("utf-8")


def to_json(data: Any) -> bytes:
    """JSON for Structs, dicts, lists, dates and UUIDs alike."""
    return msgspec.json.encode(data)


def download(body: bytes, filename: str, media_type: str) -> Response[bytes]:
    """An HTTP response that browsers save as ``filename``."""
    safe_name = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in filename) or "export"
    return Response(
        content=body,
        media_type=media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{safe_name}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )
