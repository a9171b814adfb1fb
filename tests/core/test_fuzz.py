"""Bad input on every route in the OpenAPI schema: never a 500, never a stack trace.

Every operation the app serves is fuzzed, mostly by the callers its action
admits (an anonymous caller, a national admin, a citizen, and a staff member
holding every province, site and lab role) and sometimes by any of them, with
random JSON, wrong types, huge and odd unicode strings, missing and extra
fields, bytes that are not JSON, wrong content types, and random path and
query parameters. A deterministic sweep then puts the classic database
breakers (a NUL character, integers past 64 bits, over-long strings) into
every parameter and top-level body field, one at a time.

Hypothesis runs derandomized with a bounded number of examples, so CI sends
the same requests every run; ``PHONGDICH_FUZZ_EXAMPLES=200`` digs deeper.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC
from importlib.metadata import entry_points
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample, Unsatisfiable
from litestar import Litestar, post
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException
from litestar.params import Body, JSONBody
from litestar.testing import AsyncTestClient

from core.app import create_app
from core.platform import Platform
from core.plugins import ENTRY_POINT_GROUP
from core.principal import CITIZEN, NATIONAL_ADMIN
from core.settings import load_settings
from core.testing import TEST_SECRET, citizen_headers, http_client, staff_headers, started_platform
from core.web.errors import http_error
from core.web.nul_guard import MESSAGE, refuse_nul_characters

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Every plugin this repository ships (national and province), so their routes are fuzzed too.
FUZZ_PLUGINS = sorted(
    ep.name for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.dist is not None and ep.dist.name == "phongdich"
)
# Most privileged first: the sweep uses the first caller an operation admits.
CALLERS = ("national_admin", "provincial_staff", "citizen", "anonymous")
EXAMPLES = int(os.environ.get("PHONGDICH_FUZZ_EXAMPLES", "20"))
FUZZ_SETTINGS = {
    "derandomize": True,
    # No shrinking: a failure is reported at once, as generated; shrinking fuzzed requests takes minutes.
    "phases": [Phase.explicit, Phase.generate],
    "database": None,
    "deadline": None,
    # The platform and accounts are built once per module, not per example, on purpose.
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
}
LEAK_MARKERS = ("Traceback", 'File "')


class Operation:
    """One method on one path of the OpenAPI document: its inputs, and which callers it admits."""

    def __init__(
        self,
        method: str,
        path: str,
        parameters: tuple[dict[str, Any], ...],
        body: dict[str, Any] | None,
        components: dict[str, Any],
    ) -> None:
        self.method = method
        self.path = path
        self.parameters = parameters
        self.body = body
        self.components = components
        self.admitted: tuple[str, ...] = ()

    def __repr__(self) -> str:
        # Short on purpose: Hypothesis prints it with every failing example.
        return f"{self.method} {self.path}"

    __str__ = __repr__


def operations_of(schema: dict[str, Any]) -> list[Operation]:
    components = schema.get("components", {}).get("schemas", {})
    found = []
    for path, item in sorted(schema["paths"].items()):
        shared = item.get("parameters", [])
        for method, operation in sorted(item.items()):
            if method not in ("get", "put", "post", "delete", "patch"):
                continue
            content = operation.get("requestBody", {}).get("content", {})
            body = next(iter(content.values()), {}).get("schema", {}) if content else None
            found.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    parameters=tuple([*shared, *operation.get("parameters", [])]),
                    body=body,
                    components=components,
                )
            )
    return found


def _fuzzed_app() -> tuple[list[Operation], list[str]]:
    """The operations of the app under test and the roles of ``provincial_staff``.

    Built at collection time, without a database: the app is only inspected.
    """
    with tempfile.TemporaryDirectory(prefix="phongdich-fuzz-") as folder:
        built = load_settings(
            env={"PHONGDICH_DATABASE_URL": f"sqlite:///{folder}/unused.sqlite3"},
            secret_key=TEST_SECRET,
            plugins=FUZZ_PLUGINS,
            run_background_tasks=False,
            log_format="json",
            log_level="warning",
        )
        platform = Platform(built)
        app = create_app(platform=platform)
        operations = operations_of(app.openapi_schema.to_schema())
    roles = platform.roles
    provincial = sorted(name for name, role in roles.roles.items() if role.scope in ("province", "site", "lab"))
    holds = {"national_admin": [NATIONAL_ADMIN], "provincial_staff": provincial, "citizen": [CITIZEN], "anonymous": []}
    opts = {
        (method, re.sub(r"\{(\w+):[^}]+\}", r"{\1}", route.path)): handler.opt
        for route in app.routes
        for handler in getattr(route, "route_handlers", [])
        for method in getattr(handler, "http_methods", ())
    }
    for operation in operations:
        opt = opts.get((operation.method, operation.path))
        assert opt is not None, f"the fuzzer found no handler for {operation}"
        action = opt.get("action")
        operation.admitted = tuple(
            caller
            for caller in CALLERS
            if opt.get("public") or (action and any(roles.grants(roles.roles[name], action) for name in holds[caller]))
        )
    return operations, provincial


OPERATIONS, PROVINCIAL_ROLES = _fuzzed_app()
SWEPT = [pytest.param(op, id=str(op)) for op in OPERATIONS if op.admitted]


# -- strategies: values ----------------------------------------------------------

PRINTABLE_ASCII = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
NASTY_STRINGS = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\t\r\n",
        "\u202eevil",  # right-to-left override
        "😷" * 20,
        "Nguyễn Văn A",
        "' OR 1=1 --",
        '"; DROP TABLE staff_account; --',
        "../../../../etc/passwd",
        "%00%2e%2e%2f",
        "{{7*7}}",
        "<script>alert(1)</script>",
        "null",
        "NaN",
        "-1",
        "1e309",
        "9" * 40,
        "00000000-0000-0000-0000-000000000000",
        "\ufeff",
        "\U0001d54f",
    ]
)
# Integers that overflow 32- and 64-bit columns, and the usual off-by-ones.
NASTY_INTEGERS = st.sampled_from([0, -1, 2**31, 2**63 - 1, 2**63, -(2**63) - 1, 10**30, -(10**30)])
HUGE_STRINGS = st.integers(min_value=1_000, max_value=120_000).map(lambda n: "ê" * n)
# httpx refuses URLs over 64 KiB, and real proxies stop near 8 KiB: long, not huge, in URLs.
LONG_STRINGS = st.integers(min_value=200, max_value=2_000).map(lambda n: "ê" * n)
URL_TEXT = st.one_of(st.text(max_size=40), NASTY_STRINGS, LONG_STRINGS)
BODY_TEXT = st.one_of(st.text(max_size=40), NASTY_STRINGS, HUGE_STRINGS, st.just("\ud800 lone surrogate"))
ODD_NUMBERS = st.one_of(
    st.integers(),
    NASTY_INTEGERS,
    st.floats(),  # NaN and infinities become invalid JSON, on purpose
)
ANY_JSON = st.recursive(
    st.none() | st.booleans() | ODD_NUMBERS | BODY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=8,
)


_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {}


def _cached(kind: str, schema: dict[str, Any], components: dict[str, Any], build: Any) -> st.SearchStrategy[Any]:
    """Build each schema's strategy once: Hypothesis's per-strategy setup costs more than drawing."""
    key = f"{kind}:{id(components)}:{json.dumps(schema, sort_keys=True, default=str)}"
    if key not in _STRATEGIES:
        _STRATEGIES[key] = build()
    return _STRATEGIES[key]


def valid_value(schema: dict[str, Any], components: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values the JSON schema accepts (for the subset Litestar emits); anything JSON otherwise."""
    return _cached("valid", schema, components, lambda: _build_valid(schema, components))


