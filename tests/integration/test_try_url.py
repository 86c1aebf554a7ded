"""tools/try-url as an admin runs it: with the running server's config and its installed library.

The tool reads the config with the Prosody under test (`--prosody`, its own configmanager), so
a component's media_metadata_* options decide the answer exactly as they do in the module; a
bad value is reported as the module logs it. Outside a checkout it finds the library where
the server's plugin_paths put it. The media server is real, and so are its images.
"""

import os
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import library_path
from prosody_server import MUC_DOMAIN, REPO, STRICT_DOMAIN, install_plugin, lua_str
from xmpp import NS_META

pytestmark = pytest.mark.plugin

TRY_URL = REPO / "tools/try-url"
PLUGIN = REPO / "lua/mod_muc_media_metadata.lua"


def run_try_url(prosody, *args, script: Path = TRY_URL, cwd: Path = REPO,
                library_dir: Path | None = None) -> subprocess.CompletedProcess:
    """Runs the script as an executable with the Prosody under test. `library_dir` goes first
    on LUA_CPATH (what `require "media_metadata"` finds); without it Lua's paths are its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUA_")}
    if library_dir is not None:
        env["LUA_CPATH_5_4"] = f"{library_dir}/?.so;;"
    return subprocess.run([str(script), "--prosody", str(prosody.prosody), *args],
                          capture_output=True, text=True, timeout=60, cwd=cwd, env=env)


def installed_library_dir(prosody) -> Path:
    """The plain-copy install the session's server loads (a copy of MEDIA_METADATA_SO, so a
    rebuild of target/release meanwhile does not matter)."""
    return prosody.plugin_paths[0] / "mod_muc_media_metadata"


def metadata_of(stdout: str) -> dict[str, str]:
    root = ET.fromstring(stdout)
    assert root.tag == f"{{{NS_META}}}metadata", stdout
    return {child.tag.split("}")[-1]: child.text for child in root}


def assert_photo(r: subprocess.CompletedProcess, media) -> None:
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}{r.stderr}"
    f = media.files["photo.jpg"]
    meta = metadata_of(r.stdout)
    assert (meta["bytes"], meta["type"], meta["width"], meta["height"]) == (
        str(f.size), f.content_type, str(f.width), str(f.height))
    assert len(meta["blurhash"]) == 4 + 2 * 4 * 3


def test_strict_component_refuses_loopback(prosody, media):
    url = media.url("photo.jpg")
    r = run_try_url(prosody, "--config", str(prosody.config), "--component", STRICT_DOMAIN, url,
                    library_dir=installed_library_dir(prosody))
    assert (r.returncode, r.stdout) == (1, "no metadata: refused: 127.0.0.1 is loopback\nkind: refused\n"), r.stderr
    assert media.hits(url) == 0


def test_component_allowing_private_gets_metadata(prosody, media):
    """rooms.localhost sets media_metadata_allow_private = true: only the config says so."""
    url = media.url("photo.jpg")
    r = run_try_url(prosody, "--config", str(prosody.config), "--component", MUC_DOMAIN, url,
                    library_dir=installed_library_dir(prosody))
    assert_photo(r, media)
    assert r.stderr == ""
    assert media.hits(url) == 1


def test_flags_override_the_config(prosody, media):
    r = run_try_url(prosody, "--config", str(prosody.config), "--component", STRICT_DOMAIN,
                    "--allow-private", media.url("photo.jpg"), library_dir=installed_library_dir(prosody))
    assert_photo(r, media)


def test_unknown_component_is_a_usage_error(prosody, media):
    r = run_try_url(prosody, "--config", str(prosody.config), "--component", "nosuch.localhost",
                    media.url("photo.jpg"), library_dir=installed_library_dir(prosody))
    assert r.returncode == 2 and r.stdout == ""
    assert f"defines no host nosuch.localhost (components that load muc_media_metadata: " \
           f"{MUC_DOMAIN}, slow.localhost, {STRICT_DOMAIN})" in r.stderr


def test_bad_option_values_are_reported_and_periods_read_as_prosody_does(prosody, media, tmp_path):
    """threads = 0 is out of range on every Prosody. timeout = "1 second" is a period: Prosody
    13 reads it (the fetch of a file served after 3 s times out), 0.12 takes numbers only, so
    there it is refused and the default (10 s) lets the fetch finish."""
    config = tmp_path / "bad.cfg.lua"
    config.write_text(f"""plugin_paths = {{ {lua_str(prosody.plugin_paths[0])} }}
Component "bad.localhost" "muc"
	modules_enabled = {{ "muc_media_metadata" }}
	media_metadata_allow_private = true
	media_metadata_threads = 0
	media_metadata_timeout = "1 second"
""")
    url = media.url("photo.jpg")
    media.delay(url, 3)
    t0 = time.monotonic()
    r = run_try_url(prosody, "--config", str(config), "--component", "bad.localhost", url,
                    library_dir=installed_library_dir(prosody))
    took = time.monotonic() - t0
    ignored = [line for line in r.stderr.splitlines() if line.startswith("Ignoring ")]
    threads = "Ignoring media_metadata_threads = 0: expected an integer from 1 to 64; using the default, 2"
    if prosody.version == "13":
        assert ignored == [threads], r.stderr
        assert r.returncode == 1, f"{r.stdout}{r.stderr}"
        assert r.stdout.startswith("no metadata: ") and r.stdout.endswith("\nkind: timeout\n"), r.stdout
        assert took < 2.5
    else:
        assert ignored == [threads, 'Ignoring media_metadata_timeout = "1 second": expected a number of '
                           'seconds above 0, at most 600; using the default, 10'], r.stderr
        assert_photo(r, media)
        assert took >= 3


def test_library_found_through_plugin_paths_outside_a_checkout(prosody, media, tmp_path):
    """A copy of the script with no checkout around it, run from a directory of its own: the
    library is the one installed as a plain copy in a directory of the config's plugin_paths."""
    script = tmp_path / "bin" / "try-url"
    script.parent.mkdir()
    shutil.copy2(TRY_URL, script)
    installed = install_plugin(tmp_path / "plugins", PLUGIN, library_path())
    empty = tmp_path / "empty"
    empty.mkdir()

    def config(plugin_dir: Path) -> Path:
        path = tmp_path / f"{plugin_dir.name}.cfg.lua"
        path.write_text(f"""plugin_paths = {{ {lua_str(plugin_dir)} }}
Component "rooms.example" "muc"
	modules_enabled = {{ "muc_media_metadata" }}
	media_metadata_allow_private = true
""")
        return path

    url = media.url("photo.jpg")
    missing = run_try_url(prosody, "--config", str(config(empty)), "--component", "rooms.example", url,
                          script=script, cwd=tmp_path)
    if missing.returncode != 2:
        pytest.skip(f"a media_metadata library is installed on this machine outside plugin_paths:\n{missing.stderr}")
    lines = missing.stderr.splitlines()
    assert lines[0] == ("try-url: cannot load the media_metadata library: the module is installed in none of "
                        f"the plugin directories of {config(empty)}: install it (README, Install)"), missing.stderr
    assert lines[1] == "Tried:"
    assert f"\t{empty}/mod_muc_media_metadata/media_metadata.so: no such file" in lines
    assert missing.stdout == ""

    found = run_try_url(prosody, "--config", str(config(installed)), "--component", "rooms.example", url,
                        script=script, cwd=tmp_path)
    assert_photo(found, media)
