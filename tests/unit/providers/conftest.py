"""Fixtures of the provider tests: one local replay server for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from utils.replay_server import ReplayServer, Reply


@pytest.fixture(scope="session")
def _replay_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplayServer]:
    import yfinance as yf

    # yfinance caches time zones and cookies on disk; keep them out of the user's home
    yf.set_tz_cache_location(str(tmp_path_factory.mktemp("yfinance-cache")))
    server = ReplayServer().start()
    yield server
    server.stop()


@pytest.fixture
def replay(_replay_session: ReplayServer) -> ReplayServer:
    """The session's replay server with no routes but Yahoo's cookie and crumb endpoints."""
    _replay_session.reset()
    # yfinance fetches a cookie (fc.yahoo.com) and a crumb before its first data request
    _replay_session.add(r"/", Reply(b"", content_type="text/html"))
    _replay_session.add(r"/v1/test/getcrumb", Reply(b"test-crumb", content_type="text/plain"))
    return _replay_session