def _build_valid(schema: dict[str, Any], components: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "$ref" in schema:
        return st.deferred(lambda: valid_value(_resolve(schema, components), components))
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    choices = _choices(schema)
    if len(choices) > 1:
        return st.one_of([valid_value(choice, components) for choice in choices])
    schema = choices[0]
    kind = schema.get("type")
    if kind == "string":
        return _valid_string(schema)
    if kind == "integer":
        low, high = _bounds(schema, -(2**31), 2**31)
        return st.integers(min_value=math.ceil(low), max_value=math.floor(high))
    if kind == "number":
        low, high = _bounds(schema, None, None)
        return st.floats(low, high, allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        items = valid_value(schema.get("items", {}), components)
        low = schema.get("minItems", 0)
        return st.lists(items, min_size=low, max_size=max(low, min(schema.get("maxItems", 4), 4)))
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {name: valid_value(sub, components) for name, sub in properties.items() if name in required},
            optional={name: valid_value(sub, components) for name, sub in properties.items() if name not in required},
        )
    return ANY_JSON


def edge_value(schema: dict[str, Any], components: dict[str, Any], *, in_url: bool) -> st.SearchStrategy[Any]:
    """Values just outside what the schema declares, and the classic breakers of its type.

    Validation should reject most of them; the ones it lets through (a NUL in
    a free-text field, an id past 64 bits) are those that reach the database.
    """
    kind = "edge-url" if in_url else "edge-body"
    return _cached(kind, schema, components, lambda: _build_edge(schema, components, in_url=in_url))


def _build_edge(schema: dict[str, Any], components: dict[str, Any], *, in_url: bool) -> st.SearchStrategy[Any]:
    text = URL_TEXT if in_url else BODY_TEXT
    options: list[st.SearchStrategy[Any]] = [text, NASTY_INTEGERS]
    for choice in _choices(_resolve(schema, components)):
        kind = choice.get("type")
        if kind in ("integer", "number"):
            low, high = _bounds(choice, None, None)
            options += [st.just(bound) for bound in (low - 1 if low is not None else None, high) if bound is not None]
            if high is not None:
                options.append(st.just(high + 1))
        elif kind == "string":
            valid = _valid_string(choice)
            options += [
                valid.map(lambda s: s + "\x00"),
                valid.map(lambda s: "\x00" + s),
                st.just("x" * (choice.get("maxLength", 100) + 1)),
                valid.map(lambda s: s + "ê" * 300),
            ]
    return st.one_of(options)


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = components.get(schema["$ref"].rsplit("/", 1)[-1], {})
    return schema


def _choices(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """A ``oneOf``/``anyOf``/type-list schema as its alternatives (Litestar keeps bounds on the parent)."""
    for key in ("oneOf", "anyOf"):
        if key in schema:
            parent = {k: v for k, v in schema.items() if k != key}
            return [{**parent, **choice} for choice in schema[key]]
    if isinstance(schema.get("type"), list):
        return [{**schema, "type": kind} for kind in schema["type"]]
    return [schema]


def _bounds(schema: dict[str, Any], low: Any, high: Any) -> tuple[Any, Any]:
    low = schema.get("minimum", schema.get("exclusiveMinimum", low))
    high = schema.get("maximum", schema.get("exclusiveMaximum", high))
    return low, high


def _valid_string(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    low, high = schema.get("minLength", 0), schema.get("maxLength", 60)
    fmt = schema.get("format")
    if fmt == "uuid":
        return st.uuids().map(str)
    if fmt == "date-time":
        return st.datetimes(timezones=st.just(UTC)).map(lambda moment: moment.isoformat())
    if fmt == "date":
        return st.dates().map(lambda day: day.isoformat())
    if "pattern" in schema:
        return st.from_regex(re.compile(schema["pattern"]), fullmatch=True).filter(lambda s: low <= len(s) <= high)
    return st.text(min_size=low, max_size=min(high, low + 60))


# -- strategies: requests ---------------------------------------------------------

BODY_SHAPES = st.sampled_from(
    ("valid", "edge", "edge", "wrong_type", "missing", "extra", "any_json", "not_json", "none")
)
CONTENT_TYPES = st.sampled_from(
    (
        "application/json",
        "application/json",
        "application/json; charset=latin-1",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        None,
    )
)
NOT_JSON = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b"{", b'{"a": ', b"[1, 2", b"\xff\xfe\x00", b"username=abc&password=x", b"\x00" * 64]),
)
NOT_JSON_TYPES = st.sampled_from(["application/json", "text/plain", "application/octet-stream", None])
EXTRA_FIELD_NAMES = st.text(min_size=1, max_size=20)
EXTRA_QUERY = st.lists(st.tuples(st.text(min_size=1, max_size=10), URL_TEXT), max_size=2)
HEADER_TEXT = st.text(PRINTABLE_ASCII, max_size=80)
FORGED_CREDENTIALS = st.one_of(
    st.just({}),
    HEADER_TEXT.map(lambda text: {"Authorization": text}),
    HEADER_TEXT.map(lambda text: {"Authorization": f"Bearer pdt_{text}"}),
    HEADER_TEXT.map(lambda text: {"X-API-Key": f"pdk_{text}"}),
    st.just({"Authorization": "Bearer "}),
)
ONE_IN_THREE = st.integers(0, 2).map(lambda n: n == 0)
PATH_SAFE = st.sampled_from(["", "", "/%"])


