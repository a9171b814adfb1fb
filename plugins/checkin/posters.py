"""Posters to print: the venue's QR code with its name and short instructions in Vietnamese and English.

SVG, PNG and PDF, A4 portrait; one poster per code (the venue's and each
sub-location's). The QR symbol is drawn from segno's module matrix as
filled squares (vector in SVG and PDF, exact pixels in PNG), with error
correction level Q so that a creased or stained poster still scans.
The fonts (DejaVu Sans, which covers Vietnamese) ship in ``fonts/``; rendering is CPU work, so
routes run it in a worker thread.
"""

from __future__ import annotations

import functools
import io
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from xml.sax.saxutils import escape

import msgspec
import segno
from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont

from core import Principal
from plugins.checkin.venues import readable_venue, venue_view

if TYPE_CHECKING:
    from core.platform import Platform

Format = Literal["svg", "png", "pdf"]
MEDIA_TYPES: dict[str, str] = {"svg": "image/svg+xml", "png": "image/png", "pdf": "application/pdf"}

FONTS = Path(__file__).parent / "fonts"
REGULAR_FONT = FONTS / "DejaVuSans.ttf"
BOLD_FONT = FONTS / "DejaVuSans-Bold.ttf"

# A4 in millimetres; the QR code is a 150 mm square, centred.
PAGE_W, PAGE_H = 210.0, 297.0
QR_SIZE, QR_TOP = 150.0, 62.0
QUIET_ZONE = 4  # modules of white around the symbol, as the QR standard asks
PNG_DPI = 150

INSTRUCTIONS_VI = (
    "Quét mã QR bằng điện thoại để khai báo y tế",
    "và ghi nhận bạn đã đến địa điểm này.",
)
INSTRUCTIONS_EN = (
    "Scan this code with your phone to check in",
    "and make your health declaration.",
)
FOOTER = "phongdich · Bộ Y tế / Ministry of Health"


class Poster(msgspec.Struct, frozen=True, kw_only=True):
    """What one poster shows: the venue, the sub-location if any, the address, and the code's URL."""

    venue_name: str
    place_name: str | None
    address: str
    url: str
    file_stem: str


async def venue_posters(
    platform: Platform, principal: Principal, venue_id: uuid.UUID, sub_location_id: uuid.UUID | None = None
) -> list[Poster]:
    """The posters of a venue's current codes (one sub-location's only, when given)."""
    await readable_venue(platform, principal, venue_id, "checkin.venue.read")
    venue = await venue_view(platform, venue_id)
    posters = []
    for code in venue.codes:
        if sub_location_id is not None and code.sub_location_id != str(sub_location_id):
            continue
        stem = f"{_slug(venue.name)}-{venue.id[:8]}" + (
            f"-{_slug(code.sub_location_name or '')}-{code.id[:4]}" if code.sub_location_id else ""
        )
        posters.append(
            Poster(
                venue_name=venue.name,
                place_name=code.sub_location_name,
                address=venue.address,
                url=code.url,
                file_stem=stem,
            )
        )
    return posters


def render(poster: Poster, fmt: Format) -> bytes:
    if fmt == "svg":
        return poster_svg(poster).encode("utf-8")
    if fmt == "png":
        return poster_png(poster)
    return posters_pdf([poster])


