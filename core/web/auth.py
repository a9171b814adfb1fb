"""Signing in: staff with a password, citizens with a one-time code; signing out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from core.fields import Phone, SixDigits, Username
from core.identity import IssuedToken
from core.web.guard import PlatformDep, PrincipalDep, client_address

PUBLIC = {"public": True, "purpose": "core.identity"}

Password = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Code = SixDigits


class LoginBody(msgspec.Struct, forbid_unknown_fields=True):
    username: Username
    password: Password


class OtpRequestBody(msgspec.Struct, forbid_unknown_fields=True):
    phone: Phone


class OtpSent(msgspec.Struct):
    expires_at: datetime
    detail: str


class OtpVerifyBody(msgspec.Struct, forbid_unknown_fields=True):
    phone: Phone
    code: Code


@post("/api/auth/login", opt=PUBLIC, tags=["auth"], summary="Staff sign-in: returns a bearer token")
async def login(data: JSONBody[LoginBody], request: Request[Any, Any, Any], platform: PlatformDep) -> IssuedToken:
    return await platform.identity.login(data.username, data.password, client_address(request))


@post(
    "/api/auth/otp",
    opt=PUBLIC,
    status_code=HTTP_202_ACCEPTED,
    tags=["auth"],
    summary="Citizen sign-in, step 1: send a one-time code to the phone",
)
async def request_otp(
    data: JSONBody[OtpRequestBody], request: Request[Any, Any, Any], platform: PlatformDep
) -> OtpSent:
    expires = await platform.identity.request_otp(data.phone, client_address(request))
    return OtpSent(
        expires_at=expires,
        detail="Đã gửi mã xác thực qua SMS. / A code was sent by SMS.",
    )


@post("/api/auth/otp/verify", opt=PUBLIC, tags=["auth"], summary="Citizen sign-in, step 2: the code")
async def verify_otp(
    data: JSONBody[OtpVerifyBody], request: Request[Any, Any, Any], platform: PlatformDep
) -> IssuedToken:
    return await platform.identity.verify_otp(data.phone, data.code, client_address(request))


@post(
    "/api/auth/logout",
    opt={"action": "core.me.read"},
    status_code=HTTP_204_NO_CONTENT,
    tags=["auth"],
    summary="Revoke the token or key used for this request",
)
async def logout(principal: PrincipalDep, platform: PlatformDep) -> None:
    if principal.credential_id is None:
        return
    if principal.id.startswith("key:"):
        await platform.identity.revoke_api_key(principal.credential_id)
    else:
        await platform.identity.revoke_token(principal.credential_id)


ROUTES = [login, request_otp, verify_otp, logout]
