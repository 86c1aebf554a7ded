"""Issue 14, point 4: what a real Dino 0.5 makes of the module's elements, read from its database.

Dino 0.5.0 (Debian bookworm-backports) runs under Xvfb with an account on a test Prosody
(STARTTLS with a CA made here; Dino accepts nothing else) and joins a room. alice, a slixmpp
occupant, posts oob-only shares (body = URL, `jabber:x:oob` url) of a photo, a portrait with
EXIF orientation 6, a transparent PNG and a PDF, served by the test media server. Dino must
store each as exactly one file transfer with the values the module measured, draw it, and
never ask the media host itself (a HEAD is what the module exists to save).

alice is in Dino's roster and the room shows real JIDs, so Dino trusts her: that is when Dino
0.5 sends its own HEAD for an oob-only share and then downloads it if under 5 MB (libdino
file_manager.vala `is_sender_trustworthy`, `handle_incoming_file`). Without that trust Dino
would send nothing at all and "no HEAD" could not fail. (A received XEP-0447 share is not
downloaded by itself in 0.5.0: StatelessFileSharing.create_file_transfer does not.) Dino's own requests are refused with a 403 (the
media server serves only the module's User-Agent): its downloads fail at once, so the
screenshot shows the placeholders Dino draws before a download, and none of its requests
waits unsent in libsoup's queue (2 connections per host) where it could not be counted.
"""

import asyncio
import base64
import hashlib
import io
import os
import re
import shutil
import socket
import time
import uuid
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from conftest import PASSWORD, library_path, serving
from dino_client import SYSTEM_CA_BUNDLE, Dino, Xvfb, dino_version, make_test_ca, missing_tools
from media_server import MediaServer, make_files
from prosody_server import MUC_DOMAIN, REPO, ProsodyServer, install_plugin
from xmpp import Client, oob_xml

pytestmark = pytest.mark.plugin

SHARED = ("photo.jpg", "rotated.jpg", "transparent.png", "doc.pdf")
MODULE_AGENT = "mod_muc_media_metadata/"  # the module's default User-Agent starts so
XMPP_PORT = 5222  # where Dino looks for a domain without SRV records
SCREENSHOT = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "test-artifacts/dino-room.png"
DINO_VERSION = dino_version()
SCREEN = (1000, 1250)  # Dino's window fills it: room for the four shares, one under another


def need_tools() -> None:
    missing = missing_tools()
    if not missing and os.geteuid() == 0:
        return
    reason = (f"Dino test needs {', '.join(missing)} (scripts/setup installs them)" if missing else
              "Dino test needs root: Dino trusts the test CA only through a bind mount over the "
              "system CA bundle in a private mount namespace (unshare -m)")
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def need_port(port: int) -> None:
    error = None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As Prosody binds: connections of an earlier run in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            error = e
    if error is not None:
        pytest.fail(f"127.0.0.1:{port} is taken ({error}): Dino connects to the test domain "
                    f"there, so the test Prosody must listen on it; stop what holds it "
                    f"(`ss -ltnp 'sport = :{port}'`)", pytrace=False)


async def wait_until(pred, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout}s")
        await asyncio.sleep(every)


def colour_region(shot: Image.Image, rgb: tuple[int, int, int], tol: int = 30):
    """(pixel count, bounding box) of the screenshot's pixels within `tol` of `rgb`."""
    mask = None
    for band, v in zip(shot.convert("RGB").split(), rgb):
        m = band.point(lambda c, v=v: 255 if abs(c - v) <= tol else 0)
        mask = m if mask is None else ImageChops.multiply(mask, m)
    return mask.histogram()[255], mask.getbbox()


def shares_received(log: str) -> list[str]:
    """The incoming <message> stanzas with an oob element in Dino's --print-xmpp log."""
    blocks = re.split(r"^(?=XMPP \S+ \[)", log, flags=re.M)
    return [b for b in blocks if b.startswith("XMPP IN") and "jabber:x:oob" in b]


