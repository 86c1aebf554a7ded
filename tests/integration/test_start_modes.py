"""The module works however Prosody is started: in the foreground (-F) and daemonized (-D, as
`prosodyctl start` and Debian's init script start it). Prosody 0.12 forks to daemonize after
loading modules, and threads do not survive a fork: the workers must start after it."""

import os
import time
import uuid

import pytest

from conftest import PASSWORD, library_path, serving
from prosody_server import MUC_DOMAIN, REPO, ProsodyServer, install_plugin
from xmpp import Client, oob_metadata, oob_xml, xml_str

pytestmark = pytest.mark.plugin


@pytest.mark.parametrize("daemonize", [False, True], ids=["foreground", "daemonized"])
def test_metadata_arrives_in_each_start_mode(request, run, tmp_path, prosody, media, daemonize, measured):
    plugins = tmp_path / "plugins"
    install_plugin(plugins, os.environ.get("MEDIA_METADATA_PLUGIN", REPO / "lua/mod_muc_media_metadata.lua"),
                   library_path())
    server = ProsodyServer(prosody.version, tmp_path, [plugins], with_plugin=True, daemonize=daemonize)
    with serving(server, request, ["alice", "bob"], f"Prosody {prosody.version} ({'-D' if daemonize else '-F'})"):
        if daemonize:
            assert server.pid != server.proc.pid, "Prosody did not fork"
        # The workers start at server-started, a moment after the c2s port opens. The session's
        # server has three MUC components with 2, 2 and 4 workers.
        want, deadline = 1 + 2 + 2 + 4, time.monotonic() + 10
        while (threads := len(os.listdir(f"/proc/{server.pid}/task"))) < want and time.monotonic() < deadline:
            time.sleep(0.05)

        async def body():
            room = f"room-{uuid.uuid4().hex[:10]}@{MUC_DOMAIN}"
            a = await Client(f"alice@localhost/{uuid.uuid4().hex[:6]}", PASSWORD).start(server.c2s_port)
            b = await Client(f"bob@localhost/{uuid.uuid4().hex[:6]}", PASSWORD).start(server.c2s_port)
            try:
                await a.join(room, "A")
                await b.join(room, "B")
                marker = uuid.uuid4().hex
                a.send_groupchat(room, marker, oob_xml(media.url("photo.jpg", tag=f"mode{daemonize}")))
                got = await b.wait_groupchat(room, marker, 10)
                return got
            finally:
                await a.stop()
                await b.stop()

        got = run(body())
        [(_, children)] = oob_metadata(got.xml)
        assert children is not None, f"no metadata when started with {'-D' if daemonize else '-F'}: {xml_str(got.xml)}"
        assert dict(children)["type"] == "image/jpeg"
        assert threads >= want, f"{threads} threads in the server process"
        measured(f"{'-D' if daemonize else '-F'}: metadata arrived; {threads} threads in Prosody's process")
        assert "started in process" not in server.log_text()  # the workers were not lost
