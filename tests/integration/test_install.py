"""The install layouts of the README ("Install") and design.md, each on a real Prosody.

1. LuaRocks from a checkout: `luarocks --lua-version 5.4 make --tree TREE`, and
   `plugin_paths = { TREE }` in the config.
2. A binary rock: `luarocks --lua-version 5.4 make --pack-binary-rock`, then
   `prosodyctl install /full/path/FILE.rock` into the server's `installer_plugin_path`
   (prosodyctl changes to the data directory first: "./FILE.rock" is not found there).
3. A plain copy (the plugin, its stanza library media_metadata_stanzas.lib.lua and
   media_metadata.so in mod_muc_media_metadata/ in a directory of plugin_paths): the layout
   the session's `prosody` fixture uses for every other test; here its files and load line
   are checked (test_client_elements.py posts to a plain copy of its own).

Layouts 1 and 2 each start their own Prosody whose only copy of the module is the one
installed by the commands above, post a real photo in a room, and check the <metadata>, the
file share and the SIMS reference another occupant receives. LuaRocks installs the stanza
library as TREE/share/lua/5.4/mod_muc_media_metadata/media_metadata_stanzas.lua (it names a
module's file after its name, dropping ".lib"), where Prosody's module:require finds it. `luarocks make` runs the rockspec's build_command (cargo) in the
checkout, so it reuses target/ and costs a no-op cargo build when the library is current.
"""

import fcntl
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from prosody_server import DEADLINE, MUC_DOMAIN, REPO, SLOW_DEADLINE, SLOW_DOMAIN, STRICT_DOMAIN, ProsodyServer
from test_client_elements import file_shares, q, sfs_url, sha256_b64, sims_refs, sims_url
from xmpp import Client, oob_metadata, oob_xml, xml_str

pytestmark = pytest.mark.plugin

PASSWORD = "correct horse battery staple"
ROCKSPEC = REPO / "mod_muc_media_metadata-0.1.0-1.rockspec"
ROCK_NAME = "mod_muc_media_metadata-0.1.0-1.linux-x86_64.rock"
LUAROCKS = ["luarocks", "--lua-version", "5.4"]
# Where LuaRocks puts the stanza library (rockspec, build.install.lua).
TREE_LIB = "share/lua/5.4/mod_muc_media_metadata/media_metadata_stanzas.lua"
BUILD_TIMEOUT = 1800  # luarocks make runs cargo: a cold build takes minutes on 2 cores

INFO_LINE = re.compile(
    r"^\w{3} [ \d]\d \d\d:\d\d:\d\d (?P<host>\S+):muc_media_metadata\tinfo\tmod_muc_media_metadata (?P<version>\d+\.\d+\.\d+\S*)"
    r" \(library (?P<library>\d+\.\d+\.\d+\S*)\) with (?P<threads>\d+) threads: private addresses (?P<private>allowed|refused),"
    r" at most (?P<bytes>[\d.]+ \S+) and (?P<pixels>[\d.]+ \S+) per file, (?P<deadline>[\d.]+)s per message$")


def cargo_version() -> str:
    text = (REPO / "Cargo.toml").read_text()
    m = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
    assert m, "no version in Cargo.toml"
    return m.group(1)


def need_tools():
    for tool, why in (("luarocks", "scripts/setup installs it (apt: luarocks)"),
                      ("cargo", "the rockspec builds with cargo; install a Rust toolchain")):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not on PATH: {why}")


@contextmanager
def checkout_lock():
    """`luarocks make` writes into the checkout (target/, the packed .rock): one at a time,
    also across concurrent test runs."""
    lock = REPO / "target" / ".test-install.lock"
    lock.parent.mkdir(exist_ok=True)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def sh(cmd: list[str], cwd: Path, timeout: float = 120, env: dict | None = None) -> str:
    """Run a command; fail the test with its output if it fails. Returns the output."""
    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout, env=env)
    out = r.stdout + r.stderr
    if r.returncode != 0:
        pytest.fail(f"`{' '.join(map(str, cmd))}` (in {cwd}) exited with {r.returncode} after "
                    f"{time.monotonic() - t0:.1f}s:\n{out[-4000:]}", pytrace=False)
    return out


@contextmanager
def running(server: ProsodyServer):
    server.start()
    try:
        for user in ("alice", "bob"):
            server.register(user, "localhost", PASSWORD)
        yield server
    except BaseException:
        print(f"Prosody {server.version}: config and logs in {server.dir}\n{server.tail(60)}")
        raise
    finally:
        server.stop()


def assert_loaded_from(server: ProsodyServer, library: Path, plugin: Path):
    """The module was loaded on the MUC components, from `plugin`, with `library`."""
    log = server.log_text()
    loaded = re.findall(r"Loaded the media_metadata library from (\S+)", log)
    assert loaded, f"no 'Loaded the media_metadata library' line:\n{server.tail(60)}"
    assert set(loaded) == {str(library)}, f"library loaded from {set(loaded)}, expected {library}"
    infos = [m for m in map(INFO_LINE.match, log.splitlines()) if m]
    assert {m["host"] for m in infos} == {MUC_DOMAIN, STRICT_DOMAIN, SLOW_DOMAIN}, \
        f"load info lines: {[m.group(0) for m in infos]}\n{server.tail(60)}"
    # The plugin finds the library relative to its own file (README, "Install"), so the
    # library's path above also says which plugin file was loaded.
    assert plugin.is_file(), plugin