@pytest.fixture(scope="module")
def dino_world(request, run, tmp_path_factory):
    """Prosody with TLS on 127.0.0.1:5222, a media server, a room with alice (its owner) and
    Dino (dave, nick "Dave") in it. Yields a dict of the parts."""
    need_tools()
    need_port(XMPP_PORT)
    version = request.config.getoption("--prosody")
    work = tmp_path_factory.mktemp(f"dino-prosody{version}")

    ca, crt, key = make_test_ca(work / "ca", ["localhost", MUC_DOMAIN])
    certs = work / "prosody" / "certs"
    certs.mkdir(parents=True)
    shutil.copyfile(crt, certs / "localhost.crt")
    shutil.copyfile(key, certs / "localhost.key")
    bundle = work / "ca-certificates.crt"
    bundle.write_bytes(SYSTEM_CA_BUNDLE.read_bytes() + b"\n" + ca.read_bytes())

    plugins = work / "plugins"
    lua = Path(os.environ.get("MEDIA_METADATA_PLUGIN", REPO / "lua/mod_muc_media_metadata.lua"))
    for f, hint in ((lua, "the plugin"), (library_path(), "cargo build --release")):
        if not f.exists():
            pytest.fail(f"{f} is missing ({hint})", pytrace=False)
    install_plugin(plugins, lua, library_path())
    server = ProsodyServer(version, work / "prosody", [plugins], with_plugin=True,
                           tls=True, c2s_port=XMPP_PORT)
    media = MediaServer(make_files()).start()
    media.refuse_other_agents(MODULE_AGENT)
    xvfb = dino = alice = None
    try:
        with serving(server, request, ("alice", "dave"), f"Prosody {version} (Dino)"):
            room = f"dino-{uuid.uuid4().hex[:8]}@{MUC_DOMAIN}"

            async def prepare():
                a = await Client(f"alice@localhost/{uuid.uuid4().hex[:6]}", PASSWORD).start(XMPP_PORT)
                await a.join(room, "A")
                await a.configure_room(room, {"muc#roomconfig_whois": "anyone"})
                # dave's roster holds alice, so Dino trusts her (see the module docstring).
                d = await Client("dave@localhost/setup", PASSWORD).start(XMPP_PORT)
                await d.iq_set("dave@localhost", "<query xmlns='jabber:iq:roster'>"
                                                 "<item jid='alice@localhost' name='Alice'/></query>")
                await d.stop()
                return a
            alice = run(prepare(), timeout=30)

            xvfb = Xvfb(*SCREEN).start()
            dino = Dino(work / "dino", xvfb.display, bundle)
            dino.create_database()
            account = dino.add_account("dave@localhost", "dino", PASSWORD)
            dino.add_room(account, room, "Dave")
            dino.set_window_size(*SCREEN)
            dino.start()

            def dino_in_room():
                return any(r.xml.tag.endswith("presence") and r.xml.get("from") == f"{room}/Dave"
                           and r.xml.get("type") is None for r in alice.received)
            try:
                run(wait_until(dino_in_room, 45, "presence of Dino (Dave) in the room"), timeout=50)
            except TimeoutError as e:
                pytest.fail(f"{e}; Dino {'running' if dino.alive() else 'EXITED'}; its log:\n"
                            f"{dino.log_text()[-4000:]}\nProsody:\n{server.tail(40)}", pytrace=False)
            yield dict(server=server, media=media, room=room, alice=alice, dino=dino, xvfb=xvfb)
    finally:
        if alice is not None:
            run(alice.stop(), timeout=10)
        if dino is not None:
            dino.stop()
        if xvfb is not None:
            xvfb.stop()
        media.stop()