def batch_zip(posters: list[Poster], fmt: Format) -> bytes:
    """Many posters in one zip, one file each (PDF: one file per poster as well)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for poster in posters:
            archive.writestr(f"{poster.file_stem}.{fmt}", render(poster, fmt))
    return buffer.getvalue()


# -- SVG ---------------------------------------------------------------------------------


def poster_svg(poster: Poster) -> str:
    qr = _symbol(poster.url)
    size = qr.symbol_size(scale=1, border=QUIET_ZONE)[0]
    module = QR_SIZE / size
    x0 = (PAGE_W - QR_SIZE) / 2
    squares = "".join(f"M{col},{row}h{run}v1h-{run}z" for col, row, run in _dark_runs(qr))
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{PAGE_W}mm" height="{PAGE_H}mm" '
        f'viewBox="0 0 {PAGE_W} {PAGE_H}" font-family="DejaVu Sans, Arial, sans-serif">',
        f'<rect width="{PAGE_W}" height="{PAGE_H}" fill="#ffffff"/>',
    ]
    y = 22.0
    title, title_size = _title(poster.venue_name)
    for line in title:
        lines.append(_svg_text(line, y, title_size, bold=True))
        y += title_size * 1.1
    if poster.place_name:
        lines.append(_svg_text(poster.place_name, y, 8, bold=True))
    lines.append(
        f'<g transform="translate({x0:.3f},{QR_TOP:.3f}) scale({module:.5f})">'
        f'<path d="{squares}" fill="#000000" shape-rendering="crispEdges"/></g>'
    )
    y = QR_TOP + QR_SIZE + 12
    for line in INSTRUCTIONS_VI:
        lines.append(_svg_text(line, y, 6.2, bold=True))
        y += 8
    y += 2
    for line in INSTRUCTIONS_EN:
        lines.append(_svg_text(line, y, 5.6))
        y += 7
    for line in _wrap_chars(poster.address, 60)[:2]:
        lines.append(_svg_text(line, y + 4, 4.2))
        y += 5.5
    lines.append(_svg_text(FOOTER, PAGE_H - 10, 3.6))
    lines.append("</svg>")
    return "\n".join(lines) + "\n"


def _svg_text(text: str, y: float, size: float, *, bold: bool = False) -> str:
    weight = ' font-weight="bold"' if bold else ""
    return f'<text x="{PAGE_W / 2}" y="{y:.2f}" font-size="{size}" text-anchor="middle"{weight}>{escape(text)}</text>'


# -- PNG ---------------------------------------------------------------------------------


def poster_png(poster: Poster) -> bytes:
    px = PNG_DPI / 25.4  # pixels per millimetre
    image = Image.new("L", (round(PAGE_W * px), round(PAGE_H * px)), 255)
    draw = ImageDraw.Draw(image)
    qr = _symbol(poster.url)
    size = qr.symbol_size(scale=1, border=QUIET_ZONE)[0]
    # Whole pixels per module keep every module the same size, which scanners like.
    module_px = max(1, int(QR_SIZE * px) // size)
    qr_px = module_px * size
    x0 = (image.width - qr_px) // 2
    y0 = round(QR_TOP * px)
    for col, row, run in _dark_runs(qr):
        draw.rectangle(
            [
                x0 + col * module_px,
                y0 + row * module_px,
                x0 + (col + run) * module_px - 1,
                y0 + (row + 1) * module_px - 1,
            ],
            fill=0,
        )
    y = 22.0
    title, title_size = _title(poster.venue_name)
    for line in title:
        _png_text(draw, line, y * px, title_size * px, bold=True)
        y += title_size * 1.1
    if poster.place_name:
        _png_text(draw, poster.place_name, y * px, 8 * px, bold=True)
    y = (y0 + qr_px) / px + 12
    for line in INSTRUCTIONS_VI:
        _png_text(draw, line, y * px, 6.2 * px, bold=True)
        y += 8
    y += 2
    for line in INSTRUCTIONS_EN:
        _png_text(draw, line, y * px, 5.6 * px)
        y += 7
    for line in _wrap_chars(poster.address, 60)[:2]:
        _png_text(draw, line, (y + 4) * px, 4.2 * px)
        y += 5.5
    _png_text(draw, FOOTER, (PAGE_H - 10) * px, 3.6 * px)
    out = io.BytesIO()
    image.save(out, format="PNG", dpi=(PNG_DPI, PNG_DPI))
    return out.getvalue()


def _png_text(draw: ImageDraw.ImageDraw, text: str, baseline: float, size: float, *, bold: bool = False) -> None:
    width = PAGE_W * PNG_DPI / 25.4
    draw.text((width / 2, baseline), text, font=_font(bold, round(size)), fill=0, anchor="ms")


@functools.cache
def _font(bold: bool, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(BOLD_FONT if bold else REGULAR_FONT), size)


# -- PDF ---------------------------------------------------------------------------------


def posters_pdf(posters: list[Poster]) -> bytes:
    """One A4 page per poster, the QR code drawn as vector squares."""
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_auto_page_break(False)
    pdf.set_title("phongdich check-in posters")
    pdf.add_font("DejaVu", "", str(REGULAR_FONT))
    pdf.add_font("DejaVu", "B", str(BOLD_FONT))
    for poster in posters:
        pdf.add_page()
        qr = _symbol(poster.url)
        size = qr.symbol_size(scale=1, border=QUIET_ZONE)[0]
        module = QR_SIZE / size
        x0 = (PAGE_W - QR_SIZE) / 2
        pdf.set_fill_color(0, 0, 0)
        for col, row, run in _dark_runs(qr):
            pdf.rect(x0 + col * module, QR_TOP + row * module, run * module, module, style="F")
        y_mm = 22.0
        title, title_size = _title(poster.venue_name)
        for line in title:
            _pdf_text(pdf, line, y_mm, title_size, bold=True)
            y_mm += title_size * 1.1
        if poster.place_name:
            _pdf_text(pdf, poster.place_name, y_mm, 8, bold=True)
        y_mm = QR_TOP + QR_SIZE + 12
        for line in INSTRUCTIONS_VI:
            _pdf_text(pdf, line, y_mm, 6.2, bold=True)
            y_mm += 8
        y_mm += 2
        for line in INSTRUCTIONS_EN:
            _pdf_text(pdf, line, y_mm, 5.6)
            y_mm += 7
        for line in _wrap_chars(poster.address, 60)[:2]:
            _pdf_text(pdf, line, y_mm + 4, 4.2)
            y_mm += 5.5
        _pdf_text(pdf, FOOTER, PAGE_H - 10, 3.6)
    return bytes(pdf.output())


def _pdf_text(pdf: FPDF, text: str, baseline_mm: float, size_mm: float, *, bold: bool = False) -> None:
    pdf.set_font("DejaVu", "B" if bold else "", size_mm * 72 / 25.4)  # mm to points
    pdf.text((PAGE_W - pdf.get_string_width(text)) / 2, baseline_mm, text)


# -- shared drawing ----------------------------------------------------------------------


def _symbol(url: str) -> segno.QRCode:
    return segno.make(url, error="q", micro=False, boost_error=False)


def _dark_runs(qr: segno.QRCode) -> Iterator[tuple[int, int, int]]:
    """Horizontal runs of dark modules as (x, y, length), quiet zone included in the coordinates."""
    for y, row in enumerate(qr.matrix_iter(scale=1, border=QUIET_ZONE)):
        x, cells = 0, list(row)
        while x < len(cells):
            if cells[x]:
                start = x
                while x < len(cells) and cells[x]:
                    x += 1
                yield start, y, x - start
            else:
                x += 1


def _title(name: str) -> tuple[list[str], float]:
    """The venue name in at most three lines, smaller when it is long (sizes in millimetres)."""
    for size, width in ((11.0, 28), (8.0, 38), (6.0, 52)):
        lines = _wrap_chars(name, width)
        if len(lines) <= (2 if size > 6 else 3):
            return lines, size
    return _wrap_chars(name, 52)[:3], 6.0


def _wrap_chars(text: str, width: int) -> list[str]:
    """Split at spaces into lines of at most ``width`` characters (long words stay whole)."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    return lines or [""]


def _slug(text: str) -> str:
    kept = "".join(ch.lower() if ch.isascii() and ch.isalnum() else "-" for ch in text)
    return "-".join(part for part in kept.split("-") if part)[:40] or "venue"
