"""Every log line of a request carries its request id, principal, province and plugin; hooks can be traced."""

import structlog

from core.observability import bind_log_context, log_context, merge_log_context
from core.testing import http_client, staff_headers


async def test_request_lines_carry_context(make_platform):
    platform = await make_platform(log_level="info")
    headers = await staff_headers(platform, ["epidemiologist"], province="01")
    # The app configures logging when it is built, so capture only after that.
    async with http_client(platform) as client:
        with structlog.testing.capture_logs(processors=[merge_log_context]) as logs:
            response = await client.get("/api/me", headers={**headers, "X-Request-ID": "req-abcdef123"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-abcdef123"
    line = next(entry for entry in logs if entry["event"] == "request")
    assert line["request_id"] == "req-abcdef123"
    assert line["principal"].startswith("staff:")
    assert line["province"] == "01"
    assert line["plugin"] == "core"
    assert line["status"] == 200


async def test_request_id_is_generated_when_missing_or_malformed(client):
    response = await client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    generated = response.headers["x-request-id"]
    assert generated != "bad id with spaces"
    assert len(generated) == 32


async def test_trace_hooks_logs_every_hook_call(make_platform):
    platform = await make_platform(trace_hooks=True, log_level="info")
    headers = await staff_headers(platform, ["national_admin"])
    async with http_client(platform) as client:
        with structlog.testing.capture_logs() as logs:
            assert (await client.get("/api/me", headers=headers)).status_code == 200
    calls = {(entry["hook"], entry["plugin"]) for entry in logs if entry["event"] == "hook.call"}
    assert ("identify", "core.defaults.identity") in calls
    assert ("authorize", "core.permissions") in calls


async def test_no_trace_by_default(make_platform):
    platform = await make_platform(log_level="info")
    headers = await staff_headers(platform, ["national_admin"])
    async with http_client(platform) as client:
        with structlog.testing.capture_logs() as logs:
            await client.get("/api/me", headers=headers)
    assert not [entry for entry in logs if entry["event"] == "hook.call"]


async def test_server_errors_hide_the_traceback(make_platform):
    from litestar import get

    from core import hookimpl

    @get("/boom", opt={"public": True})
    async def boom() -> None:
        raise RuntimeError("secret internals")

    class Broken:
        @hookimpl
        def register_routes(self, settings):
            return [boom]

    platform = await make_platform(extra_plugins=[("broken", Broken())])
    async with http_client(platform) as client:
        response = await client.get("/api/broken/boom")
    assert response.status_code == 500
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text
    assert response.json()["request_id"]


def test_log_timestamps_are_iso_utc_with_microseconds():
    import time
    from datetime import UTC, datetime

    from core.observability import _utc_timestamp

    before = datetime.now(UTC)
    stamp = _utc_timestamp(None, "info", {})["timestamp"]
    after = datetime.now(UTC)
    assert stamp.endswith("Z") and len(stamp) == len("2026-11-26T10:11:12.123456Z")
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert before.replace(microsecond=0) <= parsed <= after
    time.sleep(1.01)  # the second part is formatted anew when the second changes
    assert _utc_timestamp(None, "info", {})["timestamp"][:19] != stamp[:19]


async def test_server_log_lines_are_written_in_batches_and_warnings_at_once():
    import asyncio
    import io

    from core.observability import BufferedLines

    out = io.StringIO()
    lines = BufferedLines(out, interval=0.05, limit=1000)
    lines.info('{"event":"one"}')
    lines.info('{"event":"two"}')
    assert out.getvalue() == ""  # waiting for company
    await asyncio.sleep(0.1)
    assert out.getvalue() == '{"event":"one"}\n{"event":"two"}\n'  # one write, in order
    lines.info('{"event":"three"}')
    lines.error('{"event":"boom"}')  # a warning or worse goes out at once, after what came before
    assert out.getvalue().endswith('{"event":"three"}\n{"event":"boom"}\n')
    lines.info("x" * 1000)  # over the size limit: written at once
    assert out.getvalue().endswith("x" * 1000 + "\n")
    lines.info('{"event":"last"}')
    lines.flush()  # shutdown
    assert out.getvalue().endswith('{"event":"last"}\n')


def test_outside_an_event_loop_a_line_is_written_at_once():
    import io

    from core.observability import BufferedLines

    out = io.StringIO()
    BufferedLines(out).info('{"event":"cli"}')
    assert out.getvalue() == '{"event":"cli"}\n'


def test_a_served_worker_buffers_json_lines_and_flushes_them_at_exit():
    import subprocess
    import sys

    script = (
        "import asyncio, structlog\n"
        "from core.observability import configure_logging, buffer_log_lines\n"
        "from core.settings import Settings\n"
        "configure_logging(Settings(log_format='json'))\n"
        "buffer_log_lines()\n"
        "async def main():\n"
        "    structlog.get_logger('t').info('served', n=1)\n"
        "asyncio.run(main())\n"  # the loop ends before the batch's timer: the exit flush writes it
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert '"event":"served"' in done.stderr and done.stderr.count("\n") == 1


async def test_every_answer_has_its_request_id_and_a_line_with_the_status_sent(make_platform):
    platform = await make_platform(log_level="info")
    async with http_client(platform) as client:
        with structlog.testing.capture_logs(processors=[merge_log_context]) as logs:
            unknown = await client.get("/no/such/path")
            # Refused by the guard on the check-in route's lean path, before the route's own handling.
            refused = await client.post("/api/checkin/visits", json={"code": "x"})
    assert (unknown.status_code, refused.status_code) == (404, 401)
    lines = [entry for entry in logs if entry["event"] == "request"]
    assert [(line["path"], line["status"]) for line in lines] == [("/no/such/path", 404), ("/api/checkin/visits", 401)]
    for response, line in zip((unknown, refused), lines, strict=True):
        assert response.headers["x-request-id"] == line["request_id"]
    assert refused.json()["request_id"] == lines[1]["request_id"]


def test_the_request_line_is_written_as_structlog_would_write_it():
    import json
    import subprocess
    import sys

    script = (
        "import asyncio, structlog\n"
        "import core.observability as obs\n"
        "from core.settings import Settings\n"
        "obs.configure_logging(Settings(log_format='json'))\n"
        "obs.buffer_log_lines()\n"
        "async def main():\n"
        "    obs.bind_log_context(\n"
        "        request_id='r1', plugin='checkin', province='01', principal='c:1')\n"
        "    obs.request_line()('POST', '/api/checkin/visits', 201, 1.25)\n"
        "    structlog.get_logger('core.request').info(\n"
        "        'request', method='POST', path='/api/checkin/visits', status=201, ms=1.25)\n"
        "    print(obs.request_line().__name__)\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    ours, structlogs = [json.loads(line) for line in done.stderr.splitlines()]
    assert ours.pop("timestamp") <= structlogs.pop("timestamp")
    assert list(ours.items()) == list(structlogs.items())  # the same keys, values and order
    assert ours["request_id"] == "r1" and ours["event"] == "request" and ours["level"] == "info"
    assert done.stdout.strip() == "rendered"  # ... and rendered here, not by structlog's logger


def test_no_request_line_above_info():
    import subprocess
    import sys

    script = (
        "import asyncio\n"
        "import core.observability as obs\n"
        "from core.settings import Settings\n"
        "obs.configure_logging(Settings(log_format='json', log_level='warning'))\n"
        "obs.buffer_log_lines()\n"
        "async def main():\n"
        "    obs.request_line()('GET', '/healthz', 200, 0.5)\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stderr == ""


async def test_bound_fields_stay_in_their_task():
    """A task sees what was bound before it started; its own binds do not reach its parent or siblings."""
    import asyncio

    seen: dict[str, dict[str, object]] = {}

    async def child(name: str) -> None:
        bind_log_context(child=name)
        await asyncio.sleep(0)
        seen[name] = dict(log_context())

    async def parent() -> dict[str, object]:
        bind_log_context(request_id="r1")
        await asyncio.gather(child("a"), child("b"))
        return dict(log_context())

    assert await asyncio.create_task(parent()) == {"request_id": "r1"}
    assert seen == {"a": {"request_id": "r1", "child": "a"}, "b": {"request_id": "r1", "child": "b"}}
    assert dict(log_context()) == {}  # nothing leaked into the test's own context
    event = merge_log_context(None, "info", {"event": "x", "child": "own"})
    assert event == {"event": "x", "child": "own"}