def test_dino_stores_and_draws_each_share_from_the_modules_elements(dino_world, run, measured):
    w = dino_world
    media, room, alice, dino = w["media"], w["room"], w["alice"], w["dino"]
    files = media.files
    urls = {name: media.url(name, tag="dino") for name in SHARED}

    async def post():
        for name, url in urls.items():
            start = len(alice.received)
            alice.send_groupchat(room, url, oob_xml(url))
            # One at a time, so Dino's list has them in this order.
            await alice.wait_groupchat(room, url, timeout=15, start=start)
    t0 = time.monotonic()
    run(post(), timeout=70)

    def stored():
        ft = dino.file_transfers()
        return ft if len(ft) >= len(SHARED) else None
    try:
        run(wait_until(stored, 30, f"{len(SHARED)} file transfers in Dino's database"), timeout=35)
    except TimeoutError as e:
        w["xvfb"].screenshot(SCREENSHOT)
        pytest.fail(f"{e} (screenshot: {SCREENSHOT}): {dino.file_transfers()}\nDino's log:\n"
                    f"{dino.log_text()[-6000:]}", pytrace=False)
    measured(f"Dino stored {len(SHARED)} shares {time.monotonic() - t0:.1f}s after the first post")
    # Let Dino draw them, send any request of its own, and store any duplicate (none may exist).
    time.sleep(2)
    w["xvfb"].screenshot(SCREENSHOT)
    print(f"screenshot: {SCREENSHOT}")

    transfers = dino.file_transfers()
    log = dino.log_text()
    sent_by_module = {p for m, p, h in media.log if h.get("User-Agent", "").startswith(MODULE_AGENT)}
    from_others = [(m, p, h.get("User-Agent")) for m, p, h in media.log
                   if not h.get("User-Agent", "").startswith(MODULE_AGENT)]
    context = (f"\nDino's file transfers: {transfers}\nmedia server requests not from the module: "
               f"{from_others}\nthe messages as Dino received them (its --print-xmpp log):\n"
               + "\n".join(shares_received(log))[-8000:])

    assert len(transfers) == len(SHARED), "not exactly one file transfer per share" + context
    for name, url in urls.items():
        f = files[name]
        mine = [t for t in transfers if any(s["data"] == url for s in t["sources"])
                or t["file_name"] == name]
        assert len(mine) == 1, f"{name}: {len(mine)} file transfers" + context
        t = mine[0]
        assert media.path_of(url) in sent_by_module, f"the module never fetched {url}: {media.log}" + context
        got = {k: t[k] for k in ("provider", "file_name", "mime_type", "size", "width", "height")}
        # provider 2 is Dino's XEP-0447 one (StatelessFileSharing.SFS_PROVIDER_ID); 0 would be
        # its oob fallback, which knows nothing but the URL.
        want = dict(provider=2, file_name=name, mime_type=f.content_type, size=f.size,
                    width=f.width or -1, height=f.height or -1)
        assert got == want, f"{name}: Dino stored {got}, want {want}" + context
        # Dino 0.5.0 keeps a received share's sources in memory only: FileTransfer.persist()
        # goes through add_sfs_source(), which skips a source already in the list (libdino
        # entity/file_transfer.vala; 0.5.1 writes them). The download button it draws (not
        # "unknown source") shows it has the URL; after a restart it would not.
        want_sources = [] if DINO_VERSION.startswith("0.5.0") else [{"type": "http", "data": url}]
        assert t["sources"] == want_sources, f"{name}: sources (Dino {DINO_VERSION})" + context
        sha = base64.b64encode(hashlib.sha256(f.data).digest()).decode()
        assert t["hashes"] == [{"algo": "sha-256", "value": sha}], f"{name}: hashes" + context
        if f.width is None:
            continue
        pngs = [th for th in t["thumbnails"] if th["uri"].startswith("data:image/png;base64,")]
        assert len(pngs) == 1, f"{name}: thumbnails {t['thumbnails']}" + context
        th = pngs[0]
        assert th["mime_type"] == "image/png", (name, th)
        thumb = Image.open(io.BytesIO(base64.b64decode(th["uri"].split(",", 1)[1])))
        assert thumb.size == (th["width"], th["height"]), (name, th, thumb.size)
        assert max(thumb.size) == 8, (name, thumb.size)
        # The tiny picture is upright: its aspect is the displayed one (the portrait's too).
        assert (thumb.size[0] > thumb.size[1]) == (f.width > f.height), (name, thumb.size)
        if name == "transparent.png":
            assert thumb.mode == "RGBA" and thumb.getextrema()[3][0] < 255, (name, thumb.mode)

    # The portrait's placeholder is on screen, upright: its tiny PNG (stored 640x480 with red on
    # the left, EXIF 6) scaled up by Dino to 480x640 shows red above blue, taller than wide.
    shot = Image.open(SCREENSHOT)
    (n_red, red), (n_blue, blue) = colour_region(shot, (200, 30, 30)), colour_region(shot, (30, 30, 200))
    assert n_red > 5000 and n_blue > 5000, f"no portrait placeholder in {SCREENSHOT}: {n_red}, {n_blue}"
    left, top, right, bottom = min(red[0], blue[0]), red[1], max(red[2], blue[2]), blue[3]
    assert red[3] <= blue[1] + 4 and bottom - top > right - left, (
        f"portrait placeholder not upright in {SCREENSHOT}: red {red}, blue {blue}")
    measured(f"screenshot: portrait placeholder drawn {right - left}x{bottom - top} px")

    heads = [(m, p, ua) for m, p, ua in from_others if m == "HEAD"]
    assert not heads, f"Dino asked the media host itself: {heads}" + context
    # Dino may start its own download of a small file from a trusted sender: refused, so the
    # placeholders stay. Any such GET is Dino's (not the module's), and allowed.
    measured(f"media server: {len(media.log) - len(from_others)} requests from the module, "
             f"{len(from_others)} from Dino ({sorted({m for m, _, _ in from_others})})")
    assert dino.alive(), "Dino exited during the test:\n" + log[-4000:]
