"""Issue 18 on a real Prosody: while one occupant posts a batch of files built to make the
decoders work or allocate far beyond their size, the other occupants' photos still get their
metadata within the deadline, and Prosody's RSS stays within its baseline plus, for each
worker thread, the documented per-analysis bound (`max_pixels` x 8 + 16 MiB)."""

import asyncio
import os
import time
import uuid

import pytest

from conftest import PASSWORD, library_path, serving
from hostile_media import HOSTILE
from media_server import MediaFile
from prosody_server import REPO, ProsodyServer, install_plugin
from test_load import RssSampler, rss_mib
from xmpp import Client, oob_metadata, oob_xml, xml_str

pytestmark = pytest.mark.plugin

DOMAIN = "hostile.localhost"
THREADS = 2  # the default
DEADLINE = 5  # the default
MAX_PIXELS = 50_000_000  # the default
BOUND_MIB = (MAX_PIXELS * 8 + (16 << 20)) / (1 << 20)  # decode.rs decoder_memory()
ROUNDS = 2  # each hostile file this many times, each time at a new URL (no cache)
PHOTOS = 8

COMPONENT = f"""
Component "{DOMAIN}" "muc"
	modules_enabled = {{ "muc_media_metadata" }}
	muc_room_locking = false
	media_metadata_allow_private = true
"""


@pytest.fixture(scope="module")
def hostile_prosody(request, tmp_path_factory, prosody, media):
    for name, (make, content_type, width, height) in HOSTILE.items():
        media.files.setdefault(name, MediaFile(name, make(), content_type, width, height))
    work = tmp_path_factory.mktemp(f"hostile{prosody.version}")
    plugins = work / "plugins"
    install_plugin(plugins, os.environ.get("MEDIA_METADATA_PLUGIN", REPO / "lua/mod_muc_media_metadata.lua"),
                   library_path())
    # Its own server, so that every worker thread in the process is this component's.
    server = ProsodyServer(prosody.version, work, [plugins], with_plugin=False, extra_config=COMPONENT)
    with serving(server, request, ["alice", "bob", "mallory"], f"hostile Prosody {prosody.version}"):
        yield server


def test_a_batch_of_hostile_files_costs_others_nothing(run, hostile_prosody, media, measured):
    server = hostile_prosody
    pid = server.pid

    async def body():
        room = f"room-{uuid.uuid4().hex[:10]}@{DOMAIN}"
        alice, bob, mallory = [await Client(f"{u}@localhost/{uuid.uuid4().hex[:6]}", PASSWORD).start(server.c2s_port)
                               for u in ("alice", "bob", "mallory")]
        try:
            for c, nick in ((alice, "alice"), (bob, "bob"), (mallory, "mallory")):
                await c.join(room, nick)
            warm = uuid.uuid4().hex  # the workers' arenas and the library's tables exist
            alice.send_groupchat(room, warm, oob_xml(media.url("photo.jpg", tag="warm")))
            await bob.wait_groupchat(room, warm, 10)
            await asyncio.sleep(0.5)
            baseline = rss_mib(pid)
            sampler = RssSampler(pid)
            sampler.start()

            t0 = time.monotonic()
            hostile = []
            for r in range(ROUNDS):
                for name in HOSTILE:
                    marker = uuid.uuid4().hex
                    mallory.send_groupchat(room, f"{name} {marker}", oob_xml(media.url(name, tag=f"h{r}")))
                    hostile.append((name, marker))
            photos = []
            for i in range(PHOTOS):
                marker = uuid.uuid4().hex
                photos.append((marker, time.monotonic()))
                alice.send_groupchat(room, f"photo {marker}", oob_xml(media.url("photo.jpg", tag=f"p{i}")))
                await asyncio.sleep(0.5)
            got_photos = [(await bob.wait_groupchat(room, m, DEADLINE + 10), sent) for m, sent in photos]
            got_hostile = [(name, await bob.wait_groupchat(room, m, 120)) for name, m in hostile]
            wall = time.monotonic() - t0
            await asyncio.sleep(1)
            peak = sampler.stop()
            return baseline, peak, got_photos, got_hostile, wall
        finally:
            for c in (alice, bob, mallory):
                await c.stop()

    baseline, peak, got_photos, got_hostile, wall = run(body(), timeout=300)
    latencies = [got.at - sent for got, sent in got_photos]
    measured(f"{len(got_hostile)} hostile files ({', '.join(HOSTILE)}) and {PHOTOS} photos in {wall:.1f}s; photo "
             f"latency max {max(latencies) * 1000:.0f} ms (deadline {DEADLINE}s); RSS baseline {baseline:.0f} MiB, "
             f"peak {peak:.0f} MiB (bound: baseline + {THREADS} x {BOUND_MIB:.0f} MiB)")
    for got, _ in got_photos:
        [(_, children)] = oob_metadata(got.xml)
        assert children is not None and dict(children).get("width") == str(media.files["photo.jpg"].width), \
            f"a photo lost its metadata to the hostile batch: {xml_str(got.xml)}"
    assert max(latencies) < DEADLINE, latencies
    for name, got in got_hostile:  # delivered, with what is known at most
        [(_, children)] = oob_metadata(got.xml)
        if children is not None:
            values = dict(children)
            assert values.get("type") == HOSTILE[name][1], (name, children)
    assert peak <= baseline + THREADS * BOUND_MIB, f"RSS peaked at {peak:.0f} MiB from a baseline of {baseline:.0f} MiB"
