"""Posters in SVG, PNG and PDF, one and in batches: an independent decoder reads back the exact URL."""

from __future__ import annotations

import io
import zipfile

import pypdfium2
import resvg_py
import zxingcpp
from PIL import Image


def decode(data: bytes, fmt: str) -> list[str]:
    """Every QR code an independent decoder (zxing-cpp) finds on the poster's pages."""
    if fmt == "png":
        images = [Image.open(io.BytesIO(data))]
    elif fmt == "svg":
        images = [Image.open(io.BytesIO(bytes(resvg_py.svg_to_bytes(svg_string=data.decode(), dpi=150.0))))]
    else:
        document = pypdfium2.PdfDocument(data)
        images = [document[i].render(scale=2).to_pil() for i in range(len(document))]
    found = []
    for image in images:
        found.extend(result.text for result in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode))
    return found


async def test_each_format_carries_the_exact_url(kit):
    operator = await kit.operator()
    venue = await kit.venue(
        operator, name="Nhà hàng Sen Tây Hồ — tầng thượng, phía hồ", sub_locations=[{"name": "Phòng VIP 1"}]
    )
    venue_url = next(c["url"] for c in venue["codes"] if c["sub_location_id"] is None)
    sub = venue["sub_locations"][0]
    sub_url = next(c["url"] for c in venue["codes"] if c["sub_location_id"] == sub["id"])
    for fmt in ("svg", "png", "pdf"):
        response = await kit.client.get(
            f"/api/checkin/venues/{venue['id']}/poster?format={fmt}&sub_location_id={sub['id']}", headers=operator
        )
        assert response.status_code == 200, response.text
        assert decode(response.content, fmt) == [sub_url], fmt
    # Without a sub-location, the PDF has a page for every code of the venue.
    whole = await kit.client.get(f"/api/checkin/venues/{venue['id']}/poster?format=pdf", headers=operator)
    assert whole.headers["content-type"] == "application/pdf"
    assert sorted(decode(whole.content, "pdf")) == sorted([venue_url, sub_url])
    svg = await kit.client.get(f"/api/checkin/venues/{venue['id']}/poster?format=svg", headers=operator)
    text = svg.content.decode()
    assert "Nhà hàng Sen Tây Hồ" in text
    assert "Quét mã QR" in text and "Scan this code" in text


async def test_batch_zip_has_every_code_of_every_venue(kit):
    operator = await kit.operator()
    venues = [
        await kit.venue(operator, name="Quán A"),
        await kit.venue(operator, name="Quán B", sub_locations=[{"name": "Bàn 1"}, {"name": "Bàn 2"}]),
    ]
    urls = sorted(c["url"] for v in venues for c in v["codes"])
    for fmt in ("png", "pdf", "svg"):
        response = await kit.client.post(
            "/api/checkin/posters/batch", json={"venue_ids": [v["id"] for v in venues], "format": fmt}, headers=operator
        )
        assert response.status_code == 200, response.text
        archive = zipfile.ZipFile(io.BytesIO(response.content))
        names = archive.namelist()
        assert len(names) == 4 and all(name.endswith(f".{fmt}") for name in names)
        found = sorted(url for name in names for url in decode(archive.read(name), fmt))
        assert found == urls, fmt


async def test_rotated_code_changes_the_poster_and_others_cannot_print(kit):
    operator = await kit.operator(site="mine")
    venue = await kit.venue(operator)
    before = await kit.client.get(f"/api/checkin/venues/{venue['id']}/poster?format=png", headers=operator)
    rotated = await kit.client.post(f"/api/checkin/venues/{venue['id']}/codes/rotate", json={}, headers=operator)
    after = await kit.client.get(f"/api/checkin/venues/{venue['id']}/poster?format=png", headers=operator)
    assert decode(after.content, "png") == [rotated.json()["codes"][0]["url"]]
    assert decode(before.content, "png") != decode(after.content, "png")
    stranger = await kit.operator(site="theirs")
    assert (await kit.client.get(f"/api/checkin/venues/{venue['id']}/poster", headers=stranger)).status_code == 403
    batch = await kit.client.post("/api/checkin/posters/batch", json={"venue_ids": [venue["id"]]}, headers=stranger)
    assert batch.status_code == 403
