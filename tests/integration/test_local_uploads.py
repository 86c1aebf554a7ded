"""The server's own uploads, on a real Prosody 0.12 and 13: a slixmpp client asks this
Prosody's mod_http_file_share for an XEP-0363 slot, PUTs a real photo to it on 127.0.0.1 and
shares its GET URL in a room whose policy refuses private addresses. The metadata arrives and
the upload component's HTTP log shows no GET: the module read the slot's file from disk. After
a restart, with the file moved away, the same URL still gets its metadata: from the results
store (storage "internal" and "sql" on SQLite), not from the file."""

import re
import shutil
import sqlite3
import time
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import PASSWORD, library_path, serving
from media_server import make_files
from prosody_server import MUC_DOMAIN, REPO, STRICT_DOMAIN, ProsodyServer, install_plugin
from xmpp import Client, oob_metadata, oob_xml

pytestmark = pytest.mark.plugin

NS_UPLOAD = "urn:xmpp:http:upload:0"
UPLOAD = "upload.localhost"  # served by this Prosody on 127.0.0.1
EXTERNAL = "files.localhost"  # its files are served elsewhere, under an external name
EXTERNAL_BASE = "https://files.example.org/share/"
# After the MUC components in the config, so loaded after them.
UPLOAD_COMPONENTS = f"""
Component "{UPLOAD}" "http_file_share"
	http_host = "127.0.0.1"
	http_file_share_size_limit = 10 * 1024 * 1024
Component "{EXTERNAL}" "http_file_share"
	http_file_share_base_url = "{EXTERNAL_BASE}"
"""
SQL = 'storage = "sql"\nsql = { driver = "SQLite3", database = "prosody.sqlite" }'


@pytest.fixture(scope="module", params=["internal", "sql"])
def upload_prosody(request, tmp_path_factory):
    version = request.config.getoption("--prosody")
    if request.param == "sql" and not Path("/usr/lib/x86_64-linux-gnu/lua/5.4/dbd/sqlite3.so").exists():
        pytest.fail("lua-dbi-sqlite3 is not installed (scripts/setup)", pytrace=False)
    work = tmp_path_factory.mktemp(f"uploads{version}-{request.param}")
    install_plugin(work / "plugins", REPO / "lua/mod_muc_media_metadata.lua", library_path())
    server = ProsodyServer(version, work, [work / "plugins"], with_plugin=True, admin_shell=True,
                           extra_config=UPLOAD_COMPONENTS)
    if request.param == "sql":
        # The global section's `storage = "internal"` line, as an admin would change it.
        write = server.write_config

        def write_sql():
            path = write()
            path.write_text(path.read_text().replace('storage = "internal"', SQL, 1))
            return path
        server.write_config = write_sql
        # prosodyctl and the starting server share the SQLite file: a register that meets the
        # server's start-up transaction is told "database is locked"; try again.
        register = server.register

        def register_retrying(*args):
            for attempt in range(20):
                try:
                    return register(*args)
                except RuntimeError as e:
                    if "database is locked" not in str(e) or attempt == 19:
                        raise
                    time.sleep(0.25)
        server.register = register_retrying
    with serving(server, request, ["alice"], f"uploads Prosody {version} ({request.param})"):
        yield server


async def request_slot(client: Client, component: str, name: str, size: int, ctype: str) -> tuple[tuple, str]:
    """XEP-0363: the ((PUT URL, its headers), GET URL) of a new slot."""
    iq = client.make_iq_get(ito=component)
    iq.xml.append(ET.fromstring(f"<request xmlns='{NS_UPLOAD}' filename='{name}' size='{size}' "
                                f"content-type='{ctype}'/>"))
    result = (await iq.send(timeout=10)).xml
    put_el = result.find(f"{{{NS_UPLOAD}}}slot/{{{NS_UPLOAD}}}put")
    headers = {h.get("name"): (h.text or "") for h in put_el.findall(f"{{{NS_UPLOAD}}}header")}
    get = result.find(f"{{{NS_UPLOAD}}}slot/{{{NS_UPLOAD}}}get").get("url")
    return (put_el.get("url"), headers), get


def put(slot_put: tuple, data: bytes, ctype: str) -> None:
    url, headers = slot_put
    req = urllib.request.Request(url, data=data, method="PUT", headers={"Content-Type": ctype, **headers})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status in (200, 201), r.status


def slot_file(server: ProsodyServer, host: str, get_url: str, base: str) -> Path:
    """Where mod_http_file_share keeps the slot's file (util.datamanager's encoding)."""
    slot = get_url[len(base):].split("/")[0]
    enc = lambda s: "".join(c if c.isascii() and c.isalnum() else "%%%02x" % ord(c) for c in s)  # noqa: E731
    return server.dir / "data" / enc(host) / "http_file_share" / f"{enc(slot)}.bin"


