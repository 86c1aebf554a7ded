"""mod_muc_media_metadata in a real Prosody: what it costs messages that carry no URL.

  .venv/bin/python bench/prosody_bench.py [--prosody 13|0.12] [--rounds 4] [--messages 1000]

One Prosody (default 13) with two MUC components in the same process: plain.localhost
(mod_muc_mam) and meta.localhost (mod_muc_mam + the module), so both sides share the machine's
state at the same moment.
(a) groupchat messages per second through one room, no URLs: rounds alternate between the
    components (and which goes first); medians and their ratio. Target: within 3%.
(b) p50/p99 latency of plain messages (A sends, B receives) in a room of meta.localhost,
    idle and while 16 other sessions keep 16 analyses of a 12 MP JPEG in flight. Target:
    p99 busy within 1.5x of idle.
"""

import argparse
import asyncio
import io
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests/integration"))

from PIL import Image  # noqa: E402

from media_server import MediaFile, MediaServer, make_files  # noqa: E402
from prosody_server import ProsodyServer, install_plugin  # noqa: E402
from xmpp import Client, oob_metadata, oob_xml  # noqa: E402

PASSWORD = "bench"
COMPONENTS = """
Component "plain.localhost" "muc"
	modules_enabled = { "muc_mam" }
	muc_room_locking = false
Component "meta.localhost" "muc"
	modules_enabled = { "muc_mam"; "muc_media_metadata" }
	muc_room_locking = false
	media_metadata_allow_private = true
	media_metadata_queue_length = 64
"""


def big_jpeg(w=4000, h=3000) -> bytes:
    """A 12 MP photo-like JPEG (gradients and noise), ~3-5 MB."""
    red = Image.linear_gradient("L").rotate(90).resize((w, h))
    green = Image.linear_gradient("L").resize((w, h))
    blue = Image.effect_noise((w, h), 40)
    out = io.BytesIO()
    Image.merge("RGB", (red, green, blue)).save(out, "JPEG", quality=90)
    return out.getvalue()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def throughput(a: Client, b: Client, room: str, n: int) -> float:
    """Messages per second: A sends n at once; until B has all of them."""
    tag = uuid.uuid4().hex[:8]
    start = len(b.received)
    t0 = time.monotonic()
    for i in range(n):
        a.send_groupchat(room, f"{tag} {i}")
    last = f"{tag} {n - 1}"
    await b.wait_groupchat(room, last, timeout=120)
    got = sum(1 for r in b.received[start:] if (r.xml.findtext("{jabber:client}body") or "").startswith(tag))
    assert got == n, (got, n)
    return n / (time.monotonic() - t0)


async def ping(a: Client, b: Client, room: str) -> float:
    marker = uuid.uuid4().hex
    t0 = time.monotonic()
    a.send_groupchat(room, marker)
    got = await b.wait_groupchat(room, marker, 30)
    return got.at - t0