@st.composite
def bodies(draw: st.DrawFn, operation: Operation) -> tuple[bytes | None, str | None]:
    """A request body and its content type: valid, broken in one place, or not JSON at all."""
    schema = operation.body if operation.body is not None else {"type": "object"}
    shape = draw(BODY_SHAPES)
    if shape == "none":
        return None, None
    if shape == "not_json":
        return draw(NOT_JSON), draw(NOT_JSON_TYPES)
    value = draw(ANY_JSON if shape == "any_json" else valid_value(schema, operation.components))
    properties = _resolve(schema, operation.components).get("properties", {})
    if isinstance(value, dict):
        value = dict(value)
        if shape == "edge" and properties:
            name = draw(st.sampled_from(sorted(properties)))
            value[name] = draw(edge_value(properties[name], operation.components, in_url=False))
        elif shape == "wrong_type" and value:
            value[draw(st.sampled_from(sorted(value)))] = draw(ANY_JSON)
        elif shape == "missing" and value:
            del value[draw(st.sampled_from(sorted(value)))]
        elif shape == "extra":
            value[draw(EXTRA_FIELD_NAMES)] = draw(ANY_JSON)
    text = json.dumps(value, ensure_ascii=draw(st.booleans()))
    # Without ASCII escapes, lone surrogates turn into bytes that are not UTF-8: bad input too.
    return text.encode("utf-8", "surrogatepass"), draw(CONTENT_TYPES)


