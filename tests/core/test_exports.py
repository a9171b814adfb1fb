"""Exports: CSV that no spreadsheet runs as formulas, with a BOM for Excel; JSON for anything."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime

import pytest

from core.exports import download, spreadsheet_cell, to_csv, to_json


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+2", "'=1+2"),
        ("+84912345678", "'+84912345678"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
        ("\t=cmd", "'\t=cmd"),
        ("\r=cmd", "'\r=cmd"),
        ('  =HYPERLINK("x")', '\'  =HYPERLINK("x")'),
        ("\uff1d1+1", "'\uff1d1+1"),  # full-width equals sign
        ("Nguyễn Văn An", "Nguyễn Văn An"),
        ("a=b", "a=b"),
        (-5, "-5"),
        (2.5, "2.5"),
        (True, "true"),
        (None, ""),
    ],
)
def test_cells(value, cell):
    assert spreadsheet_cell(value) == cell


def test_csv_has_bom_crlf_and_neutralised_cells():
    body = to_csv(["name", "when"], [["=evil()", datetime(2021, 7, 20, 8, 30, tzinfo=UTC)], ['Lê, Thị "Bé"', None]])
    assert body.startswith("\ufeff".encode())
    text = body.decode("utf-8-sig")
    assert "\r\n" in text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [["name", "when"], ["'=evil()", "2021-07-20T08:30:00+00:00"], ['Lê, Thị "Bé"', ""]]


def test_csv_rows_must_match_the_header():
    with pytest.raises(ValueError, match="header"):
        to_csv(["a", "b"], [["only one"]])


def test_json_and_download():
    ident = uuid.uuid4()
    assert to_json({"id": ident, "n": 1}) == f'{{"id":"{ident}","n":1}}'.encode()
    response = download(b"x", "case 1/../contacts.csv", "text/csv; charset=utf-8")
    assert response.headers["Content-Disposition"] == 'attachment; filename="case_1_.._contacts.csv"'
    assert response.headers["Cache-Control"] == "no-store"