async def main(args):
    media = MediaServer({**make_files(), "big.jpg": MediaFile("big.jpg", big_jpeg(), "image/jpeg", 4000, 3000)}).start()
    work = Path(tempfile.mkdtemp(prefix=f"prosody-bench-{args.prosody}-"))
    plugins = work / "plugins"
    plugins.mkdir()
    install_plugin(plugins, REPO / "lua/mod_muc_media_metadata.lua", Path(args.library))
    server = ProsodyServer(args.prosody, work, [plugins], with_plugin=False, extra_config=COMPONENTS)
    server.start()
    clients = []
    try:
        for u in ("alice", "bob", "carol"):
            server.register(u, "localhost", PASSWORD)

        async def connect(u):
            c = await Client(f"{u}@localhost/{uuid.uuid4().hex[:6]}", PASSWORD).start(server.c2s_port)
            clients.append(c)
            return c

        a, b = await connect("alice"), await connect("bob")
        rooms = {k: f"bench-{uuid.uuid4().hex[:6]}@{k}.localhost" for k in ("plain", "meta")}
        for r in rooms.values():
            await a.join(r, "A")
            await b.join(r, "B")

        # (a) throughput, alternating rounds
        for k in rooms:  # warm-up
            await throughput(a, b, rooms[k], args.messages // 4)
        rates = {"plain": [], "meta": []}
        for i in range(args.rounds * 2):
            order = ("plain", "meta") if i % 2 == 0 else ("meta", "plain")
            for k in order:
                rates[k].append(await throughput(a, b, rooms[k], args.messages))
        med = {k: statistics.median(v) for k, v in rates.items()}
        ratio = med["meta"] / med["plain"]

        # (b) latency idle vs while 16 analyses are in flight
        room = rooms["meta"]
        for _ in range(10):
            await ping(a, b, room)
        idle = []
        for _ in range(args.samples):
            idle.append(await ping(a, b, room))
            await asyncio.sleep(0.01)
        busy_room = f"busy-{uuid.uuid4().hex[:6]}@meta.localhost"
        senders = [await connect("carol") for _ in range(16)]
        for i, c in enumerate(senders):
            await c.join(busy_room, f"C{i}")
        await b.join(busy_room, "B")
        stop = asyncio.Event()
        analysed = []

        async def keep_busy(c):
            while not stop.is_set():
                url = media.url("big.jpg")
                marker = uuid.uuid4().hex
                c.send_groupchat(busy_room, marker, oob_xml(url))
                got = await b.wait_groupchat(busy_room, marker, 60)
                analysed.append(oob_metadata(got.xml))
        busy_tasks = [asyncio.ensure_future(keep_busy(c)) for c in senders]
        await asyncio.sleep(0.5)
        busy = []
        for _ in range(args.samples):
            busy.append(await ping(a, b, room))
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.gather(*busy_tasks)
        with_md = sum(1 for md in analysed if md and md[0][1] and dict(md[0][1]).get("width") == "4000")

        p = {n: (pct(v, 50) * 1000, pct(v, 99) * 1000) for n, v in (("idle", idle), ("busy", busy))}
        p99_ratio = p["busy"][1] / p["idle"][1]
        ok = lambda c: "met" if c else "NOT met"  # noqa: E731
        print(f"Prosody {args.prosody}, {args.rounds * 2} rounds of {args.messages} messages a side, "
              f"{args.samples} latency samples a state")
        print(f"{'':34} {'without module':>15} {'with module':>12} {'ratio':>7}  target")
        print(f"{'(a) msg/s, no URLs (median)':34} {med['plain']:15.0f} {med['meta']:12.0f} {ratio:7.3f}  "
              f">= 0.97: {ok(ratio >= 0.97)}")
        print(f"    rounds plain: {', '.join(f'{x:.0f}' for x in rates['plain'])}; "
              f"meta: {', '.join(f'{x:.0f}' for x in rates['meta'])}")
        print(f"{'':34} {'idle':>15} {'16 analysing':>12} {'ratio':>7}")
        print(f"{'(b) latency p50 (ms)':34} {p['idle'][0]:15.2f} {p['busy'][0]:12.2f} "
              f"{p['busy'][0] / p['idle'][0]:7.2f}")
        print(f"{'(b) latency p99 (ms)':34} {p['idle'][1]:15.2f} {p['busy'][1]:12.2f} {p99_ratio:7.2f}  "
              f"<= 1.5: {ok(p99_ratio <= 1.5)}")
        print(f"    {len(analysed)} 12 MP JPEG messages analysed meanwhile, {with_md} with full metadata")
    finally:
        for c in clients:
            await c.stop()
        server.stop()
        media.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prosody", default="13", choices=("0.12", "13"))
    ap.add_argument("--rounds", type=int, default=4, help="rounds per side (alternating)")
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--library", default=str(REPO / "target/release/libmedia_metadata.so"))
    asyncio.run(main(ap.parse_args()))
