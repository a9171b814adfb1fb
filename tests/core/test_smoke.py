"""The platform starts, serves health endpoints, and signs staff in."""

from core.testing import TEST_PASSWORD, staff_headers


async def test_health_and_readiness(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"


async def test_staff_login_and_me(client, platform):
    await platform.identity.create_staff(
        username="an.epi", password=TEST_PASSWORD, display_name="An", roles=["epidemiologist"], province="01"
    )
    bad = await client.post("/api/auth/login", json={"username": "an.epi", "password": "nope"})
    assert bad.status_code == 401
    ok = await client.post("/api/auth/login", json={"username": "an.epi", "password": TEST_PASSWORD})
    assert ok.status_code == 201, ok.text
    token = ok.json()["token"]
    me = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["roles"] == ["epidemiologist"]
    assert me.json()["province"] == "01"


async def test_plugins_listed(client):
    names = {p["name"] for p in (await client.get("/-/plugins")).json()}
    assert {"checkin", "testing", "vaccination"} <= names


async def test_staff_headers_helper(client, platform):
    headers = await staff_headers(platform, ["national_admin"])
    assert (await client.get("/api/me", headers=headers)).status_code == 200


def test_a_served_app_tunes_the_garbage_collector_after_start_up_in_its_own_process(monkeypatch, tmp_path):
    import subprocess
    import sys

    from core.app import _tune_gc, app_factory

    monkeypatch.setenv("PHONGDICH_DATABASE_URL", f"sqlite:///{tmp_path}/unused.sqlite3")
    assert _tune_gc in app_factory().on_startup  # what the servers run
    # Freezing would keep this test process's objects forever: check it in a process of its own.
    script = (
        "import gc\n"
        "from core.app import _tune_gc, GC_YOUNG_THRESHOLD\n"
        "_tune_gc()\n"
        "assert gc.get_freeze_count() > 1000, gc.get_freeze_count()\n"
        "assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
