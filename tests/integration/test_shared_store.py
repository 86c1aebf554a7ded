"""Two Prosody nodes on one PostgreSQL database share the results store: a URL analysed on one
node is answered on the other from the store, without a second fetch; a URL whose server sent
an ETag is checked from the other node with a conditional GET (304), not fetched whole. A real
PostgreSQL 15 server (Debian's, started here in a scratch directory on 127.0.0.1) and
Debian's lua-dbi-postgresql, as an admin of a cluster would run them."""

import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from conftest import PASSWORD, library_path, serving
from prosody_server import MUC_DOMAIN, REPO, ProsodyServer, free_port, install_plugin
from xmpp import Client, oob_metadata, oob_xml

pytestmark = pytest.mark.plugin

PG_BIN = Path("/usr/lib/postgresql/15/bin")
DBD_POSTGRESQL = Path("/usr/lib/x86_64-linux-gnu/lua/5.4/dbd/postgresql.so")


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server of its own on 127.0.0.1 with an empty database `prosody`: its port."""
    for needed in (PG_BIN / "initdb", DBD_POSTGRESQL):
        if not needed.exists():
            pytest.fail(f"{needed} is missing: scripts/setup installs postgresql and lua-dbi-postgresql",
                        pytrace=False)
    # PostgreSQL refuses to run as root: its files belong to Debian's postgres user.
    owner = pwd.getpwnam("postgres")
    scratch = Path(tempfile.mkdtemp(prefix="media-metadata-pg-"))
    os.chmod(scratch, 0o755)
    data = scratch / "data"
    data.mkdir()
    os.chown(data, owner.pw_uid, owner.pw_gid)
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_postgres, PG_BIN / "initdb", "-D", data, "-A", "trust", "-U", "prosody"],
                   check=True, capture_output=True)
    port = free_port()
    server = subprocess.Popen([*as_postgres, PG_BIN / "postgres", "-D", data, "-p", str(port),
                               "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={data}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        until = time.monotonic() + 30
        while subprocess.run([PG_BIN / "pg_isready", "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode != 0:
            assert server.poll() is None and time.monotonic() < until, "PostgreSQL did not start"
            time.sleep(0.2)
        subprocess.run([PG_BIN / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "prosody", "prosody"],
                       check=True, capture_output=True)
        yield port
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="module")
def nodes(request, postgres, tmp_path_factory):
    """Two Prosody nodes with the same hosts on the one database (accounts included)."""
    version = request.config.getoption("--prosody")
    sql = (f'storage = "sql"\nsql = {{ driver = "PostgreSQL", database = "prosody", username = "prosody", '
           f'host = "127.0.0.1", port = {postgres} }}')
    servers = []
    for name in ("a", "b"):
        work = tmp_path_factory.mktemp(f"node-{name}-{version}")
        install_plugin(work / "plugins", REPO / "lua/mod_muc_media_metadata.lua", library_path())
        servers.append(ProsodyServer(version, work, [work / "plugins"], with_plugin=True, global_config=sql))
    a, b = servers
    b.pg_port = postgres
    with serving(a, request, ["alice"], f"node a, Prosody {version}"):
        with serving(b, request, [], f"node b, Prosody {version}"):  # alice is in the database already
            yield a, b


async def share(server: ProsodyServer, room: str, url: str) -> dict[str, str]:
    alice = await Client(f"alice@localhost/{uuid.uuid4().hex[:6]}", PASSWORD).start(server.c2s_port)
    try:
        await alice.join(room, "alice")
        marker = uuid.uuid4().hex
        alice.send_groupchat(room, f"look {marker}", oob_xml(url))
        msg = (await alice.wait_groupchat(room, marker, timeout=15)).xml
    finally:
        await alice.stop()
    [(_, children)] = oob_metadata(msg)
    return dict(children or [])


def test_a_url_analysed_on_one_node_is_answered_on_the_other_from_the_store(nodes, media, run):
    a, b = nodes
    url = media.url("photo.jpg")  # no ETag, no Last-Modified: reused as stored
    room = f"shared-{uuid.uuid4().hex[:8]}@{MUC_DOMAIN}"
    on_a = run(share(a, room, url))
    assert (on_a.get("width"), on_a.get("height")) == ("1600", "1200"), on_a
    assert media.hits(url) == 1
    log_before = len(b.log_text())
    on_b = run(share(b, room, url))
    assert on_b == on_a
    assert media.hits(url) == 1, "node b fetched what node a had analysed"
    assert "from the results store" in b.log_text()[log_before:]
    # Kept in PostgreSQL by mod_storage_sql, under the MUC host.
    count = subprocess.run([PG_BIN / "psql", "-h", "127.0.0.1", "-p", str(b.pg_port), "-U", "prosody", "-tAc",
                            f"SELECT COUNT(*) FROM prosody WHERE host = '{MUC_DOMAIN}' AND store = 'media_metadata'",
                            "prosody"], check=True, capture_output=True, text=True).stdout
    assert int(count) >= 1, count
    # The observation can fail: a URL node b has not seen is fetched by it.
    other = media.url("photo.jpg")
    run(share(b, room, other))
    assert media.hits(other) == 1


def test_a_url_with_an_etag_is_checked_from_the_other_node_with_a_304(nodes, media, run):
    a, b = nodes
    url = media.url("photo.jpg")
    media.serve_versioned(url, "photo.jpg")
    path = media.path_of(url)
    room = f"shared-{uuid.uuid4().hex[:8]}@{MUC_DOMAIN}"
    on_a = run(share(a, room, url))
    assert media.answers[path] == [200]
    on_b = run(share(b, room, url))
    assert on_b == on_a and on_b.get("width") == "1600", on_b
    assert media.answers[path] == [200, 304], media.answers[path]
