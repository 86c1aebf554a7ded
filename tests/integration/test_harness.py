"""The harness itself, without asserting anything about the plugin: if these fail, the
problem is the test set-up (Prosody, clients, MAM), not mod_muc_media_metadata."""

import uuid

from prosody_server import MUC_DOMAIN
from xmpp import NS_CLIENT


def test_two_occupants_exchange_a_message_and_mam_has_it(run, connect, new_room):
    async def body():
        a, b = await connect("alice"), await connect("bob")
        room = new_room(MUC_DOMAIN)
        assert a.role_in(await a.join(room, "A")) == "moderator"  # creator, room not locked
        assert b.role_in(await b.join(room, "B")) == "participant"
        marker = uuid.uuid4().hex
        a.send_groupchat(room, f"hello {marker}")
        got = await b.wait_groupchat(room, marker)
        assert got.xml.get("from") == f"{room}/A"
        archived = await b.mam_query(room)
        assert [m.findtext(f"{{{NS_CLIENT}}}body") for m in archived] == [f"hello {marker}"]
    run(body())
