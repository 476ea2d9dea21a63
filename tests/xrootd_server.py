"""A real XRootD server on the loopback address for the tests of root:// inputs.

Debian's ``xrootd-server`` refuses to run as root, so as root it runs as ``nobody``. It
serves ``<scratch>/served/<EXPORT>/...`` as ``root://127.0.0.1:<port>//<EXPORT>/...``: the
URL's path exists on the server only (``oss.localroot``), so a file that ROOT opened as a
local file instead of asking the server would not be found. The server's log records every
open (``ofs.trace open``), so tests can also check that their files went through it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Optional

EXPORT = f"/htt-tmva-xrootd-{uuid.uuid4().hex[:8]}"


class XRootDServer:
    """A running ``xrootd`` process; :meth:`publish` puts files where it serves them."""

    def __init__(self, scratch: Path, port: int, process: subprocess.Popen, log: Path):
        self.scratch, self.port, self.process, self.log = scratch, port, process, log
        self.served = scratch / "served" / EXPORT.lstrip("/")

    def url(self, relative: str = "") -> str:
        return f"root://127.0.0.1:{self.port}/{EXPORT}/{relative}"

    def local(self, relative: str) -> Path:
        """Where the server keeps ``relative`` (for checks only; the code gets URLs)."""
        return self.served / relative

    def publish(self, source: Path, relative: str) -> str:
        """Copy ``source`` to the server as ``relative``; return its URL."""
        target = self.served / relative
        _make_dirs(target.parent, self.served)
        shutil.copyfile(source, target)
        target.chmod(0o644)
        return self.url(relative)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def opened(self, relative: str, timeout: float = 5.0) -> bool:
        """Whether the server's log shows an open of ``relative`` (waits for the log)."""
        needle = f"ofs_open: 0-600 fn={EXPORT}/{relative}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(line.rstrip().endswith(needle) for line in self.log_text().splitlines()):
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck server
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.scratch, ignore_errors=True)


def _make_dirs(path: Path, top: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    while True:
        path.chmod(0o755)
        if path == top or top not in path.parents:
            break
        path = path.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_listening(port: int, process: subprocess.Popen, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.2)
    return False


def start_server() -> tuple[Optional[XRootDServer], str]:
    """Start the server; return it, or None and the reason why it cannot run here."""
    binary = shutil.which("xrootd")
    if binary is None:
        return None, (
            "no xrootd server here (Debian/Ubuntu: apt-get install xrootd-server; "
            ".ci/run installs it where apt-get works)"
        )
    run_as: dict = {}
    if os.geteuid() == 0:  # xrootd refuses to run as root
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            return None, "running as root and there is no user 'nobody' to run xrootd as"
        run_as = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
    # not under pytest's tmp folders: those are private to this user (mode 0700)
    scratch = Path(tempfile.mkdtemp(prefix="htt_tmva_xrootd_"))
    scratch.chmod(0o755)
    admin = scratch / "admin"
    admin.mkdir()
    _make_dirs(scratch / "served" / EXPORT.lstrip("/"), scratch)
    if run_as:
        os.chown(admin, run_as["user"], run_as["group"])
    admin.chmod(stat.S_IRWXU)
    port = _free_port()
    config = scratch / "xrootd.cfg"
    config.write_text(
        f"xrd.port {port}\n"
        "xrd.network nodnr\n"
        "xrd.allow host localhost\n"  # connections from this machine only
        f"all.export {EXPORT} r/o\n"
        f"oss.localroot {scratch / 'served'}\n"
        f"all.adminpath {admin}\n"
        f"all.pidpath {admin}\n"
        "ofs.trace open\n"
    )
    log = admin / "xrootd.log"
    process = subprocess.Popen(
        [binary, "-c", str(config), "-l", str(log)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        **run_as,
    )
    if not _wait_listening(port, process):
        process.terminate()
        try:
            _, err = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            process.kill()
            _, err = process.communicate()
        logs = "".join(p.read_text(errors="replace") for p in admin.rglob("*.log"))
        shutil.rmtree(scratch, ignore_errors=True)
        tail = (err.decode(errors="replace") + logs).strip().splitlines()[-5:]
        return None, "xrootd did not start: " + " | ".join(tail)
    server = XRootDServer(scratch, port, process, log)
    return server, ""