def gets_of(server: ProsodyServer, slot_path: str) -> list[str]:
    """The HTTP server's log lines of GET requests under `slot_path` (/file_share/SLOT/): 0.12
    logs the event it fires ("GET 127.0.0.1/file_share/..."), 13 the request line
    ("GET /file_share/... HTTP/1.1"), both with the path decoded."""
    return [l for l in server.log_text().splitlines() if re.search(r"\bGET \S*" + re.escape(slot_path), l)]


async def share(run_client: Client, room: str, url: str) -> ET.Element:
    marker = uuid.uuid4().hex
    run_client.send_groupchat(room, f"look {marker}", oob_xml(url))
    return (await run_client.wait_groupchat(room, marker, timeout=15)).xml


async def join_and_share(server: ProsodyServer, room: str, url: str) -> ET.Element:
    alice = await Client(f"alice@localhost/{uuid.uuid4().hex[:6]}", PASSWORD).start(server.c2s_port)
    try:
        await alice.join(room, "alice")
        return await share(alice, room, url)
    finally:
        await alice.stop()


def restart(server: ProsodyServer) -> None:
    """Stops and starts Prosody on the same config: the same HTTP port, so the same URLs."""
    server.stop()
    written = server.write_config
    server.write_config = lambda: server.config
    try:
        server.start()
    finally:
        server.write_config = written


def metadata_of(msg: ET.Element) -> dict[str, str]:
    [(_, children)] = oob_metadata(msg)
    return dict(children or [])


def test_an_own_upload_is_read_from_disk_not_fetched_and_after_a_restart_comes_from_the_store(
        upload_prosody, run):
    server = upload_prosody
    photo = make_files()["photo.jpg"]
    room = f"up-{uuid.uuid4().hex[:8]}@{STRICT_DOMAIN}"  # private addresses refused

    async def upload_and_share():
        alice = await Client(f"alice@localhost/{uuid.uuid4().hex[:6]}", PASSWORD).start(server.c2s_port)
        try:
            put_url, get_url = await request_slot(alice, UPLOAD, "holiday photo.jpg", photo.size, "image/jpeg")
            assert get_url.startswith("http://127.0.0.1:"), get_url
            put(put_url, photo.data, "image/jpeg")
            await alice.join(room, "alice")
            return get_url, await share(alice, room, get_url)
        finally:
            await alice.stop()
    get_url, msg = run(upload_and_share())
    m = metadata_of(msg)
    assert (m.get("bytes"), m.get("width"), m.get("height")) == (str(photo.size), "1600", "1200"), m
    assert m.get("type") == "image/jpeg" and m.get("blurhash"), m
    # The XEP-0446 file share carries the upload record's name.
    names = [e.text for e in msg.iter("{urn:xmpp:file:metadata:0}name")]
    assert names == ["holiday photo.jpg"], names
    path = "/" + get_url.split("/", 3)[3].rsplit("/", 1)[0] + "/"  # /file_share/SLOT/
    log = server.log_text()
    assert "is local upload" in log and "reading it from disk" in log
    assert gets_of(server, path) == [], "the module fetched its own upload over HTTP"
    # The observation can fail: a GET of that URL does show in the log.
    with urllib.request.urlopen(get_url, timeout=10) as r:
        assert r.read() == photo.data
    assert gets_of(server, path), "a GET of the upload is not logged: this test sees nothing"

    # A restart, the slot's file moved away: the metadata comes from the results store.
    stored = slot_file(server, UPLOAD, get_url, get_url.rsplit("/", 2)[0] + "/")
    assert stored.is_file(), stored
    log_before = len(server.log_text())
    away = stored.with_suffix(".away")
    shutil.move(stored, away)
    try:
        restart(server)
        again = metadata_of(run(join_and_share(server, room, get_url)))
    finally:
        shutil.move(away, stored)
    assert again == m, "after the restart"
    after = server.log_text()[log_before:]
    assert "from the results store" in after
    assert "reading it from disk" not in after, "the file was read again"
    if "sql" in server.dir.name:
        # Kept in SQLite by Prosody's mod_storage_sql, not beside it in files.
        db = sqlite3.connect(server.dir / "data" / "prosody.sqlite")
        rows = db.execute("SELECT COUNT(*) FROM prosody WHERE host = ? AND store = 'media_metadata'",
                          (STRICT_DOMAIN,)).fetchone()[0]
        db.close()
        assert rows > 0, "no results in the SQL store"
        assert not (server.dir / "data" / "strict%2elocalhost" / "media_metadata").exists()


