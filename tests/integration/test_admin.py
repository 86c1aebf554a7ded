"""What the README tells an admin to do, on a real Prosody 0.12 and 13: how changed options and
a newly enabled module take effect, and how to read the module's metrics."""

import asyncio
import re
import textwrap
import time
import uuid

import pytest

from conftest import PASSWORD, library_path, serving
from prosody_server import MUC_DOMAIN, REPO, STRICT_DOMAIN, ProsodyServer, install_plugin
from xmpp import Client, oob_metadata, oob_xml

pytestmark = pytest.mark.plugin

LATE_DOMAIN = "late.localhost"  # the module is enabled there only after start-up
LATE_COMPONENT = f"""
Component "{LATE_DOMAIN}" "muc"
	modules_enabled = {{ "muc_mam" }}
	muc_room_locking = false
	media_metadata_deadline = 7
"""
TYPO_DOMAIN = "typo.localhost"  # options an admin got wrong
TYPO_COMPONENT = f"""
Component "{TYPO_DOMAIN}" "muc"
	modules_enabled = {{ "muc_media_metadata" }}
	media_metadata_threds = 4
	media_metadata_deadline = "7 seconds"
	media_metadata_cache_ttl = "1.5 days"
	media_metadata_connect_timeout = 1.5
	media_metadata_timeout = 1.5 * 86400
"""


@pytest.fixture(scope="module")
def admin_prosody(request, tmp_path_factory, prosody):
    work = tmp_path_factory.mktemp(f"admin{prosody.version}")
    plugins = work / "plugins"
    install_plugin(plugins, REPO / "lua/mod_muc_media_metadata.lua", library_path())
    server = ProsodyServer(prosody.version, work, [plugins], with_plugin=True, admin_shell=True,
                           extra_config=LATE_COMPONENT + TYPO_COMPONENT, global_config='statistics = "internal"')
    with serving(server, request, ["alice", "bob"], f"admin Prosody {prosody.version}"):
        yield server


def load_lines(server, host):
    return [line for line in server.log_text().splitlines()
            if f"{host}:muc_media_metadata\tinfo\tmod_muc_media_metadata " in line]


def shell_ok(server, command):
    for _ in range(20):  # the admin socket may not accept yet right after start-up
        r = server.shell(command)
        if "Unable to connect" not in r.stdout + r.stderr:
            break
        time.sleep(0.25)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_changed_options_and_new_modules_need_a_module_reload(admin_prosody):
    server = admin_prosody
    # The components' modules may still be loading when the c2s port already answers (seen
    # on a loaded machine): wait for the load line rather than read the log once.
    for _ in range(100):
        if [l for l in load_lines(server, MUC_DOMAIN) if l.endswith(" 2s per message")]:
            break
        time.sleep(0.1)
    assert [l for l in load_lines(server, MUC_DOMAIN) if l.endswith(" 2s per message")], server.tail(40)
    assert load_lines(server, LATE_DOMAIN) == []
    cfg = server.config.read_text()
    cfg = cfg.replace("media_metadata_deadline = 2", "media_metadata_deadline = 3", 1)
    cfg = cfg.replace('modules_enabled = { "muc_mam" }\n\tmuc_room_locking = false\n\tmedia_metadata_deadline = 7',
                      'modules_enabled = { "muc_mam"; "muc_media_metadata" }\n\tmuc_room_locking = false\n\tmedia_metadata_deadline = 7')
    assert "media_metadata_deadline = 3" in cfg and '"muc_mam"; "muc_media_metadata" }\n\tmuc_room_locking = false\n\tmedia_metadata_deadline = 7' in cfg
    server.write_config = lambda: server.config  # keep the edited file
    server.config.write_text(cfg)

    # `prosodyctl reload` re-reads the config file, but loaded modules keep their options and
    # a newly enabled module is not loaded (on 0.12 and 13 alike).
    r = server.prosodyctl_run("reload")
    assert r.returncode == 0, r.stdout + r.stderr
    time.sleep(2)
    assert not [l for l in load_lines(server, MUC_DOMAIN) if l.endswith(" 3s per message")]
    assert load_lines(server, LATE_DOMAIN) == []

    # What works without a restart: module:reload and module:load in prosodyctl shell.
    out = shell_ok(server, f'module:reload("muc_media_metadata", "{MUC_DOMAIN}")')
    assert "reloaded" in out.lower(), out
    out = shell_ok(server, f'module:load("muc_media_metadata", "{LATE_DOMAIN}")')
    assert "loaded" in out.lower(), out
    time.sleep(0.5)
    assert [l for l in load_lines(server, MUC_DOMAIN) if l.endswith(" 3s per message")]
    assert [l for l in load_lines(server, LATE_DOMAIN) if l.endswith(" 7s per message")]


