"""HTML pages under ``/testing``: the result lookup page the receipt's QR code opens.

The code comes pre-filled from the QR; the person adds their date of birth
(or asks for a one-time code by SMS). Every failure shows the same message,
as the API does.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from litestar import Request, get, post
from litestar.enums import RequestEncodingType
from litestar.exceptions import TooManyRequestsException
from litestar.params import Body, Parameter
from litestar.response import Template

from core import InvalidInput, NotFound
from core.web.guard import PlatformDep, client_address
from plugins.testing import lookup
from plugins.testing.printing import VIETNAM
from plugins.testing.schemas import LookupIn, LookupOtpIn

PUBLIC = {"public": True, "purpose": "testing.results"}
TEMPLATE = "testing/result.html"


@get("/result", opt=PUBLIC, include_in_schema=False)
async def result_form(code: Annotated[str, Parameter(max_length=40)] = "") -> Template:
    return Template(template_name=TEMPLATE, context={"code": code, "result": None, "message": None, "tz": VIETNAM})


@post("/result", opt=PUBLIC, status_code=200, include_in_schema=False)
async def result_submit(
    request: Request[Any, Any, Any],
    platform: PlatformDep,
    data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Template:
    code = (data.get("code") or "").strip()[:40]
    context: dict[str, Any] = {"code": code, "result": None, "message": None, "tz": VIETNAM}
    status = 200
    try:
        if data.get("action") == "otp":
            sent = await lookup.send_lookup_otp(platform, client_address(request), LookupOtpIn(code=code or "-"))
            context["message"] = sent.detail
        else:
            context["result"] = await lookup.lookup(platform, client_address(request), _lookup_in(code, data))
    except (NotFound, InvalidInput) as exc:
        status = 404 if isinstance(exc, NotFound) else 400
        context["message"] = str(exc)
    except TooManyRequestsException as exc:
        status = 429
        context["message"] = exc.detail
    return Template(template_name=TEMPLATE, context=context, status_code=status)


def _lookup_in(code: str, data: dict[str, str]) -> LookupIn:
    otp = (data.get("otp") or "").strip()
    born = (data.get("date_of_birth") or "").strip()
    if otp:
        if not (len(otp) == 6 and otp.isdigit()):
            raise InvalidInput("otp: the one-time code has 6 digits")
        return LookupIn(code=code or "-", otp=otp)
    try:
        return LookupIn(code=code or "-", date_of_birth=dt.date.fromisoformat(born))
    except ValueError:
        raise InvalidInput("date_of_birth: enter your date of birth (YYYY-MM-DD)") from None


PAGES = [result_form, result_submit]
