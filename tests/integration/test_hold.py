"""A message held for analysis holds only itself: the sender's connection goes on.

mod_c2s (and mod_s2s) pause a whole connection while a handler waits in its runner, so the
module takes the message out of the room's path instead and puts it back once its results
are in or the deadline has passed. These tests use URLs that are never answered, so the
message is held for the whole deadline, and check what the sender and the room see meanwhile.
"""

import asyncio
import time
import uuid

import pytest

from prosody_server import DEADLINE, MUC_DOMAIN
from xmpp import NS_CLIENT, oob_metadata, oob_xml, xml_str

pytestmark = pytest.mark.plugin


async def two_rooms_and_a_url_never_answered(connect, new_room, media, tag):
    """alice (A) and bob (B) in two new rooms, and a URL whose server never answers."""
    room, other = new_room(MUC_DOMAIN), new_room(MUC_DOMAIN)
    a, b = await connect("alice"), await connect("bob")
    for r in (room, other):
        await a.join(r, "A")
        await b.join(r, "B")
    url = media.url("photo.jpg", tag=tag)
    media.hang(url)
    return a, b, room, other, url


def test_sender_goes_on_while_its_message_is_held(run, connect, new_room, media, measured):
    async def body():
        a, b, room, other, url = await two_rooms_and_a_url_never_answered(connect, new_room, media, "held")
        held, later, elsewhere = (uuid.uuid4().hex for _ in range(3))
        t0 = time.monotonic()
        a.send_groupchat(room, f"held {held}", oob_xml(url))
        a.send_groupchat(room, f"later {later}")  # same room: waits behind the held one
        a.send_groupchat(other, f"elsewhere {elsewhere}")  # another room: goes at once
        ping = await a.ping("localhost")
        got_elsewhere = await b.wait_groupchat(other, elsewhere, 5)
        got_held = await b.wait_groupchat(room, held, DEADLINE + 5)
        got_later = await b.wait_groupchat(room, later, 5)
        return ping, got_elsewhere.at - t0, got_held, got_later, t0, url

    ping, elsewhere, got_held, got_later, t0, url = run(body())
    measured(f"while a message was held {got_held.at - t0:.2f}s (deadline {DEADLINE}s): IQ ping answered "
             f"in {ping * 1000:.0f} ms, message to another room arrived after {elsewhere * 1000:.0f} ms")
    assert ping < 1.0, f"ping took {ping:.2f}s"
    assert elsewhere < 1.0, f"the message to another room took {elsewhere:.2f}s"
    assert got_held.at - t0 >= DEADLINE * 0.9, "the held message was not held"
    assert got_later.at >= got_held.at, "the later message overtook the held one"
    assert media.hits(url) == 1
    [(_, children)] = oob_metadata(got_held.xml)
    assert children is None, xml_str(got_held.xml)


def test_stanzas_in_one_write_behind_a_held_message(run, connect, new_room, media):
    """What the COMPAT read of LuaSocket's buffer was for: several stanzas that arrive in one
    TCP segment behind a held message are all handled, without the client sending more."""
    async def body():
        a, b, room, other, url = await two_rooms_and_a_url_never_answered(connect, new_room, media, "onewrite")
        held, elsewhere = uuid.uuid4().hex, uuid.uuid4().hex
        ping_id = uuid.uuid4().hex
        start = len(a.received)
        t0 = time.monotonic()
        a.send_raw(f"<message to='{room}' type='groupchat' id='{held}'><body>held {held}</body>{oob_xml(url)}</message>"
                   f"<message to='{other}' type='groupchat' id='{elsewhere}'><body>elsewhere {elsewhere}</body></message>"
                   f"<iq type='get' to='localhost' id='{ping_id}'><ping xmlns='urn:xmpp:ping'/></iq>")
        pong = await a.wait_for(lambda el: el.tag == f"{{{NS_CLIENT}}}iq" and el.get("id") == ping_id, 5,
                                "the ping's answer", start)
        got = await b.wait_groupchat(other, elsewhere, 5)
        return pong.at - t0, got.at - t0

    pong, elsewhere = run(body())
    assert pong < 1.0 and elsewhere < 1.0, (pong, elsewhere)


@pytest.mark.parametrize("how", ["kicked", "left"])
def test_sender_removed_or_gone_during_the_hold(run, connect, new_room, media, how):
    """Kicked while its message is held: the message never reaches the room or its archive.
    Left of their own accord: it was allowed when sent, so it is delivered."""
    async def body():
        room = new_room(MUC_DOMAIN)
        a, b, c = await connect("alice"), await connect("bob"), await connect("carol")
        await a.join(room, "A")  # the owner
        await b.join(room, "B")
        await c.join(room, "C")
        url = media.url("photo.jpg", tag=f"hold-{how}")
        media.hang(url)
        marker = uuid.uuid4().hex
        t0 = time.monotonic()
        b.send_groupchat(room, f"from bob {marker}", oob_xml(url))
        await asyncio.sleep(0.3)
        held = [r for r in c.received if marker in (r.xml.findtext(f"{{{NS_CLIENT}}}body") or "")]
        assert held == [], "the message was not held"
        if how == "kicked":
            await a.kick(room, "B")
        else:
            b.send_raw(f"<presence to='{room}/B' type='unavailable'/>")
        await c.wait_for(lambda el: el.tag == f"{{{NS_CLIENT}}}presence" and el.get("type") == "unavailable"
                         and el.get("from") == f"{room}/B", 5, "bob's unavailable presence")
        try:
            got = await c.wait_groupchat(room, marker, DEADLINE + 3)
        except TimeoutError:
            got = None
        archived = await c.mam_query(room)
        return got, time.monotonic() - t0, [m for m in archived if marker in (m.findtext(f"{{{NS_CLIENT}}}body") or "")]

    got, waited, archived = run(body())
    if how == "kicked":
        assert got is None, f"the kicked occupant's message reached the room: {xml_str(got.xml)}"
        assert archived == [], "the kicked occupant's message was archived"
        assert waited >= DEADLINE
    else:
        assert got is not None and got.xml.get("from", "").endswith("/B")
        assert len(archived) == 1