def test_external_base_url_and_slots_that_are_not_slots(upload_prosody, run):
    server = upload_prosody
    photo = make_files()["photo.jpg"]
    room = f"bad-{uuid.uuid4().hex[:8]}@{STRICT_DOMAIN}"

    async def go():
        alice = await Client(f"alice@localhost/{uuid.uuid4().hex[:6]}", PASSWORD).start(server.c2s_port)
        try:
            _, ext_url = await request_slot(alice, EXTERNAL, "p.jpg", photo.size, "image/jpeg")
            assert ext_url.startswith(EXTERNAL_BASE), ext_url
            # What the external server behind that name writes: the file in the store.
            f = slot_file(server, EXTERNAL, ext_url, EXTERNAL_BASE)
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(photo.data)
            _, own = await request_slot(alice, UPLOAD, "q.jpg", photo.size, "image/jpeg")
            base = own.rsplit("/", 2)[0]  # http://127.0.0.1:PORT/file_share
            await alice.join(room, "alice")
            out = {"external": await share(alice, room, ext_url),
                   "never uploaded": await share(alice, room, own)}
            for bad in ("/../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/%2Fetc%2Fpasswd/x",
                        "//etc/passwd", "/" + "a" * 5000 + "/x"):
                out[bad] = await share(alice, room, base + bad)
            return out
        finally:
            await alice.stop()
    out = run(go())
    ext = metadata_of(out.pop("external"))
    assert (ext.get("width"), ext.get("height")) == ("1600", "1200"), ext
    for what, msg in out.items():
        assert metadata_of(msg) == {}, f"{what[:40]}: {metadata_of(msg)}"
    log = server.log_text()
    assert log.count("is not a slot") >= 5
    assert "no such file (not uploaded yet, or removed)" in log  # the slot whose PUT never came
    assert "/etc/passwd" not in "".join(l for l in log.splitlines() if "reading it from disk" in l)


def test_shell_commands_analyse_one_url_and_show_the_counters(upload_prosody, run):
    server = upload_prosody
    if server.version == "0.12":
        pytest.skip("Prosody 0.12's shell takes no commands from modules (shell-command items are 13's)")
    photo = make_files()["photo.jpg"]

    async def upload():
        alice = await Client(f"alice@localhost/{uuid.uuid4().hex[:6]}", PASSWORD).start(server.c2s_port)
        try:
            put_url, get_url = await request_slot(alice, UPLOAD, "s.jpg", photo.size, "image/jpeg")
            put(put_url, photo.data, "image/jpeg")
            return get_url
        finally:
            await alice.stop()
    url = run(upload())
    r = server.shell(f"media_metadata:analyze('{STRICT_DOMAIN}', '{url}')")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "read from the upload store" in r.stdout and "width = 1600" in r.stdout, r.stdout
    r = server.shell(f"media_metadata:analyze('{STRICT_DOMAIN}', '{url}')")
    assert "from the results store" in r.stdout, r.stdout
    r = server.shell(f"media_metadata:analyze('{STRICT_DOMAIN}', 'http://127.0.0.1:1/x.png')")
    assert "refused: 127.0.0.1 is loopback" in r.stdout + r.stderr, r.stdout + r.stderr
    r = server.shell(f"media_metadata:counters('{STRICT_DOMAIN}')")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "store stored: " in r.stdout and "store hit: " in r.stdout and "results store: in use" in r.stdout, r.stdout


def test_a_remote_result_is_reused_after_a_restart_only_while_its_server_says_unchanged(
        upload_prosody, media, run):
    server = upload_prosody
    files = make_files()
    url = media.url("photo.jpg")
    media.serve_versioned(url, "photo.jpg")  # with an ETag and a Last-Modified
    path = media.path_of(url)
    room = f"etag-{uuid.uuid4().hex[:8]}@{MUC_DOMAIN}"
    first = metadata_of(run(join_and_share(server, room, url)))
    assert (first.get("width"), first.get("height")) == ("1600", "1200"), first
    assert media.answers[path] == [200]

    # After a restart the result is in the store: the module asks with the ETag it kept, is
    # told 304 Not Modified, and adds the stored result without reading the file again.
    restart(server)
    log_before = len(server.log_text())
    again = metadata_of(run(join_and_share(server, room, url)))
    assert again == first, "after the restart"
    assert media.answers[path] == [200, 304], media.answers[path]
    [(_, _, headers)] = [e for e in media.log if e[1] == path][-1:]
    assert headers.get("If-None-Match", "").startswith('"') and headers.get("If-Modified-Since"), headers
    assert "asking its server whether it changed" in server.log_text()[log_before:]

    # The file at that URL changes (a new ETag): the stored result is not reused.
    media.serve_versioned(url, "transparent.png")
    changed = metadata_of(run(join_and_share(server, room, url)))
    png = files["transparent.png"]
    assert (changed.get("type"), changed.get("width"), changed.get("height")) == \
        ("image/png", str(png.width), str(png.height)), changed
    assert media.answers[path] == [200, 304, 200], media.answers[path]
    # ... and the new result is what is stored now: the next share is a 304 for it.
    assert metadata_of(run(join_and_share(server, room, url))) == changed
    assert media.answers[path] == [200, 304, 200, 304], media.answers[path]