@st.composite
def requests(draw: st.DrawFn, operation: Operation, credentials: dict[str, str]) -> dict[str, Any]:
    """Everything ``httpx.AsyncClient.request`` needs for one fuzzed call of ``operation``."""
    path = operation.path
    query: list[tuple[str, str]] = []
    for parameter in operation.parameters:
        schema = parameter.get("schema", {})
        # Two in three values sit at or past the declared edges: that is where servers break.
        if draw(ONE_IN_THREE):
            values = valid_value(schema, operation.components)
        else:
            values = edge_value(schema, operation.components, in_url=True)
        where = parameter.get("in")
        if where == "path":
            # Escaped most of the time; sometimes a raw "/" or "%" reaches the router.
            path = path.replace("{" + parameter["name"] + "}", quote(_query_text(draw(values)), safe=draw(PATH_SAFE)))
        elif where == "query" and (parameter.get("required") or not draw(ONE_IN_THREE)):
            query.extend((parameter["name"], _query_text(v)) for v in draw(st.lists(values, min_size=1, max_size=2)))
    query.extend(draw(EXTRA_QUERY))
    headers = dict(credentials)
    if not credentials:
        headers.update(draw(FORGED_CREDENTIALS))
    content, content_type = draw(bodies(operation))
    if content_type is not None:
        headers["Content-Type"] = content_type
    if draw(st.booleans()):
        headers["X-Request-ID"] = draw(HEADER_TEXT)
    return {"method": operation.method, "url": path, "params": query, "headers": headers, "content": content}


