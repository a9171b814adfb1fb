"""Printable tube labels and result receipts: SVG with a QR code (segno) and the text beside it.

A tube label carries only the label id, the test and the site, never the
person's name: the tube travels through many hands. The receipt carries
the result code and a QR code of the lookup address, so the person can
scan it instead of typing the code.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from html import escape
from urllib.parse import quote

import segno

from plugins.testing.identifiers import normalize_code

VIETNAM = timezone(timedelta(hours=7), "ICT")


def qr_svg(content: str, *, scale: int = 4) -> str:
    """An SVG QR code, medium error correction (a label survives a smudge)."""
    return str(segno.make(content, error="m").svg_inline(scale=scale, border=2))


def lookup_url(base_url: str, code: str) -> str:
    """The address printed on a receipt: the lookup page with the code filled in."""
    return f"{base_url.rstrip('/')}/testing/result?code={quote(normalize_code(code) or code)}"


def label_svg(label: str, *, test_type: str, site: str, collected_at: datetime | None = None) -> str:
    """A 50 x 25 mm tube label: the QR of the label id, and the id, test and site in text."""
    qr = segno.make(label, error="m")
    size = qr.symbol_size(scale=3, border=1)[0]
    lines = [label[:16], label[16:], test_type, site]
    if collected_at is not None:
        lines.append(_local(collected_at))
    return _compose(qr.svg_inline(scale=3, border=1), size, lines, width=size + 210, title=f"Label {label}")


def receipt_svg(
    *,
    sample_id: str,
    full_name: str,
    test_name_vi: str,
    test_name_en: str,
    site: str,
    collected_at: datetime,
    code: str,
    url: str,
) -> str:
    """The person's receipt: whose sample, when and where, the result code, and the lookup QR."""
    qr = segno.make(url, error="m")
    size = qr.symbol_size(scale=3, border=2)[0]
    lines = [
        "PHIEU HEN TRA KET QUA / RESULT RECEIPT",
        full_name,
        f"{test_name_vi} / {test_name_en}",
        f"{site} - {_local(collected_at)}",
        f"Ma tra cuu / Result code: {code}",
        f"Mau / Sample: {sample_id}",
        "Tra cuu bang ma nay va ngay sinh / Look up with this code and your date of birth",
    ]
    return _compose(qr.svg_inline(scale=3, border=2), size, lines, width=size + 560, title="Result receipt")


def _compose(qr_inline: str, qr_size: int, lines: list[str], *, width: int, title: str) -> str:
    line_height = 16
    height = max(qr_size, line_height * (len(lines) + 1))
    texts = "".join(
        f'<text x="{qr_size + 8}" y="{line_height * (index + 1)}">{escape(line)}</text>'
        for index, line in enumerate(lines)
    )
    # The QR keeps its own coordinate system as a nested <svg>.
    nested = qr_inline.replace("<svg ", '<svg x="0" y="0" ', 1)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="13">'
        f"<title>{escape(title)}</title>"
        f'<rect width="{width}" height="{height}" fill="#fff"/>{nested}{texts}</svg>'
    )


def _local(moment: datetime) -> str:
    """Vietnam local time (UTC+7) for people to read."""
    local = moment.astimezone(VIETNAM)
    return local.strftime("%d/%m/%Y %H:%M")
