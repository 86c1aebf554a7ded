"""mod_muc_media_metadata in a real Prosody, seen by real XMPP clients.

Every URL is fresh (unique path), so the module's cache never answers for the HTTP
server, and per-path request counts say exactly what the server fetched.
"""

import asyncio
import statistics
import time
import uuid

import pytest

from media_server import BLURHASH_ALPHABET, blurhash_components, mean_colour
from prosody_server import DEADLINE, MUC_DOMAIN, SLOW_DOMAIN, STRICT_DOMAIN
from xmpp import NS_META, all_meta_elements, oob_metadata, oob_xml, xml_str

pytestmark = pytest.mark.plugin

FIELD_ORDER = ["bytes", "type", "width", "height", "blurhash"]


async def two_in_room(connect, room):
    """alice (A, the room's owner) and bob (B) in `room`."""
    a, b = await connect("alice"), await connect("bob")
    await a.join(room, "A")
    await b.join(room, "B")
    return a, b


async def post_and_receive(a, b, room, extra_xml, timeout=15):
    """A posts a message with `extra_xml`; returns (B's copy, seconds it took)."""
    marker = uuid.uuid4().hex
    t0 = time.monotonic()
    a.send_groupchat(room, f"look {marker}", extra_xml)
    got = await b.wait_groupchat(room, marker, timeout)
    return got.xml, got.at - t0


def check_metadata(children, f):
    """The <metadata> children B got for media file `f` are right, in the right order."""
    assert children is not None, f"no <metadata> for {f.name}"
    names = [n for n, _ in children]
    values = dict(children)
    assert len(names) == len(set(names)), f"repeated children: {names}"
    if f.width is None:  # not an image: sniffed type, no dimensions or blurhash
        assert values.get("type") == f.content_type, children
        assert not {"width", "height", "blurhash"} & set(names), children
        if "bytes" in values:
            assert int(values["bytes"]) == f.size
        assert names == [n for n in FIELD_ORDER if n in names], f"order: {names}"
        return
    assert names == FIELD_ORDER, f"children/order: {names}"
    assert int(values["bytes"]) == f.size
    assert values["type"] == f.content_type
    assert (int(values["width"]), int(values["height"])) == (f.width, f.height), children
    h = values["blurhash"]
    assert len(h) == 4 + 2 * (4 * 3) == 28, h
    assert set(h) <= set(BLURHASH_ALPHABET), h
    cx, cy, dc, ac = blurhash_components(h)
    assert cx * cy == 12, (cx, cy)


# --- 1. metadata for real media ----------------------------------------------------------

@pytest.mark.parametrize("name", ["photo.jpg", "rotated.jpg", "transparent.png", "anim.gif",
                                  "image.webp", "doc.pdf"])
def test_occupant_receives_metadata(run, connect, new_room, media, name):
    f = media.files[name]

    async def body():
        room = new_room(MUC_DOMAIN)
        a, b = await two_in_room(connect, room)
        url = media.url(name)
        msg, _ = await post_and_receive(a, b, room, oob_xml(url))
        [(got_url, children)] = oob_metadata(msg)
        assert got_url == url
        check_metadata(children, f)
        assert media.hits(url) >= 1
        return dict(children)

    values = run(body())
    if name in ("photo.jpg", "rotated.jpg", "image.webp"):
        # The blurhash is of this image: its average colour (the DC term) matches.
        _, _, dc, ac = blurhash_components(values["blurhash"])
        want = mean_colour(f.data)
        assert all(abs(x - y) <= 16 for x, y in zip(dc, want)), f"DC {dc}, image mean {want}"
    if name == "photo.jpg":
        # Red grows left to right, green top to bottom: not transposed, not mirrored.
        assert ac[(1, 0)][0] < -0.05 and abs(ac[(1, 0)][1]) < abs(ac[(1, 0)][0]), ac
        assert ac[(0, 1)][1] < -0.05 and abs(ac[(0, 1)][0]) < abs(ac[(0, 1)][1]), ac
    if name == "rotated.jpg":
        # Stored: red left, blue right; EXIF 6 displays red on top, blue at the bottom.
        # The pixels were rotated too (not only width/height swapped), clockwise.
        vert, horiz = ac[(0, 1)], ac[(1, 0)]
        assert vert[0] > 0.1 and vert[2] < -0.1, f"vertical component {vert}"
        assert abs(horiz[0]) < abs(vert[0]) / 3, f"horizontal {horiz} vs vertical {vert}"


