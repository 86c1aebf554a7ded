"""Voice notes and videos in a real Prosody: an m4a made by ffmpeg with its moov after the
media data (as Android's MediaRecorder and ffmpeg without +faststart write it), an Ogg Opus
note and a portrait MP4 (a landscape frame with a quarter-turn track matrix, as phones
record), served over HTTP; the other occupant gets their duration in <length> (contract
element and XEP-0446 file) and the video's displayed size. Truths from ffprobe at test time.

Without ffmpeg/ffprobe/exiftool the tests skip visibly (scripts/setup installs them); under
CI=true that is a failure.
"""

import json
import os
import shutil
import subprocess
import uuid

import pytest

from media_server import MediaFile
from prosody_server import MUC_DOMAIN
from xmpp import oob_metadata, oob_xml

pytestmark = pytest.mark.plugin

NS_SFS = "urn:xmpp:sfs:0"
NS_FILE = "urn:xmpp:file:metadata:0"
TOOLS = ("ffmpeg", "ffprobe", "exiftool")


def need_tools():
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} not installed (scripts/setup installs them)")
        pytest.skip(f"{missing} not installed (scripts/setup installs them)")


def ffmpeg(path, *args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args, str(path)], check=True)
    return path.read_bytes()


def ffprobe(path):
    """(duration in ms, (width, height) as displayed or None)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
                          str(path)], check=True, capture_output=True, text=True).stdout
    info = json.loads(out)
    ms = round(float(info["format"]["duration"]) * 1000)
    for s in info["streams"]:
        if s.get("codec_type") == "video":
            turns = [d.get("rotation", 0) for d in s.get("side_data_list", [])]
            turned = any(int(r) % 180 == 90 for r in turns)
            w, h = s["width"], s["height"]
            return ms, ((h, w) if turned else (w, h))
    return ms, None


@pytest.fixture(scope="module")
def recordings(media, tmp_path_factory):
    need_tools()
    d = tmp_path_factory.mktemp("recordings")
    tone = ["-f", "lavfi", "-i", "sine=frequency=440:duration=4.2"]
    made = {}
    data = ffmpeg(d / "voice.m4a", *tone, "-c:a", "aac", "-b:a", "32k")
    assert data.find(b"moov") > data.find(b"mdat"), "moov after mdat"
    made["voice.m4a"] = ("audio/mp4", data)
    made["voice.ogg"] = ("audio/ogg", ffmpeg(d / "voice.ogg", *tone, "-c:a", "libopus", "-b:a", "24k"))
    ffmpeg(d / "portrait.mp4", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10:duration=2", "-c:v", "mpeg4")
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-Rotation=90", str(d / "portrait.mp4")], check=True)
    made["portrait.mp4"] = ("video/mp4", (d / "portrait.mp4").read_bytes())
    truths = {}
    for name, (mime, data) in made.items():
        ms, size = ffprobe(d / name)
        media.files[name] = MediaFile(name, data, mime, *(size or (None, None)))
        truths[name] = (ms, size)
    assert truths["portrait.mp4"][1] == (240, 320), "ffprobe sees the rotation"
    return truths


@pytest.mark.parametrize("name", ["voice.m4a", "voice.ogg", "portrait.mp4"])
def test_duration_and_displayed_size(run, connect, new_room, media, recordings, name):
    truth_ms, truth_size = recordings[name]
    f = media.files[name]

    async def body():
        room = new_room(MUC_DOMAIN)
        a, b = await connect("alice"), await connect("bob")
        await a.join(room, "A")
        await b.join(room, "B")
        url = media.url(name)
        marker = uuid.uuid4().hex
        a.send_groupchat(room, f"listen {marker}", oob_xml(url))
        msg = (await b.wait_groupchat(room, marker, 15)).xml
        [(got_url, children)] = oob_metadata(msg)
        assert got_url == url and children, f"no <metadata> for {name}"
        names = [n for n, _ in children]
        values = dict(children)
        want = ["bytes", "type"] + (["width", "height"] if truth_size else []) + ["length"]
        assert names == want, f"children/order: {names}"
        assert (int(values["bytes"]), values["type"]) == (f.size, f.content_type)
        assert abs(int(values["length"]) - truth_ms) <= 60, (values["length"], truth_ms)
        if truth_size:
            assert (int(values["width"]), int(values["height"])) == truth_size
        # XEP-0446 inside the XEP-0447 share (Dino): the same length.
        share = msg.find(f"{{{NS_SFS}}}file-sharing/{{{NS_FILE}}}file")
        assert share is not None, "a file share"
        assert share.findtext(f"{{{NS_FILE}}}length") == values["length"]

    run(body())