def photo_gets_metadata(run, server: ProsodyServer, media):
    """alice posts a real photo's URL; bob receives it with the right <metadata>, and the
    file share and SIMS reference that only the stanza library writes."""
    photo = media.files["photo.jpg"]

    async def body():
        clients = []
        try:
            for user in ("alice", "bob"):
                c = Client(f"{user}@localhost/{uuid.uuid4().hex[:6]}", PASSWORD)
                clients.append(c)
                await c.start(server.c2s_port)
            a, b = clients
            room = f"room-{uuid.uuid4().hex[:10]}@{MUC_DOMAIN}"
            await a.join(room, "A")
            await b.join(room, "B")
            url = media.url("photo.jpg", tag="install")
            marker = uuid.uuid4().hex
            a.send_groupchat(room, marker, oob_xml(url))
            got = await b.wait_groupchat(room, marker, 15)
            [(got_url, children)] = oob_metadata(got.xml)
            assert got_url == url
            assert children is not None, f"no <metadata>: {xml_str(got.xml)}"
            values = dict(children)
            assert [n for n, _ in children] == ["bytes", "type", "width", "height", "blurhash"], children
            assert int(values["bytes"]) == photo.size
            assert values["type"] == "image/jpeg"
            assert (int(values["width"]), int(values["height"])) == (photo.width, photo.height) == (1600, 1200)
            assert len(values["blurhash"]) == 28, values
            [share], [ref] = file_shares(got.xml), sims_refs(got.xml)
            assert sfs_url(share) == sims_url(ref) == url, xml_str(got.xml)
            assert share.find(q("fm:file")).find(q("hash:hash")).text == sha256_b64(photo.data)
            assert media.hits(url) == 1
        finally:
            for c in clients:
                await c.stop()

    run(body())


# --- 1. LuaRocks from a checkout -------------------------------------------------------------

def test_luarocks_make_tree(request, tmp_path, run, media):
    need_tools()
    version = request.config.getoption("--prosody")
    tree = tmp_path / "custom_plugins"
    t0 = time.monotonic()
    with checkout_lock():
        # As the README: from the checkout, no rockspec argument.
        out = sh([*LUAROCKS, "make", "--tree", str(tree)], cwd=REPO, timeout=BUILD_TIMEOUT)
    print(f"luarocks make took {time.monotonic() - t0:.1f}s")
    assert "is now installed in" in out, out
    plugin = tree / "share/lua/5.4/mod_muc_media_metadata.lua"
    library = tree / "lib/lua/5.4/media_metadata.so"
    assert plugin.is_file() and library.is_file(), sorted(str(p) for p in tree.rglob("*"))
    assert (tree / TREE_LIB).is_file(), sorted(str(p) for p in tree.rglob("*"))

    # plugin_paths names the tree; installer_plugin_path is an empty folder, so that a
    # /var/lib/prosody/custom_plugins from a manual install on this machine cannot stand in.
    empty = tmp_path / "installer-empty"
    empty.mkdir()
    server = ProsodyServer(version, tmp_path / "prosody", [tree], with_plugin=True,
                           global_config=f'installer_plugin_path = "{empty}"')
    with running(server):
        photo_gets_metadata(run, server, media)
        assert_loaded_from(server, library, plugin)


# --- 2. A binary rock with prosodyctl install -------------------------------------------------

def pack_rock(tmp_path: Path) -> Path:
    """`luarocks make --pack-binary-rock` as the README has it; returns a copy of the rock in a
    folder the prosody user can read."""
    packed = REPO / ROCK_NAME
    rock_dir = tmp_path / "rock"
    rock_dir.mkdir()
    t0 = time.monotonic()
    with checkout_lock():
        started = time.time()
        # As the README: from the checkout; the .rock is written there (it is in .gitignore).
        out = sh([*LUAROCKS, "make", "--pack-binary-rock"], cwd=REPO, timeout=BUILD_TIMEOUT)
        assert f"Packed: {packed}" in out, out
        assert packed.stat().st_mtime >= started - 1, "the .rock was not written by this run"
        shutil.copyfile(packed, rock_dir / ROCK_NAME)
    print(f"luarocks make --pack-binary-rock took {time.monotonic() - t0:.1f}s")
    return rock_dir / ROCK_NAME


def prosodyctl_install(server: ProsodyServer, rock: Path) -> subprocess.CompletedProcess:
    # As the README: prosodyctl install with the rock's absolute path (prosodyctl changes
    # to the data directory before it looks, so "./FILE.rock" is not found).
    return subprocess.run([str(server.prosodyctl), "--config", str(server.config), "install", str(rock)],
                          cwd=rock.parent, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120, env=server._env())


