"""A real Dino (0.5, GTK 4) under Xvfb, driven through its own database (/work/shared/dino.md).

Dino has no command line or API for accounts, so: start it once to create
`$XDG_DATA_HOME/dino/dino.db`, stop it, insert the account (and the rooms to join) into that
database, start it again. It trusts only certificates from the system store, so it runs in
a private mount namespace where a copy of the store with the test CA appended is bind-mounted
over `/etc/ssl/certs/ca-certificates.crt` (root only; nothing outside changes).
"""

import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
TOOLS = ("dino", "Xvfb", "dbus-run-session", "unshare", "import", "openssl")


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def dino_version() -> str:
    """The installed Dino's Debian version ("0.5.0-1~bpo12+1"); `dino --version` needs a display."""
    if shutil.which("dpkg-query") is None:
        return ""
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "dino-im"],
                       capture_output=True, text=True, timeout=10)
    return r.stdout.strip() if r.returncode == 0 else ""


def _pdeathsig(cmd: list[str]) -> list[str]:
    # If the test run is killed outright, the child goes with it.
    return ["setpriv", "--pdeathsig", "KILL", "--", *cmd] if shutil.which("setpriv") else cmd


def _stop(proc: subprocess.Popen | None, timeout: float = 5.0) -> None:
    """SIGTERM the process group started with `proc`, then SIGKILL; reap it."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            pass


def make_test_ca(dest: Path, domains: list[str]) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for `domains` signed by it (P-256, 2 days).

    Returns (ca.crt, server.crt, server.key)."""
    dest.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = dest / "ca.key", dest / "ca.crt"
    key, csr, crt = dest / "server.key", dest / "server.csr", dest / "server.crt"
    ext = dest / "server.ext"
    ext.write_text("basicConstraints = critical, CA:FALSE\n"
                   "keyUsage = critical, digitalSignature, keyEncipherment\n"
                   "extendedKeyUsage = serverAuth\n"
                   "subjectAltName = " + ", ".join(f"DNS:{d}" for d in domains) + "\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for cmd in (
        ["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca_crt, "-days", "2",
         "-subj", "/CN=mod_muc_media_metadata test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", f"/CN={domains[0]}"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
         "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext],
    ):
        r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{r.stderr}")
    return ca_crt, crt, key


class Xvfb:
    """An X server in memory on a display number it picks itself (-displayfd)."""

    def __init__(self, width: int, height: int):
        self.size = (width, height)
        self.proc: subprocess.Popen | None = None
        self.display = ""

    def start(self, timeout: float = 10.0) -> "Xvfb":
        r, w = os.pipe()
        w_, h_ = self.size
        self.proc = subprocess.Popen(
            _pdeathsig(["Xvfb", "-displayfd", str(w), "-screen", "0", f"{w_}x{h_}x24",
                        "-nolisten", "tcp", "-noreset"]),
            pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        os.close(w)
        try:
            deadline = time.monotonic() + timeout
            buf = b""
            while not buf.endswith(b"\n"):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"Xvfb gave no display number within {timeout}s "
                                       f"(exit code {self.proc.poll()})")
                chunk = os.read(r, 16)
                if not chunk:
                    raise RuntimeError("Xvfb closed -displayfd without a display number")
                buf += chunk
        finally:
            os.close(r)
        self.display = ":" + buf.decode().strip()
        return self

    def screenshot(self, dest: Path, timeout: float = 20.0) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["import", "-display", self.display, "-window", "root", str(dest)],
                       check=True, capture_output=True, timeout=timeout)
        return dest

    def stop(self) -> None:
        _stop(self.proc)