def test_metrics_by_outcome_and_error(run, admin_prosody, media):
    server = admin_prosody

    async def body():
        a = await Client(f"alice@localhost/{uuid.uuid4().hex[:6]}", PASSWORD).start(server.c2s_port)
        b = await Client(f"bob@localhost/{uuid.uuid4().hex[:6]}", PASSWORD).start(server.c2s_port)
        try:
            for domain, url in ((MUC_DOMAIN, media.url("photo.jpg", tag="metric")),
                                (STRICT_DOMAIN, media.url("photo.jpg", tag="metric-refused"))):
                room = f"room-{uuid.uuid4().hex[:10]}@{domain}"
                await a.join(room, "A")
                await b.join(room, "B")
                marker = uuid.uuid4().hex
                a.send_groupchat(room, marker, oob_xml(url))
                await b.wait_groupchat(room, marker, 10)
        finally:
            await a.stop()
            await b.stop()

    run(body())
    out = shell_ok(server, 'stats:show("muc_media_metadata")')
    assert "prosody_mod_muc_media_metadata/urls" in out, out
    assert "prosody_mod_muc_media_metadata/held_seconds" in out, out
    # One line per label set (host, outcome, error), shown as a rate; no others.
    lines = [l.split() for l in out.splitlines() if "outcome=" in l]
    assert sorted(l[:3] for l in lines) == [
        [f"host={MUC_DOMAIN}", "outcome=metadata", "error="],
        [f"host={STRICT_DOMAIN}", "outcome=failed", "error=refused"],
    ], out
    assert all(l[-2] == "events/s" for l in lines), out
    # The results store: each URL looked up (a miss), and the one result stored.
    store = [l.split() for l in out.splitlines() if "result=" in l]
    assert sorted(l[:2] for l in store) == [
        [f"host={MUC_DOMAIN}", "result=miss"],
        [f"host={MUC_DOMAIN}", "result=stored"],
        [f"host={STRICT_DOMAIN}", "result=miss"],
    ], out


def test_mistakes_in_the_config_are_named_at_load_and_the_module_runs(admin_prosody):
    server = admin_prosody
    log = [l for l in server.log_text().splitlines() if f"{TYPO_DOMAIN}:muc_media_metadata" in l]
    text = "\n".join(log)
    assert any("warn\tUnknown option media_metadata_threds is ignored; did you mean media_metadata_threads?" in l
               for l in log), text
    # Prosody 0.12 has no periods; 13 reads "7 seconds". Neither reads "1.5 days" right.
    if server.version == "0.12":
        assert any('error\tIgnoring media_metadata_deadline = "7 seconds": expected a number of seconds above 0, '
                   'at most 60; using the default, 5' in l for l in log), text
        assert load_lines(server, TYPO_DOMAIN)[0].endswith(" 5s per message"), text
    else:
        assert "media_metadata_deadline" not in text, text
        assert load_lines(server, TYPO_DOMAIN)[0].endswith(" 7s per message"), text
    assert any('error\tIgnoring media_metadata_cache_ttl = "1.5 days": expected a number of seconds above 0, '
               'at most 2592000; using the default, 3600' in l for l in log), text
    # A fraction of a second and a fractional TTL in seconds are fine; the timeout's range is
    # 600 s, so 1.5 days is refused with its own line.
    assert "connect_timeout" not in text, text
    assert any("error\tIgnoring media_metadata_timeout = 129600" in l and "using the default, 10" in l
               for l in log), text
    assert len([l for l in log if "\terror\t" in l]) == (3 if server.version == "0.12" else 2), text


def test_the_readme_debug_logging_keeps_debians_sinks(request, tmp_path, prosody):
    """The README's log table (Troubleshooting): Debian's info and error files stay as they
    are, and a file of its own gets the debug lines, the module's among them."""
    plugins = tmp_path / "plugins"
    install_plugin(plugins, REPO / "lua/mod_muc_media_metadata.lua", library_path())
    readme = (REPO / "README.md").read_text()
    snippet = re.search(r"```lua\n( *log = \{\n.*?\n *\})\n *```", readme, re.S)
    assert snippet, "no log table in the README"
    config = textwrap.dedent(snippet.group(1)).replace("/var/log/prosody", str(tmp_path / "logs"))
    assert '"syslog"' in config and "prosody.err" in config, config
    (tmp_path / "logs").mkdir()
    server = ProsodyServer(prosody.version, tmp_path / "prosody", [plugins], with_plugin=True, log_config=config)
    server.log_file = tmp_path / "logs/prosody.log"
    server.start()
    try:
        time.sleep(1)
    finally:
        server.stop()
    info = (tmp_path / "logs/prosody.log").read_text().splitlines()
    debug = (tmp_path / "logs/debug.log").read_text().splitlines()
    assert (tmp_path / "logs/prosody.err").exists()
    assert info and not [l for l in info if "\tdebug\t" in l], info[:5]
    assert [l for l in info if "muc_media_metadata\tinfo\tmod_muc_media_metadata " in l], info
    assert debug and all("\tdebug\t" in l for l in debug), debug[:5]
    assert [l for l in debug if "muc_media_metadata\tdebug\tLoaded the media_metadata library" in l], debug[:20]
