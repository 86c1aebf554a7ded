"""The README's first command does what it says: scripts/demo.py (what scripts/demo runs after
set-up and build) posts real media through a real Prosody, every expected element arrives,
and the page of placeholders is written with each image's three placeholders.

Needs ffmpeg and exiftool (scripts/setup installs them) for the demo's voice note and video.
The demo checks the stanzas itself (exit status 1 if anything is missing); this test runs it
as an admin would and reads its page, so a broken demo fails CI rather than a first-time user.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import library_path
from media_server import make_files

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.plugin


def test_demo_prints_the_elements_and_writes_the_page(request, tmp_path):
    version = request.config.getoption("--prosody")
    env = dict(os.environ, CARGO_TARGET_DIR=str(tmp_path))  # the page goes under it
    done = subprocess.run([sys.executable, str(REPO / "scripts/demo.py"), "--prosody", version,
                           "--library", str(library_path())],
                          capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    out = done.stdout
    assert "all 6 messages carried the expected metadata, file share and SIMS reference" in out
    for element in ("<metadata xmlns=\"xmpp:prosody.im/protocol/media-metadata#0\">",
                    "<file-sharing xmlns=\"urn:xmpp:sfs:0\">", "<media-sharing xmlns=\"urn:xmpp:sims:1\">"):
        assert out.count(element) == 6, (element, out[-3000:])

    page = tmp_path / "demo" / "placeholders.html"
    assert f"demo: wrote {page}" in out
    html = page.read_text()
    # Three images, each with its three placeholders decoded from the stanza; the PDF, the
    # voice note and the video have none, but the video has its displayed box.
    for caption in ("BlurHash", "ThumbHash", "tiny PNG (Dino)"):
        assert html.count(f"<figcaption>{caption}</figcaption>") == 3, caption
    sizes = re.findall(r"<small>(\d+)x(\d+) px, (\d+) bytes</small>", html)
    assert len(sizes) == 3 and all(max(int(w), int(h)) == 8 for w, h, _ in sizes), sizes
    pdf = make_files()["doc.pdf"]
    assert f"<div class=file>doc.pdf<br><small>application/pdf, {pdf.size} bytes</small></div>" in html
    assert re.search(r"<div class=file>voice\.m4a<br><small>audio/mp4, \d+ bytes, 0:04\.\d</small></div>", html)
    assert '<div class="file video" style="width:135px;height:180px">' in html  # 240x320 displayed