def _query_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def assert_handled(response: httpx.Response) -> None:
    """Bad input is the client's problem (4xx) and the body never shows the server's insides."""
    problem = _problem(response)
    assert problem is None, problem


def _problem(response: httpx.Response) -> str | None:
    text = response.content.decode("utf-8", "replace")
    # A 503 is raised on purpose for a deployment not set up yet (no signing keys); a crash is a 500.
    if response.status_code >= 500 and response.status_code != 503:
        return f"{response.status_code}: {text[:500]}"
    for marker in LEAK_MARKERS:
        if marker in text:
            return f"response leaks a stack trace ({marker!r}): {text[:500]}"
    return None


# -- fixtures: one platform and one set of accounts for the module ------------------------


@pytest.fixture(scope="module", autouse=True)
def quiet_http_log() -> Any:
    # httpx logs every request at INFO; thousands of fuzzed URLs would drown a failure report.
    logger = logging.getLogger("httpx")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fuzz_platform(databases: Any) -> Any:
    platform = await started_platform(databases, plugins=FUZZ_PLUGINS)
    yield platform
    await platform.stop()
    await databases.drop(platform.settings.database_url)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fuzz_client(fuzz_platform: Platform) -> Any:
    async with http_client(fuzz_platform) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def accounts(fuzz_platform: Platform) -> dict[str, dict[str, str]]:
    return {caller: await _sign_in(fuzz_platform, caller) for caller in CALLERS}