def test_message_without_url_is_untouched(run, connect, new_room):
    async def body():
        room = new_room(MUC_DOMAIN)
        a, b = await two_in_room(connect, room)
        msg, latency = await post_and_receive(a, b, room, "")
        assert all_meta_elements(msg) == []
        assert latency < 1.0
    run(body())


# --- 2. the archive has the metadata ----------------------------------------------------

def test_mam_returns_message_with_metadata(run, connect, new_room, media):
    async def body():
        room = new_room(MUC_DOMAIN)
        a, b = await two_in_room(connect, room)
        url = media.url("photo.jpg")
        live, _ = await post_and_receive(a, b, room, oob_xml(url))
        [(_, live_md)] = oob_metadata(live)
        check_metadata(live_md, media.files["photo.jpg"])
        archived = await b.mam_query(room)
        assert len(archived) == 1, [xml_str(m) for m in archived]
        [(arch_url, arch_md)] = oob_metadata(archived[0])
        assert arch_url == url
        assert arch_md == live_md, f"archived {arch_md} != live {live_md}"
        assert media.hits(url) == 1  # analysed once, for both
    run(body())


# --- 3. forged metadata never reaches anyone -----------------------------------------------

FORGED = (f"<metadata xmlns='{NS_META}'><bytes>7777777</bytes><type>image/forged</type>"
          f"<width>4242</width><height>2424</height><blurhash>FORGEDFORGEDFORGEDFORGEDFORG</blurhash>"
          f"</metadata>")
FORGED_VALUES = {"7777777", "image/forged", "4242", "2424", "FORGEDFORGEDFORGEDFORGEDFORG"}


@pytest.mark.parametrize("case", ["top-level", "oob-without-url", "oob-with-url", "oob-with-404-url",
                                  "oob-with-url-forged-first"])
def test_forged_metadata_is_removed(run, connect, new_room, media, case):
    photo = media.files["photo.jpg"]

    async def body():
        room = new_room(MUC_DOMAIN)
        a, b = await two_in_room(connect, room)
        url = media.url("photo.jpg")
        extra = {
            "top-level": FORGED,
            "oob-without-url": oob_xml(None, FORGED),
            "oob-with-url": oob_xml(url, FORGED),
            "oob-with-404-url": oob_xml(media.url("missing.jpg"), FORGED),
            "oob-with-url-forged-first": FORGED + oob_xml(url, FORGED + FORGED),
        }[case]
        msg, _ = await post_and_receive(a, b, room, extra)
        texts = {(e.text or "").strip() for e in all_meta_elements(msg)}
        assert not texts & FORGED_VALUES, f"forged values reached B: {xml_str(msg)}"
        if case in ("oob-with-url", "oob-with-url-forged-first"):
            # The real metadata replaces the forged one: exactly one <metadata>, right values.
            assert len([e for e in all_meta_elements(msg) if e.tag == f"{{{NS_META}}}metadata"]) == 1
            [(_, children)] = oob_metadata(msg)
            check_metadata(children, photo)
        else:
            assert all_meta_elements(msg) == [], xml_str(msg)
    run(body())


# --- 4. private addresses are refused unless allowed ----------------------------------------

