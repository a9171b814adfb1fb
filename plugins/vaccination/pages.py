"""HTML pages under ``/vaccination``: the public certificate checker.

The checker posts the certificate text (never in the URL, so it stays out of
access logs), shows whether it is valid with the name and date of birth, and
stores nothing.
"""

from __future__ import annotations

from typing import Annotated

from litestar import get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Template

from core.web.guard import PlatformDep
from plugins.vaccination import certificates
from plugins.vaccination.schemas import VerificationView

PUBLIC = {"public": True}
MAX_TEXT = 8192


@get("/verify", opt=PUBLIC, include_in_schema=False)
async def verify_form() -> Template:
    return Template(template_name="vaccination/verify.html", context={"result": None, "text": ""})


@post("/verify", opt=PUBLIC, status_code=200, include_in_schema=False)
async def verify_submit(
    platform: PlatformDep,
    data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Template:
    text = (data.get("hc1") or "").strip()
    if not text:
        result = VerificationView(valid=False, reason="Paste the certificate text (it starts with HC1:).")
    elif len(text) > MAX_TEXT:
        result = VerificationView(valid=False, reason="The text is too long to be a certificate.")
    else:
        result = await certificates.verify(platform, text)
    return Template(template_name="vaccination/verify.html", context={"result": result, "text": ""})


PAGES = [verify_form, verify_submit]
