"""`http.metrics_listen`: /metrics on its own listener, so it need not be reachable where Teams reaches
/api/messages; empty keeps /metrics on `http.listen`. Real HTTP against the app of `meldbot run`."""

from __future__ import annotations

import aiohttp
import pytest

from meldbot.run.app import build_app
from tests.support import make_config
from tests.support.chat import migrated


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.get(url) as response:
            return response.status, await response.text()


async def test_with_metrics_listen_metrics_answers_only_on_its_own_port(sqlite_url, clock):
    await migrated(sqlite_url)
    config = make_config(sqlite_url, MELDBOT_HTTP__LISTEN="127.0.0.1:0", MELDBOT_HTTP__METRICS_LISTEN="127.0.0.1:0")
    app = build_app(config, clock=clock, notifiers={}, mode="run")
    async with app:
        assert app.metrics_port and app.metrics_port != app.http_port
        main, metrics = f"http://127.0.0.1:{app.http_port}", f"http://127.0.0.1:{app.metrics_port}"
        on_metrics_port = await get(metrics + "/metrics")
        on_main_port = await get(main + "/metrics")
        health = await get(main + "/healthz")
        health_on_metrics_port = await get(metrics + "/healthz")
    assert on_metrics_port[0] == 200 and "meldbot_outbox_backlog" in on_metrics_port[1]
    assert on_main_port[0] == 404 and "meldbot_" not in on_main_port[1]
    assert health[0] == 200                        # the main listener still serves the rest
    assert health_on_metrics_port[0] == 404        # the metrics listener serves /metrics only


async def test_with_metrics_listen_empty_metrics_stays_on_the_main_listener(sqlite_url, clock):
    await migrated(sqlite_url)
    config = make_config(sqlite_url, MELDBOT_HTTP__LISTEN="127.0.0.1:0", MELDBOT_HTTP__METRICS_LISTEN="")
    app = build_app(config, clock=clock, notifiers={}, mode="run")
    async with app:
        status, body = await get(f"http://127.0.0.1:{app.http_port}/metrics")
        assert app.metrics_port is None
    assert status == 200 and "meldbot_outbox_backlog" in body


def test_metrics_listen_must_be_host_and_port_and_not_the_main_listener(tmp_path):
    from meldbot.core.config import ConfigError

    url = f"sqlite+aiosqlite:///{tmp_path}/meldbot.db"
    for value, key in [("9108", "http.metrics_listen"), ("127.0.0.1:8080", "http")]:
        with pytest.raises(ConfigError) as info:
            make_config(url, MELDBOT_HTTP__LISTEN="127.0.0.1:8080", MELDBOT_HTTP__METRICS_LISTEN=value)
        assert key in str(info.value) and "metrics_listen" in str(info.value)
    assert make_config(url, MELDBOT_HTTP__METRICS_LISTEN="127.0.0.1:9108").http.metrics_address == ("127.0.0.1", 9108)


@pytest.fixture
def taken_port():
    """A port some other program already listens on."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["http.listen", "http.metrics_listen"])
def test_a_port_in_use_is_one_dutch_line_naming_the_setting_and_address_not_a_database_error(
        tmp_path, taken_port, setting):
    from tests.support.cli import env_for, meldbot

    address = f"127.0.0.1:{taken_port}"
    env = env_for(tmp_path, MELDBOT_HTTP__LISTEN=address if setting == "http.listen" else "127.0.0.1:0",
                  MELDBOT_HTTP__METRICS_LISTEN=address if setting == "http.metrics_listen" else "")
    assert meldbot(tmp_path, "migrate", env=env).returncode == 0
    result = meldbot(tmp_path, "run", env=env)
    # Before: "Ik kan de database niet bereiken (OSError)", exit 3.
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "database" not in result.stderr
    [line] = [x for x in result.stderr.splitlines() if x and "WARNING" not in x and " INFO " not in x]
    assert setting in line and address in line and "in gebruik" in line
