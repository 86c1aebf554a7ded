"""Fixtures: a media HTTP server, a sandboxed Prosody with the plugin, slixmpp clients.

Choose the Prosody with `--prosody=0.12|13` or the PROSODY environment variable
(default 0.12). The plugin is installed as a plain copy (design.md, layout 2) from
lua/mod_muc_media_metadata.lua and target/release/libmedia_metadata.so (override with
MEDIA_METADATA_PLUGIN and MEDIA_METADATA_SO). MMM_WITHOUT_PLUGIN=1 runs only the harness
tests, without the plugin.
"""

import asyncio
import gc
import os
import signal
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from media_server import MediaServer, make_files
from prosody_server import BINARIES, REPO, ProsodyServer, install_plugin
from xmpp import Client

PASSWORD = "correct horse battery staple"
USERS = ("alice", "bob", "carol")

_server: ProsodyServer | None = None
_measurements: list[str] = []


def pytest_addoption(parser):
    parser.addoption("--prosody", default=os.environ.get("PROSODY", "0.12"),
                     choices=("0.12", "13"), help="which Prosody to test against (env PROSODY)")


def pytest_configure(config):
    # `timeout` (scripts/test) stops a run with SIGTERM: make that an interrupt, so the
    # fixtures' clean-up (stopping Prosody, printing its log) still runs.
    def _interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, _interrupt)
    config.addinivalue_line("markers", "plugin: needs mod_muc_media_metadata and its library")


def without_plugin() -> bool:
    return os.environ.get("MMM_WITHOUT_PLUGIN") == "1"


def pytest_collection_modifyitems(config, items):
    if without_plugin():
        skip = pytest.mark.skip(reason="MMM_WITHOUT_PLUGIN=1")
        for item in items:
            if "plugin" in item.keywords:
                item.add_marker(skip)


def pytest_report_header(config):
    v = config.getoption("--prosody")
    return f"prosody: {v} ({BINARIES[v][0]})" + (
        ", WITHOUT the plugin" if without_plugin() else "")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and _server is not None:
        report.sections.append((f"Prosody {_server.version} log (tail)", _server.tail(80)))


def pytest_terminal_summary(terminalreporter):
    for line in _measurements:
        terminalreporter.write_line(f"measured: {line}")


@pytest.fixture
def measured(request):
    """measured(text): a figure worth seeing in every run (printed at the end, prefixed)."""
    def _add(text: str) -> None:
        _measurements.append(f"[{request.config.getoption('--prosody')}] {request.node.name}: {text}")
        print(text)
    return _add


def library_path() -> Path:
    if os.environ.get("MEDIA_METADATA_SO"):
        return Path(os.environ["MEDIA_METADATA_SO"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "release" / "libmedia_metadata.so"


# --- event loop ----------------------------------------------------------------------

@pytest.fixture(scope="session")
def loop():
    lp = asyncio.new_event_loop()
    asyncio.set_event_loop(lp)
    yield lp
    # slixmpp leaves tasks (its send-queue filter) and __del__ hooks that need the loop:
    # finish them while it is still open, so that closing it is quiet.
    for _ in range(3):
        pending = [t for t in asyncio.all_tasks(lp) if not t.done()]
        for t in pending:
            t.cancel()
        lp.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        gc.collect()
        lp.run_until_complete(asyncio.sleep(0.01))
    lp.close()


@pytest.fixture(scope="session")
def run(loop):
    """run(coro, timeout=60): run a coroutine to completion on the session's loop."""
    def _run(coro, timeout: float = 60):
        return loop.run_until_complete(asyncio.wait_for(coro, timeout))
    return _run


# --- servers -----------------------------------------------------------------------

@pytest.fixture(scope="session")
def media():
    server = MediaServer(make_files()).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def prosody(request, tmp_path_factory):
    global _server
    version = request.config.getoption("--prosody")
    work = tmp_path_factory.mktemp(f"prosody{version}")
    plugins = work / "plugins"
    plugins.mkdir()
    if not without_plugin():
        lua = Path(os.environ.get("MEDIA_METADATA_PLUGIN", REPO / "lua/mod_muc_media_metadata.lua"))
        lib = library_path()
        for f, hint in ((lua, "the plugin"), (lib, "cargo build --release")):
            if not f.exists():
                pytest.fail(f"{f} is missing ({hint})", pytrace=False)
        install_plugin(plugins, lua, lib)
    server = ProsodyServer(version, work, [plugins], with_plugin=not without_plugin())
    with serving(server, request, USERS, f"Prosody {version}"):
        _server = server
        try:
            yield server
        finally:
            _server = None


@contextmanager
def serving(server: ProsodyServer, request, users, label: str):
    """Starts `server` with `users` registered; afterwards stops it, prints the tail of its log
    if a test failed meanwhile or it died, and fails the session if it died."""
    failed_before = request.session.testsfailed
    server.start()
    try:
        for user in users:
            server.register(user, "localhost", PASSWORD)
        yield server
    finally:
        alive = server.alive()
        code = server.stop()
        if not alive or request.session.testsfailed > failed_before:
            print(f"\n{label} (exit code {code}, was {'running' if alive else 'DEAD'}); "
                  f"config and logs in {server.dir}\n{server.tail(60)}")
        if not alive:
            pytest.fail(f"{label} died during the tests", pytrace=False)


# --- clients -------------------------------------------------------------------------

@pytest.fixture
def connect(run, prosody):
    """connect(user) -> a logged-in Client; all are disconnected after the test."""
    clients: list[Client] = []

    async def _connect(user: str) -> Client:
        c = Client(f"{user}@localhost/{uuid.uuid4().hex[:6]}", PASSWORD)
        clients.append(c)
        return await c.start(prosody.c2s_port)

    yield _connect
    for c in clients:
        run(c.stop(), timeout=10)


@pytest.fixture
def new_room():
    """new_room(domain) -> a fresh room JID (rooms are created on first join)."""
    def _room(domain: str) -> str:
        return f"room-{uuid.uuid4().hex[:10]}@{domain}"
    return _room