@pytest_asyncio.fixture(loop_scope="module")
async def credentials(fuzz_platform: Platform, accounts: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """The module's accounts, signed in anew when a fuzzed logout revoked the token."""
    fuzz_platform.db.activate()
    for caller, headers in accounts.items():
        token = headers.get("Authorization", "").removeprefix("Bearer ")
        if token and await fuzz_platform.identity.principal_from_token(token) is None:
            accounts[caller] = await _sign_in(fuzz_platform, caller)
    return accounts


async def _sign_in(platform: Platform, caller: str) -> dict[str, str]:
    signers: dict[str, Callable[[], Awaitable[dict[str, str]]]] = {
        "anonymous": _no_credentials,
        "national_admin": lambda: staff_headers(platform, [NATIONAL_ADMIN]),
        "provincial_staff": lambda: staff_headers(
            platform, PROVINCIAL_ROLES, province="01", site="fuzz-site", lab="fuzz-lab"
        ),
        "citizen": lambda: _citizen(platform),
    }
    return await signers[caller]()


async def _no_credentials() -> dict[str, str]:
    return {}


async def _citizen(platform: Platform) -> dict[str, str]:
    headers, _subject = await citizen_headers(platform)
    return headers


# -- the fuzzing --------------------------------------------------------------------


async def test_every_served_route_is_fuzzed(fuzz_client: httpx.AsyncClient) -> None:
    served = operations_of((await fuzz_client.get("/schema/openapi.json")).json())
    assert [str(op) for op in served] == [str(op) for op in OPERATIONS]
    assert "POST /api/auth/login" in {str(op) for op in OPERATIONS}
    assert all(op.admitted for op in OPERATIONS if op.path.startswith("/api/auth/"))


@pytest.mark.parametrize("operation", OPERATIONS, ids=str)
@settings(max_examples=EXAMPLES, **FUZZ_SETTINGS)
@given(data=st.data())
async def test_bad_input_never_fails_the_server(
    operation: Operation,
    fuzz_client: httpx.AsyncClient,
    credentials: dict[str, dict[str, str]],
    data: st.DataObject,
) -> None:
    # Mostly callers the route admits (their input reaches the handler); sometimes any caller.
    admitted = operation.admitted if operation.admitted and data.draw(st.integers(0, 4)) else CALLERS
    caller = data.draw(st.sampled_from(admitted), label="caller")
    request = data.draw(requests(operation, credentials[caller]), label="request")
    assert_handled(await fuzz_client.request(**request))


@pytest.mark.parametrize("operation", SWEPT)
async def test_database_breakers_in_every_field_are_refused_cleanly(
    operation: Operation, fuzz_client: httpx.AsyncClient, credentials: dict[str, dict[str, str]]
) -> None:
    caller = operation.admitted[0]
    problems = []
    for label, request in _sweep(operation, credentials[caller]):
        problem = _problem(await fuzz_client.request(**request))
        if problem is not None:
            problems.append(f"{label}: {problem}")
    assert not problems, f"{operation} as {caller}:\n" + "\n".join(problems)


def _sweep(operation: Operation, headers: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """Requests that are as simple as the schema allows, except for one breaker in one field."""
    components = operation.components
    parameters = [p for p in operation.parameters if p.get("in") in ("path", "query")]
    simplest = {p["name"]: _simplest(p.get("schema", {}), components) for p in parameters}
    path_base = {p["name"]: simplest[p["name"]] for p in parameters if p["in"] == "path"}
    query_base = {p["name"]: simplest[p["name"]] for p in parameters if p["in"] == "query" and p.get("required")}
    body_schema = _resolve(operation.body, components) if operation.body is not None else {}
    body = _simplest(body_schema, components) if operation.body is not None else None

    def build(path_values: dict[str, Any], query_values: dict[str, Any], body: Any) -> dict[str, Any]:
        path = operation.path
        for name, value in path_values.items():
            path = path.replace("{" + name + "}", quote(_query_text(value), safe=""))
        return {
            "method": operation.method,
            "url": path,
            "params": [(name, _query_text(value)) for name, value in query_values.items() if value is not None],
            "headers": {**headers, "Content-Type": "application/json"},
            "content": None if body is None else json.dumps(body).encode(),
        }

    swept = []
    for parameter in parameters:
        name = parameter["name"]
        for breaker in _breakers(parameter.get("schema", {}), components, simplest[name], in_url=True):
            label = f"{parameter['in']} {name}={breaker!r:.60}"
            if parameter["in"] == "path":
                swept.append((label, build({**path_base, name: breaker}, query_base, body)))
            else:
                swept.append((label, build(path_base, {**query_base, name: breaker}, body)))
    if isinstance(body, dict):
        for name, schema in body_schema.get("properties", {}).items():
            for breaker in _breakers(schema, components, body.get(name), in_url=False):
                swept.append((f"body {name}={breaker!r:.60}", build(path_base, query_base, {**body, name: breaker})))
    return swept


_SIMPLEST: dict[str, Any] = {}


def _simplest(schema: dict[str, Any], components: dict[str, Any]) -> Any:
    """A simple value the schema accepts: Hypothesis's first, derandomized, so the same every run."""
    key = json.dumps(schema, sort_keys=True, default=str)
    if key not in _SIMPLEST:
        try:
            _SIMPLEST[key] = find(
                valid_value(schema, components),
                lambda _value: True,
                # No shrinking: a shrunk value is no more useful here, and shrinking regexes is slow.
                settings=settings(derandomize=True, database=None, max_examples=10, phases=[Phase.generate]),
            )
        except (NoSuchExample, Unsatisfiable):
            _SIMPLEST[key] = None
    return _SIMPLEST[key]


def _breakers(schema: dict[str, Any], components: dict[str, Any], base: Any, *, in_url: bool) -> list[Any]:
    """The values that get past lax validation and break databases, for this field's types."""
    found: list[Any] = []
    for choice in _choices(_resolve(schema, components)):
        kind = choice.get("type")
        if kind in ("integer", "number"):
            low, high = _bounds(choice, None, None)
            found += [2**63, -(2**63) - 1 if low is None else low - 1]
            if high is not None:
                found.append(high + 1)
        elif kind == "string":
            # A NUL inside an otherwise valid value: PostgreSQL refuses to store it.
            text = base if isinstance(base, str) and base else "a"
            found += [f"{text}\x00", "x" * (choice.get("maxLength", 10_000) + 1)]
        elif kind == "array":
            found += [["a\x00"], [2**63]]
    unique = {repr(value): value for value in found}
    return list(unique.values()) or ["a\x00", 2**63]


# -- clear 400s that name the field ------------------------------------------------------


def _named_fields(response: httpx.Response) -> str:
    """The field names and messages of a 400, as one string to search."""
    assert response.status_code == 400, response.text
    body = response.json()
    errors = body.get("errors") or []
    return " ".join([str(body.get("detail", "")), *(f"{e.get('key')} {e.get('message')}" for e in errors)])


async def test_login_with_a_short_username_names_username(fuzz_client: httpx.AsyncClient) -> None:
    response = await fuzz_client.post("/api/auth/login", json={"username": "ab", "password": "x"})
    assert response.json()["errors"][0]["key"] == "username", response.text
    assert "length >= 3" in _named_fields(response)


async def test_login_without_password_names_password(fuzz_client: httpx.AsyncClient) -> None:
    response = await fuzz_client.post("/api/auth/login", json={"username": "an.epi"})
    assert "`password`" in _named_fields(response)


async def test_login_with_an_unknown_field_names_it(fuzz_client: httpx.AsyncClient) -> None:
    response = await fuzz_client.post("/api/auth/login", json={"username": "an.epi", "password": "x", "is_admin": True})
    assert "is_admin" in _named_fields(response)


async def test_malformed_json_is_a_400(fuzz_client: httpx.AsyncClient) -> None:
    response = await fuzz_client.post(
        "/api/auth/login", content=b'{"username": an.epi}', headers={"Content-Type": "application/json"}
    )
    assert "JSON is malformed" in _named_fields(response)


async def test_otp_with_a_bad_phone_names_phone(fuzz_client: httpx.AsyncClient) -> None:
    response = await fuzz_client.post("/api/auth/otp", json={"phone": "call me maybe"})
    assert response.json()["errors"][0]["key"] == "phone", response.text


async def test_otp_with_a_foreign_number_names_phone(fuzz_client: httpx.AsyncClient) -> None:
    # Passes the pattern, fails the Vietnamese-mobile rule in the handler: still a 400 naming the field.
    response = await fuzz_client.post("/api/auth/otp", json={"phone": "+1 202 555 0100"})
    assert _named_fields(response).startswith("phone:")


async def test_access_log_limit_out_of_range_names_limit(
    fuzz_client: httpx.AsyncClient, credentials: dict[str, dict[str, str]]
) -> None:
    response = await fuzz_client.get("/api/me/access-log", params={"limit": "0"}, headers=credentials["citizen"])
    assert "limit" in _named_fields(response)


async def test_staff_with_roles_of_the_wrong_type_names_roles(
    fuzz_client: httpx.AsyncClient, credentials: dict[str, dict[str, str]]
) -> None:
    body = {"username": "new.user", "password": "x" * 12, "display_name": "New", "roles": "national_admin"}
    response = await fuzz_client.post("/api/admin/staff", json=body, headers=credentials["national_admin"])
    assert response.json()["errors"][0]["key"] == "roles", response.text


async def test_staff_in_an_unknown_province_names_province(
    fuzz_client: httpx.AsyncClient, credentials: dict[str, dict[str, str]]
) -> None:
    body = {
        "username": "new.epi",
        "password": "x" * 12,
        "display_name": "New",
        "roles": ["epidemiologist"],
        "province": "99",
    }
    response = await fuzz_client.post("/api/admin/staff", json=body, headers=credentials["national_admin"])
    assert _named_fields(response).startswith("province:")


async def test_body_that_is_not_utf8_is_a_400(fuzz_client: httpx.AsyncClient) -> None:
    # An escaped lone surrogate written as raw bytes: msgspec raises UnicodeDecodeError, not DecodeError.
    response = await fuzz_client.post(
        "/api/auth/login",
        content=b'{"username": "\xed\xa0\x80abc", "password": "x"}',
        headers={"Content-Type": "application/json"},
    )
    assert "not valid UTF-8" in _named_fields(response)


async def test_access_log_id_past_64_bits_names_before_id(
    fuzz_client: httpx.AsyncClient, credentials: dict[str, dict[str, str]]
) -> None:
    response = await fuzz_client.get(
        "/api/me/access-log", params={"before_id": str(2**63)}, headers=credentials["citizen"]
    )
    assert response.json()["errors"][0]["key"] == "before_id", response.text


async def test_audit_search_with_a_nul_names_subject_id(
    fuzz_client: httpx.AsyncClient, credentials: dict[str, dict[str, str]]
) -> None:
    response = await fuzz_client.get(
        "/api/admin/audit", params={"subject_id": "a\x00b"}, headers=credentials["national_admin"]
    )
    assert response.json()["errors"][0]["key"] == "subject_id", response.text


async def test_staff_display_name_with_a_nul_names_display_name(
    fuzz_client: httpx.AsyncClient, credentials: dict[str, dict[str, str]]
) -> None:
    body = {"username": "nul.name", "password": "x" * 12, "display_name": "An\x00", "roles": ["national_admin"]}
    response = await fuzz_client.post("/api/admin/staff", json=body, headers=credentials["national_admin"])
    assert response.json()["errors"][0]["key"] == "display_name", response.text


async def test_consent_purpose_with_a_nul_names_purpose(
    fuzz_client: httpx.AsyncClient, credentials: dict[str, dict[str, str]]
) -> None:
    response = await fuzz_client.put(
        "/api/me/consents/checkin.tracing%00", json={"granted": True}, headers=credentials["citizen"]
    )
    assert response.json()["errors"][0] == {"message": MESSAGE, "key": "purpose", "source": "path"}, response.text


# -- the NUL guard on its own: forms, nested JSON, and escapes that are not NULs -------------


@post("/form", opt={"public": True}, status_code=200)
async def echo_form(
    data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> dict[str, str]:
    return data


@post("/json", opt={"public": True}, status_code=200)
async def echo_json(data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
    return data


async def test_nul_guard_names_the_field_in_forms_and_nested_json() -> None:
    app = Litestar(
        [echo_form, echo_json], guards=[refuse_nul_characters], exception_handlers={HTTPException: http_error}
    )
    async with AsyncTestClient(app) as client:
        form = await client.post(
            "/form", content=b"site=hn-01&note=a%00b", headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert form.json()["errors"] == [{"message": MESSAGE, "key": "note", "source": "body"}], form.text
        nested = await client.post("/json", json={"items": [{"note": "ok"}, {"note": "a\x00"}]})
        assert nested.json()["errors"][0]["key"] == "items[1].note", nested.text
        # A backslash followed by "u0000" is text, not a NUL: it passes.
        literal = await client.post("/json", json={"note": "\\u0000"})
        assert literal.status_code == 200 and literal.json() == {"note": "\\u0000"}, literal.text