def test_binary_rock_prosodyctl_install(request, tmp_path, run, media):
    need_tools()
    version = request.config.getoption("--prosody")
    rock = pack_rock(tmp_path)
    tree = tmp_path / "custom_plugins"  # the server's installer_plugin_path, not yet there
    server = ProsodyServer(version, tmp_path / "prosody", [], with_plugin=True,
                           global_config=f'installer_plugin_path = "{tree}"')
    server.write_config()
    r = prosodyctl_install(server, rock)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"prosodyctl install exited with {r.returncode}:\n{out}"
    assert f"Installing {rock} in {tree}" in out, out
    plugin = tree / "share/lua/5.4/mod_muc_media_metadata.lua"
    library = tree / "lib/lua/5.4/media_metadata.so"
    assert plugin.is_file() and library.is_file(), (out, sorted(str(p) for p in tree.rglob("*")))
    assert (tree / TREE_LIB).is_file(), (out, sorted(str(p) for p in tree.rglob("*")))

    with running(server):
        photo_gets_metadata(run, server, media)
        assert_loaded_from(server, library, plugin)


def test_layouts_side_by_side_after_giving_the_tree_back(request):
    """The README's step: a root `luarocks make --tree` into installer_plugin_path leaves the
    tree root's, prosodyctl install (as the prosody user) then fails; chown mends it."""
    need_tools()
    version = request.config.getoption("--prosody")
    # As on a Debian server: every folder on the way readable by the prosody user (pytest's
    # tmp_path is under a folder only root may enter).
    base = Path(tempfile.mkdtemp(prefix="mmm-layouts-"))
    base.chmod(0o755)
    try:
        tree = base / "custom_plugins"
        with checkout_lock():
            sh([*LUAROCKS, "make", "--tree", str(tree)], cwd=REPO, timeout=BUILD_TIMEOUT)
        rock = pack_rock(base)
        server = ProsodyServer(version, base / "prosody", [], with_plugin=True,
                               global_config=f'installer_plugin_path = "{tree}"')
        # prosodyctl run as root becomes the prosody user (the test servers' run_as_root
        # would keep it root), in a data directory that is the prosody user's.
        config = server.write_config()
        config.write_text(config.read_text().replace("run_as_root = true\n", ""))
        for p in (base / "prosody", rock.parent):
            p.chmod(0o755)
        config.chmod(0o644)
        sh(["chown", "-R", "prosody:prosody", str(server.dir / "data")], cwd=base)
        r = prosodyctl_install(server, rock)
        # (Prosody 13's prosodyctl exits 0 all the same.)
        assert "does not have write permissions" in r.stdout + r.stderr, r.stdout + r.stderr
        assert version == "13" or r.returncode != 0, r.stdout + r.stderr
        sh(["chown", "-R", "prosody:prosody", str(tree)], cwd=base)
        r = prosodyctl_install(server, rock)
        assert r.returncode == 0 and "is now installed" in r.stdout + r.stderr, r.stdout + r.stderr
        assert (tree / "lib/lua/5.4/media_metadata.so").stat().st_uid != 0
    finally:
        shutil.rmtree(base, ignore_errors=True)


# --- 3. A plain copy: the session's server ----------------------------------------------------

def test_plain_copy_logs_one_info_line_per_component(prosody):
    """The session's Prosody has the plain copy (conftest: install_plugin); at load the
    module logs one info line per component, as the README shows, with the plugin's and the
    library's version
    and each component's own settings."""
    lib = Path(prosody.plugin_paths[0]) / "mod_muc_media_metadata" / "media_metadata.so"
    assert lib.is_file(), lib
    stanzas = lib.with_name("media_metadata_stanzas.lib.lua")
    assert stanzas.is_file(), f"{stanzas} is missing: the plain copy must carry the plugin's stanza library"
    log = prosody.log_text()
    loaded = re.findall(r"Loaded the media_metadata library from (\S+)", log)
    assert len(loaded) >= 3 and set(loaded) == {str(lib)}, prosody.tail(60)
    infos = {}  # host -> its first line (at start-up; other tests may reload the module)
    for m in filter(None, map(INFO_LINE.match, log.splitlines())):
        infos.setdefault(m["host"], m)
    assert set(infos) == {MUC_DOMAIN, STRICT_DOMAIN, SLOW_DOMAIN}, \
        f"load info lines for {sorted(infos)}:\n{prosody.tail(60)}"
    want = {  # prosody_server.py's components
        MUC_DOMAIN: ("2", "allowed", DEADLINE),
        STRICT_DOMAIN: ("2", "refused", DEADLINE),
        SLOW_DOMAIN: ("4", "allowed", SLOW_DEADLINE),
    }
    for host, (threads, private, deadline) in want.items():
        m = infos[host]
        assert m["version"] == m["library"] == cargo_version(), m.group(0)
        assert (m["threads"], m["private"], float(m["deadline"])) == (threads, private, deadline), m.group(0)
        assert (m["bytes"], m["pixels"]) == ("32 MiB", "50 Mpx"), m.group(0)