class Dino:
    """One Dino process tree with its own HOME and XDG dirs under `home`.

    stderr (with `--print-xmpp`, all stanzas Dino sends and receives) goes to `log_file`."""

    def __init__(self, home: Path, display: str, ca_bundle: Path):
        self.home = home
        self.display = display
        self.ca_bundle = ca_bundle
        self.data = home / "data"
        self.db_path = self.data / "dino" / "dino.db"
        self.log_file = home / "dino.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def _env(self) -> dict:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("XDG_", "DBUS_", "WAYLAND_", "GTK_", "GDK_"))}
        runtime = self.home / "runtime"
        for d in (self.data, self.home / "config", self.home / "cache", runtime):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(runtime, 0o700)
        env.update(HOME=str(self.home), XDG_DATA_HOME=str(self.data),
                   XDG_CONFIG_HOME=str(self.home / "config"),
                   XDG_CACHE_HOME=str(self.home / "cache"), XDG_RUNTIME_DIR=str(runtime),
                   DISPLAY=self.display, GDK_BACKEND="x11", GSETTINGS_BACKEND="memory",
                   # No accessibility bus: nothing reads it, and it slows start-up.
                   NO_AT_BRIDGE="1", GTK_A11Y="none",
                   # Software rendering: Xvfb has no GPU.
                   LIBGL_ALWAYS_SOFTWARE="1", GSK_RENDERER="cairo",
                   G_MESSAGES_DEBUG=os.environ.get("DINO_DEBUG", ""))
        return env

    def start(self, print_xmpp: str = "show-ns;message|presence") -> None:
        """Start Dino; `print_xmpp` selects the stanzas it writes to its log."""
        self.starts += 1
        env = self._env()
        inner = (f"mount --bind {self.ca_bundle} {SYSTEM_CA_BUNDLE} && "
                 f"exec dbus-run-session -- dino --print-xmpp='{print_xmpp}'")
        with open(self.log_file, "ab") as log:
            log.write(f"\n===== start {self.starts} =====\n".encode())
            self.proc = subprocess.Popen(
                _pdeathsig(["unshare", "--mount", "--propagation", "private", "sh", "-c", inner]),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.home, env=env, start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        _stop(self.proc)

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    # --- its database ------------------------------------------------------------------

    def db(self) -> sqlite3.Connection:
        """A read-write connection to Dino's database (WAL mode: safe beside Dino)."""
        conn = sqlite3.connect(self.db_path, timeout=10)
        conn.row_factory = sqlite3.Row
        return conn

    def create_database(self, timeout: float = 30.0) -> None:
        """First start: wait until Dino has made its tables, then stop it."""
        self.start(print_xmpp="")
        deadline = time.monotonic() + timeout
        try:
            while True:
                if not self.alive():
                    raise RuntimeError(f"Dino exited ({self.proc.returncode}) on its first start:\n"
                                       + self.log_text()[-3000:])
                if self.db_path.exists():
                    try:
                        with self.db() as c:
                            tables = {r[0] for r in c.execute(
                                "SELECT name FROM sqlite_master WHERE type = 'table'")}
                        if {"account", "conversation", "file_transfer", "sfs_sources"} <= tables:
                            break
                    except sqlite3.Error:
                        pass  # still being created
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Dino made no database within {timeout}s:\n"
                                       + self.log_text()[-3000:])
                time.sleep(0.2)
            time.sleep(0.5)  # let it finish its first writes
        finally:
            self.stop()

    def add_account(self, bare_jid: str, resource: str, password: str) -> int:
        with self.db() as c:
            cur = c.execute("INSERT INTO account (bare_jid, resourcepart, password, alias, enabled) "
                            "VALUES (?, ?, ?, ?, 1)", (bare_jid, resource, password, bare_jid))
            return cur.lastrowid

    def add_room(self, account_id: int, room: str, nick: str) -> None:
        """An active groupchat conversation: Dino joins it when the account connects."""
        now = int(time.time())
        with self.db() as c:
            jid_id = c.execute("INSERT INTO jid (bare_jid) VALUES (?)", (room,)).lastrowid
            c.execute("INSERT INTO conversation (account_id, jid_id, resource, active, "
                      "active_last_changed, last_active, type, encryption, read_up_to_item, "
                      "notification, send_typing, send_marker) "
                      "VALUES (?, ?, ?, 1, ?, ?, 1, 0, -1, 0, 0, 0)",
                      (account_id, jid_id, nick, now, now))

    def set_window_size(self, width: int, height: int) -> None:
        """The main window's size at the next start (Dino keeps it in its `settings` table)."""
        with self.db() as c:
            for key, value in (("window_width", width), ("window_height", height),
                               ("window_maximized", "false")):
                c.execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                          "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, str(value)))

    def file_transfers(self) -> list[dict]:
        """Every file transfer Dino stored, each with its thumbnails, hashes and sources."""
        with self.db() as c:
            out = []
            for ft in c.execute("SELECT * FROM file_transfer ORDER BY id"):
                d = dict(ft)
                d["thumbnails"] = [dict(r) for r in c.execute(
                    "SELECT uri, mime_type, width, height FROM file_thumbnails WHERE id = ?", (ft["id"],))]
                d["hashes"] = [dict(r) for r in c.execute(
                    "SELECT algo, value FROM file_hashes WHERE id = ?", (ft["id"],))]
                d["sources"] = [dict(r) for r in c.execute(
                    "SELECT type, data FROM sfs_sources WHERE file_transfer_id = ?", (ft["id"],))]
                out.append(d)
            return out