@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "2130706433"])
def test_private_address_refused_when_not_allowed(run, connect, new_room, media, host):
    async def body():
        room = new_room(STRICT_DOMAIN)
        a, b = await two_in_room(connect, room)
        url = media.url("photo.jpg", host=host)
        # The forged <metadata> shows that the module did handle this message (it strips
        # it), so "no metadata" below is the policy's doing, not a module that is not loaded.
        msg, latency = await post_and_receive(a, b, room, oob_xml(url, FORGED))
        assert all_meta_elements(msg) == [], xml_str(msg)
        [(got_url, _)] = oob_metadata(msg)
        assert got_url == url
        assert latency < DEADLINE, f"held {latency:.2f}s for a refused URL"
        await asyncio.sleep(0.5)  # a late fetch would show up now
        assert media.hits(url) == 0, f"the HTTP server was asked for {url}"
    run(body())


def test_private_address_allowed_by_config_control(run, connect, new_room, media):
    """The same URL through the component that allows private addresses: fetched."""
    async def body():
        room = new_room(MUC_DOMAIN)
        a, b = await two_in_room(connect, room)
        url = media.url("photo.jpg", host="localhost")
        msg, _ = await post_and_receive(a, b, room, oob_xml(url))
        [(_, children)] = oob_metadata(msg)
        check_metadata(children, media.files["photo.jpg"])
        assert media.hits(url) == 1
    run(body())


# --- 5. a server that never answers delays the message by the deadline only -----------------

def test_unanswered_url_delays_by_deadline(run, connect, new_room, media, measured):
    async def body():
        room = new_room(MUC_DOMAIN)
        a, b = await two_in_room(connect, room)
        url = media.url("photo.jpg", tag="hang")
        media.hang(url)
        msg, elapsed = await post_and_receive(a, b, room, oob_xml(url), timeout=15)
        measured(f"message with an unanswered URL arrived after {elapsed:.2f}s (deadline {DEADLINE}s)")
        assert all_meta_elements(msg) == [], xml_str(msg)
        assert media.hits(url) == 1  # it was being fetched: the delay is the deadline's
        assert 1.5 <= elapsed <= 6.0, f"arrived after {elapsed:.2f}s"
    run(body())


# --- 6. a visitor's message is not analysed ---------------------------------------------------

def test_visitor_in_moderated_room_causes_no_fetch(run, connect, new_room, media):
    async def body():
        room = new_room(MUC_DOMAIN)
        a = await connect("alice")
        await a.join(room, "A")
        await a.configure_room(room, {"muc#roomconfig_moderatedroom": "1"})
        b = await connect("bob")
        assert b.role_in(await b.join(room, "B")) == "visitor"

        url = media.url("photo.jpg", tag="visitor")
        start = len(b.received)
        msg_id = b.send_groupchat(room, "visitor " + uuid.uuid4().hex, oob_xml(url))
        err = await b.wait_for(lambda el: el.get("type") == "error" and el.get("id") == msg_id,
                               10, "error for the visitor's message", start)
        assert err.xml.find(".//{urn:ietf:params:xml:ns:xmpp-stanzas}forbidden") is not None, xml_str(err.xml)
        await asyncio.sleep(1.0)
        assert media.hits(url) == 0, "a visitor's URL was fetched"

        # Control: the owner's message in the same room is analysed.
        ok_url = media.url("photo.jpg", tag="owner")
        marker = uuid.uuid4().hex
        a.send_groupchat(room, marker, oob_xml(ok_url))
        got = await b.wait_groupchat(room, marker, 15)
        [(_, children)] = oob_metadata(got.xml)
        check_metadata(children, media.files["photo.jpg"])
        assert media.hits(ok_url) == 1
    run(body())


# --- 7. analysis runs off Prosody's main loop -------------------------------------------------

