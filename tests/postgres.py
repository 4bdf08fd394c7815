"""A real PostgreSQL server for the tests (importable as `postgres`, like `helpers`): Debian's
binaries (`apt-get install postgresql`, under /usr/lib/postgresql/*/bin), a cluster made with
`initdb` in a temporary folder and started with `pg_ctl` on a free loopback port, once per
test session (the `pg_server` fixture in conftest.py), each test in a database of its own.

The cluster trusts loopback connections, except for the role PASSWORD_ROLE, which must give
its password (scram-sha-256): a test that uses it shows the password really is sent and never
shown. initdb refuses to run as root, so as root the cluster belongs to the `postgres` user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from helpers import unavailable

PASSWORD_ROLE = "trainform_pw"
PASSWORD = "Sekr1t-pw"


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder, or None."""
    found = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return found[-1] if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    bin: Path
    root: Path
    port: int
    owner: str | None  # run the server's programs as this user (None: as ourselves)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def sockets(self) -> Path:
        return self.root / "sock"

    def _as_owner(self, *argv: str) -> list[str]:
        return ["runuser", "-u", self.owner, "--", *argv] if self.owner else list(argv)

    def ctl(self, *args: str) -> None:
        subprocess.run(
            self._as_owner(
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.root / "server.log"),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.sockets}",
                *args,
            ),
            check=True,
            capture_output=True,
        )

    def conn_str(
        self, database: str = "postgres", user: str = "postgres", password: str = ""
    ) -> str:
        auth = f"{user}:{password}" if password else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.conn_str(database), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, owner: str = "postgres") -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.admin(f'CREATE DATABASE "{name}" OWNER "{owner}"')
        return name

    def restart(self) -> None:
        """Restart the server, ending every session at once (`pg_ctl restart -m fast`)."""
        self.ctl("restart", "-m", "fast")

    def stop(self) -> None:
        subprocess.run(
            self._as_owner(
                str(self.bin / "pg_ctl"), "-D", str(self.data), "stop", "-m", "immediate"
            ),
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def start_server() -> PgServer:
    """initdb and start a cluster; skips (fails under CI=true) without PostgreSQL."""
    bin_dir = pg_bin()
    if bin_dir is None:
        unavailable(
            "PostgreSQL is not installed: apt-get install postgresql "
            "(or run scripts/install-test-deps)"
        )
        raise AssertionError("unreachable")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed: pip install -e '.[test]'")
    owner = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root needs the `postgres` user (apt-get install postgresql)")
        owner = "postgres"
    root = Path(tempfile.mkdtemp(prefix="trainform-pg-"))
    os.chmod(root, 0o755)
    server = PgServer(bin_dir, root, _free_port(), owner)
    server.sockets.mkdir()
    if owner:
        uid = pwd.getpwnam(owner).pw_uid
        for p in (root, server.sockets):
            os.chown(p, uid, -1)
    try:
        subprocess.run(
            server._as_owner(
                str(bin_dir / "initdb"),
                "-D",
                str(server.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ),
            check=True,
            capture_output=True,
        )
        hba = server.data / "pg_hba.conf"
        hba.write_text(
            "local all all trust\n"
            f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n"
        )
        server.ctl("start")
    except subprocess.CalledProcessError as exc:
        log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
        server.stop()
        raise RuntimeError(
            f"PostgreSQL did not start: {exc.stderr.decode(errors='replace')}\n{log}"
        ) from None
    server.admin(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}'")
    return server