def test_analysis_does_not_block_other_rooms(run, connect, new_room, media, measured):
    n_slow, server_delay, n_idle = 8, 3.0, 20

    async def ping(a, b, room):
        marker = uuid.uuid4().hex
        t0 = time.monotonic()
        a.send_groupchat(room, marker)
        got = await b.wait_groupchat(room, marker, 10)
        return got.at - t0

    async def body():
        # Prosody handles one c2s session's stanzas in order, in one async runner: a
        # session's next stanza waits until its held-back message has gone on. So the
        # slow URLs come from 8 sessions of carol (8 concurrent analyses), and the plain
        # messages from alice, whose session is not waiting for anything.
        slow_room, chat_room = new_room(SLOW_DOMAIN), new_room(MUC_DOMAIN)
        a, b = await connect("alice"), await connect("bob")
        senders = [await connect("carol") for _ in range(n_slow)]
        for i, c in enumerate(senders):
            await c.join(slow_room, f"C{i}")
        await b.join(slow_room, "B")
        await a.join(chat_room, "A")
        await b.join(chat_room, "B")

        for _ in range(3):  # warm up
            await ping(a, b, chat_room)
        idle = []
        for _ in range(n_idle):  # paced like the measurement below
            idle.append(await ping(a, b, chat_room))
            await asyncio.sleep(0.02)

        urls = [media.url("photo.jpg", tag=f"slow{i}") for i in range(n_slow)]
        for u in urls:
            media.delay(u, server_delay)
        markers = []
        t_sent = time.monotonic()
        for c, u in zip(senders, urls):
            markers.append(uuid.uuid4().hex)
            c.send_groupchat(slow_room, markers[-1], oob_xml(u))
        slow_done = asyncio.gather(*(b.wait_groupchat(slow_room, m, 60) for m in markers))
        try:
            busy = []  # (sent at, latency)
            while not slow_done.done():
                t = time.monotonic()
                busy.append((t, await ping(a, b, chat_room)))
                await asyncio.sleep(0.02)
            slow = await slow_done
        finally:
            slow_done.cancel()
            await asyncio.gather(slow_done, return_exceptions=True)
        return idle, busy, slow, t_sent

    idle, busy, slow, t_sent = run(body(), timeout=120)
    first_slow = min(r.at for r in slow)
    pending = [lat for t, lat in busy if t + lat < first_slow]
    idle_med = statistics.median(idle)
    busy_med = statistics.median(lat for _, lat in busy)
    pending_med = statistics.median(pending) if pending else float("nan")
    limit = max(2 * idle_med, idle_med + 0.050)
    measured(f"idle latency: median {idle_med * 1000:.1f} ms, max {max(idle) * 1000:.1f} ms over {len(idle)}; "
          f"while analysing: median {busy_med * 1000:.1f} ms, max {max(l for _, l in busy) * 1000:.1f} ms "
          f"over {len(busy)}, of which {len(pending)} before the first slow message arrived (median "
             f"{pending_med * 1000:.1f} ms); limit {limit * 1000:.1f} ms; "
          f"slow messages arrived after {first_slow - t_sent:.2f}..{max(r.at for r in slow) - t_sent:.2f}s")

    # The slow messages were really held for the slow server, and were analysed.
    assert first_slow - t_sent >= server_delay * 0.8
    for r in slow:
        [(url, children)] = oob_metadata(r.xml)
        check_metadata(children, media.files["photo.jpg"])
        assert media.hits(url) == 1
    # Meanwhile the other room kept flowing at idle speed.
    assert len(pending) >= 10, f"only {len(pending)} messages got through while analysis was pending"
    assert busy_med <= limit, f"median latency {busy_med * 1000:.1f} ms while analysing > {limit * 1000:.1f} ms"


# --- last: nothing went wrong inside Prosody -------------------------------------------------

def test_prosody_logged_no_errors(prosody):
    """Run last: no error was logged by Prosody or the module during all of the above."""
    errors = [line for line in prosody.log_text().splitlines()
              if "\terror\t" in line or "traceback" in line.lower()]
    assert errors == [], "\n".join(errors[:20])
