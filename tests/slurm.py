"""A real two-node Slurm cluster for the tests (importable as `slurm`, like `helpers`): Debian's
`slurm-wlm` and `munge` (scripts/install-test-deps installs them), configured in a temporary
folder and listening on free loopback ports, once per test session (the `slurm_cluster`
fixture in conftest.py). No system service is used or touched.

- munged runs as the `munge` user on a socket of its own (`munge/sock`) with a generated key.
- slurmctld and two slurmd run as root, all in the foreground as children of the test process:
  Debian's build runs several slurmd on one host (`slurmd -N n1`, `slurmd -N n2`), each node with
  `NodeAddr=127.0.0.1` and a port of its own, so multi-node jobs need no containers.
- Clients (sinfo, sbatch, squeue, ...) find the cluster through `SLURM_CONF` in `SlurmCluster.env`.
- Partitions: `debug` (the default, both nodes) and `gpu` (n2 only, MaxTime 1 hour).
- No accounting by default: `AccountingStorageType=accounting_storage/none`, so `sacct` answers
  "accounting storage is disabled" and a finished job is known only to `scontrol show job` until
  MinJobAge.
- With `start_cluster(accounting=True)` (the `slurm_accounting_cluster` fixture), slurmdbd keeps
  accounting in a MariaDB server of its own (Debian's `mariadb-server` and `slurmdbd`):
  `mariadb-install-db` makes a data folder in the cluster's folder and `mariadbd` runs as the
  `mysql` user on a free loopback port (and a socket of its own); slurmdbd runs as root and
  reaches it over TCP as a database user with a generated password (`slurmdbd.conf`, mode 600).
  sacctmgr then adds the cluster, accounts `proj42` and `other`, QoS `normal` and `high`, and
  root (and `tfuser`, if that user exists) in `proj42` with both QoS. Associations and QoS are
  enforced (`AccountingStorageEnforce=associations,limits,qos`), as on a real centre.
  `MinJobAge=10` there: slurmctld forgets an ended job within about a minute (its purge runs
  every 60 s) and only sacct knows it after that.

`proctrack/linuxproc` and `task/none` need no cgroup setup; jobs run as the submitting user
(root, or another local user that can read the folder, see `SlurmCluster.env`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from helpers import free_ports

NODES = ("n1", "n2")
PROGRAMS = ("munged", "munge", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scontrol")
ACCOUNTING_PROGRAMS = ("slurmdbd", "sacctmgr", "sacct", "mariadbd", "mariadb-install-db", "mariadb")
ACCOUNTS = ("proj42", "other")
QOS = ("normal", "high")
ACCOUNT_USERS = ("root", "tfuser")  # associated to proj42 with every QoS (tfuser if it exists)
START_TIMEOUT = 60.0  # seconds for munged, then for both nodes to be idle in sinfo


def missing_programs(accounting: bool = False) -> list[str]:
    """The programs the cluster (with `accounting`: and its slurmdbd and MariaDB) needs that
    are not installed (searched in PATH and /usr/sbin)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    wanted = PROGRAMS + (ACCOUNTING_PROGRAMS if accounting else ())
    return [p for p in wanted if shutil.which(p, path=path) is None]


def _this_machine() -> tuple[int, int]:
    """CPUs and RealMemory (MiB) as slurmd itself sees them (`slurmd -C`): a node configured
    with more than that is drained at registration."""
    out = subprocess.run(
        [_sbin("slurmd"), "-C"], check=True, capture_output=True, text=True, timeout=30
    ).stdout
    cpus = re.search(r"\bCPUs=(\d+)", out)
    memory = re.search(r"\bRealMemory=(\d+)", out)
    if cpus is None or memory is None:
        raise RuntimeError(f"unexpected `slurmd -C` output: {out[:500]!r}")
    return int(cpus.group(1)), int(memory.group(1))


def _sbin(name: str) -> str:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    found = shutil.which(name, path=path)
    if found is None:
        raise RuntimeError(f"{name} is not installed (run scripts/install-test-deps)")
    return found


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"--- {path.name}: (none)"
    return f"--- {path.name}:\n" + "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class Job:
    """One line of squeue: state (PENDING, RUNNING, COMPLETED, TIMEOUT, ...), the reason it
    waits or ended (`None` when there is none), and its node list (empty while pending)."""

    id: str
    state: str
    reason: str
    nodes: str


@dataclass
class SlurmCluster:
    """A running cluster in `root` (see the module docstring). `stop()` ends it; it is not
    restartable after that."""

    root: Path
    ctld_port: int
    slurmd_port: int
    node_ports: dict[str, int]
    cpus: int
    memory_mb: int
    accounting: bool = False
    dbd_port: int = 0
    mysql_port: int = 0
    daemons: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The ClusterName (also the cluster's name in the accounting database)."""
        return "tfacct" if self.accounting else "tftest"

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        return self.root / "munge" / "sock"

    @property
    def logs(self) -> Path:
        return self.root / "log"

    @property
    def env(self) -> dict[str, str]:
        """This process's environment plus SLURM_CONF: what a client program (sbatch, squeue,
        scontrol, ...) needs to talk to this cluster. Jobs inherit it (sbatch exports all)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(
        self, *args: str, check: bool = True, timeout: float = 30, user: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a client command (`run("squeue", "-h")`) against this cluster, as `user` when
        given (through runuser). Raises RuntimeError, with its output, when `check` and it
        fails."""
        argv = ["runuser", "-u", user, "--", *args] if user else list(args)
        env = self.env
        if user:
            env["HOME"] = pwd.getpwnam(user).pw_dir
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} exited with {proc.returncode}:\n{proc.stdout}{proc.stderr}"
            )
        return proc

    def submit(self, *args: str, user: str | None = None) -> str:
        """`sbatch --parsable ARGS` (as `user` when given); returns the job id."""
        return self.run("sbatch", "--parsable", *args, user=user).stdout.strip().split(";")[0]

    def job(self, job_id: str) -> Job | None:
        """The job as slurmctld knows it now (squeue, finished jobs included until MinJobAge),
        or None if it does not know it."""
        out = self.run(
            "squeue",
            "--noheader",
            "--states=all",
            f"--jobs={job_id}",
            "--format=%T|%r|%N",
            check=False,
        ).stdout.strip()
        if not out:
            return None
        state, reason, nodes = out.splitlines()[0].split("|", 2)
        return Job(job_id, state, reason, nodes)

    def write_conf(self) -> None:
        r = self.root
        lines = [
            f"ClusterName={self.name}",
            "SlurmctldHost=localhost(127.0.0.1)",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={self.slurmd_port}",
            "AuthType=auth/munge",
            f"AuthInfo=socket={self.munge_socket}",
            "CredType=cred/munge",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={r}/state",
            f"SlurmdSpoolDir={r}/spool/%n",
            f"SlurmctldPidFile={r}/slurmctld.pid",
            f"SlurmdPidFile={r}/slurmd-%n.pid",
            f"SlurmctldLogFile={self.logs}/slurmctld.log",
            f"SlurmdLogFile={self.logs}/slurmd-%n.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "ReturnToService=2",
            "MpiDefault=none",
            "JobCompType=jobcomp/none",
            *(
                [
                    "AccountingStorageType=accounting_storage/slurmdbd",
                    "AccountingStorageHost=127.0.0.1",
                    f"AccountingStoragePort={self.dbd_port}",
                    # With auth/munge this is the munged socket for slurmdbd connections
                    # (AuthInfo's is not used for them).
                    f"AccountingStoragePass={self.munge_socket}",
                    "AccountingStorageEnforce=associations,limits,qos",
                    "JobAcctGatherType=jobacct_gather/none",
                ]
                if self.accounting
                else ["AccountingStorageType=accounting_storage/none"]
            ),
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            "InactiveLimit=0",
            # With accounting, ended jobs leave slurmctld soon, so that tests reach sacct.
            f"MinJobAge={10 if self.accounting else 300}",
            "KillWait=5",
        ]
        for name, port in self.node_ports.items():
            lines.append(
                f"NodeName={name} NodeHostname=localhost NodeAddr=127.0.0.1 Port={port} "
                f"CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN"
            )
        lines += [
            f"PartitionName=debug Nodes={','.join(NODES)} Default=YES MaxTime=INFINITE State=UP",
            "PartitionName=gpu Nodes=n2 MaxTime=01:00:00 State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def _spawn(self, name: str, argv: list[str], user: str | None = None) -> None:
        out = open(self.logs / f"{name}.out", "ab")  # noqa: SIM115 (the child keeps it)
        with out:
            self.daemons[name] = subprocess.Popen(
                argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                user=user,
                group=user,
                # Its own session: a Ctrl-C meant for pytest does not reach it first.
                start_new_session=True,
            )

    def start_munged(self) -> None:
        d = self.munge_socket.parent
        d.mkdir(mode=0o755)
        key = d / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        munge = pwd.getpwnam("munge")
        for p in (d, key):
            os.chown(p, munge.pw_uid, munge.pw_gid)
        self._spawn(
            "munged",
            [
                _sbin("munged"),
                "--foreground",
                "--force",  # the temporary folder is under world-writable /tmp
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--log-file={d / 'log'}",
                f"--pid-file={d / 'pid'}",
                f"--seed-file={d / 'seed'}",
            ],
            user="munge",
        )
        self._wait(
            lambda: self.munge_socket.exists() and self._munge_answers(),
            "munged did not answer",
            [d / "log", self.logs / "munged.out"],
        )

    def _munge_answers(self) -> bool:
        cred = subprocess.run(
            ["munge", "-S", str(self.munge_socket), "-n"], capture_output=True, timeout=10
        )
        return cred.returncode == 0

    @property
    def mysql_socket(self) -> Path:
        return self.root / "mysql" / "sock"

    def sql(self, statement: str) -> None:
        """Run SQL as MariaDB's root over its socket (root's password-less local login)."""
        argv = ["mariadb", "--no-defaults", f"--socket={self.mysql_socket}", "-u", "root"]
        proc = subprocess.run([*argv, "-e", statement], capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise RuntimeError(f"mariadb: {statement[:80]!r} failed: {proc.stderr[-500:]}")

    def start_mariadb(self) -> str:
        """A fresh MariaDB server in `mysql/` (data and socket), run by the `mysql` user on
        127.0.0.1:mysql_port; returns the password of the `slurm` database user it creates."""
        d = self.mysql_socket.parent
        d.mkdir(mode=0o750)
        mysql = pwd.getpwnam("mysql")
        os.chown(d, mysql.pw_uid, mysql.pw_gid)
        install = subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={d / 'data'}",
                "--user=mysql",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if install.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed:\n{install.stdout}{install.stderr}")
        self._spawn(
            "mariadbd",
            [
                _sbin("mariadbd"),
                "--no-defaults",
                f"--datadir={d / 'data'}",
                f"--socket={self.mysql_socket}",
                f"--pid-file={d / 'pid'}",
                f"--port={self.mysql_port}",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=64M",
                # slurmdbd's own advice (it warns below these): its tables are large rows
                "--innodb-log-file-size=64M",
                "--innodb-lock-wait-timeout=900",
            ],
            user="mysql",
        )
        self._wait(
            lambda: self.mysql_socket.exists(),
            "mariadbd did not start",
            [self.logs / "mariadbd.out"],
        )
        password = secrets.token_hex(16)
        self.sql(
            f"CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{password}';"
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
        )
        return password

    def start_slurmdbd(self, password: str) -> None:
        """slurmdbd as root on 127.0.0.1:dbd_port, storing into the MariaDB server; blocks
        until sacctmgr reaches it."""
        conf = self.root / "slurmdbd.conf"  # slurmdbd reads it beside SLURM_CONF
        conf.touch(mode=0o600)  # slurmdbd refuses a configuration others can read
        conf.write_text(
            "\n".join(
                [
                    "AuthType=auth/munge",
                    f"AuthInfo=socket={self.munge_socket}",
                    "DbdHost=localhost",
                    "DbdAddr=127.0.0.1",
                    f"DbdPort={self.dbd_port}",
                    "SlurmUser=root",
                    f"LogFile={self.logs}/slurmdbd.log",
                    f"PidFile={self.root}/slurmdbd.pid",
                    "StorageType=accounting_storage/mysql",
                    "StorageHost=127.0.0.1",
                    f"StoragePort={self.mysql_port}",
                    "StorageUser=slurm",
                    f"StoragePass={password}",
                    "StorageLoc=slurm_acct_db",
                ]
            )
            + "\n"
        )
        self._spawn("slurmdbd", [_sbin("slurmdbd"), "-D"])
        self._wait(
            lambda: self.run("sacctmgr", "-nP", "show", "cluster", check=False).returncode == 0,
            "slurmdbd did not answer sacctmgr",
            [self.logs / "slurmdbd.log", self.logs / "slurmdbd.out"],
        )

    def add_associations(self) -> None:
        """The cluster, accounts, QoS and users the module docstring lists (sacctmgr -i)."""
        users = []
        for user in ACCOUNT_USERS:
            with contextlib.suppress(KeyError):
                users.append(pwd.getpwnam(user).pw_name)
        self.run("sacctmgr", "-i", "add", "cluster", self.name)
        for qos in QOS:
            if qos != "normal":  # slurmdbd creates `normal` itself
                self.run("sacctmgr", "-i", "add", "qos", qos)
        for account in ACCOUNTS:
            self.run("sacctmgr", "-i", "add", "account", account, f"cluster={self.name}")
        self.run(
            "sacctmgr",
            "-i",
            "add",
            "user",
            ",".join(users),
            "account=proj42",
            f"cluster={self.name}",
            f"qos={','.join(QOS)}",
            "defaultqos=normal",
        )

    def start_controller(self, fresh: bool) -> None:
        """Start slurmctld; `fresh` discards saved state (`-c`), otherwise it recovers its jobs
        from StateSaveLocation, as after a crash or restart."""
        self._spawn("slurmctld", [_sbin("slurmctld"), "-D", *(["-c", "-i"] if fresh else [])])

    def stop_controller(self, timeout: float = 30) -> None:
        """SIGTERM slurmctld (it saves state and exits) and wait for it; the nodes and their
        jobs keep running. Raises RuntimeError if it does not exit in time."""
        proc = self.daemons.pop("slurmctld")
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError(
                f"slurmctld did not exit within {timeout:g} s of SIGTERM\n"
                + _tail(self.logs / "slurmctld.log")
            ) from None

    def restart_controller(self) -> None:
        """Stop slurmctld and start it again on the same state folder; blocks until it answers
        `scontrol ping` (up to START_TIMEOUT)."""
        self.stop_controller()
        self.start_controller(fresh=False)
        self._wait(
            lambda: "is UP" in self.run("scontrol", "ping", check=False).stdout,
            "slurmctld did not come back",
            [self.logs / "slurmctld.log"],
        )

    def start_nodes(self) -> None:
        for name in NODES:
            (self.root / "spool" / name).mkdir(parents=True)
            self._spawn(f"slurmd-{name}", [_sbin("slurmd"), "-D", "-N", name])

    def node_states(self) -> dict[str, str]:
        """Node name → its state in sinfo (`idle`, `alloc`, `mix`, `down*`, ...)."""
        out = self.run("sinfo", "--noheader", "--Node", "--format=%N %t", check=False).stdout
        return dict(line.split(None, 1) for line in out.splitlines() if " " in line)

    def wait_idle(self) -> None:
        """Block until every node is idle (up to START_TIMEOUT), else RuntimeError with the
        daemons' log tails."""
        self._wait(
            lambda: all(self.node_states().get(n) == "idle" for n in NODES),
            "the nodes did not become idle",
            [self.logs / "slurmctld.log", *(self.logs / f"slurmd-{n}.log" for n in NODES)],
        )

    def _wait(self, ready: Callable[[], bool], what: str, logs: list[Path]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            dead = [n for n, p in self.daemons.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = f"exited: {', '.join(dead)}" if dead else f"{START_TIMEOUT:g} s passed"
                tails = "\n".join(_tail(p) for p in logs)
                raise RuntimeError(f"Slurm test cluster in {self.root}: {what} ({why})\n{tails}")
            time.sleep(0.2)

    def _job_processes(self) -> list[int]:
        """Processes this cluster started for jobs (slurmstepd and job steps): the ones whose
        environment names this cluster's SLURM_CONF (they outlive slurmd by design)."""
        marker = f"SLURM_CONF={self.conf}".encode()
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0"):
                found.append(int(entry))
        return found

    def stop(self) -> None:
        """Cancel every job, `scontrol shutdown` (slurmctld and the slurmd), stop munged, kill
        whatever of this cluster's own processes is left, and delete the folder. Idempotent."""
        if self.daemons.get("slurmctld") is not None:
            jobs = self.run("squeue", "--noheader", "--format=%i", check=False).stdout.split()
            if jobs:
                self.run("scancel", *jobs, check=False)
            self.run("scontrol", "shutdown", check=False)
        deadline = time.monotonic() + 30
        for name, proc in list(self.daemons.items()):
            if not name.startswith(("slurmctld", "slurmd-")):  # the ones shutdown ends
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        ours = {p.pid for p in self.daemons.values()}
        for pid in set(self._job_processes()) - ours:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # In the reverse of the start order: slurmdbd before MariaDB, munged last (the others
        # needed it to shut down).
        for proc in reversed(list(self.daemons.values())):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.daemons.clear()
        shutil.rmtree(self.root, ignore_errors=True)


def start_cluster(folder: Path | None = None, accounting: bool = False) -> SlurmCluster:
    """Start munged, slurmctld and two slurmd in a new folder (under `folder`, default the
    system's temporary folder) and block until both nodes are idle; with `accounting`, first
    MariaDB and slurmdbd, and the accounts, QoS and users the module docstring lists. Raises
    RuntimeError with the daemons' log tails if they do not come up (everything started is
    stopped again). Needs root (the daemons run as root, munged as `munge`, mariadbd as
    `mysql`) and the programs in PROGRAMS (and ACCOUNTING_PROGRAMS)."""
    root = Path(tempfile.mkdtemp(prefix="trainform-slurm-", dir=folder))
    # Readable by all: other local users' clients read slurm.conf and reach the munge socket.
    root.chmod(0o755)
    ctld, slurmd, dbd, mysql, *node_ports = free_ports(4 + len(NODES))
    cpus, memory = _this_machine()
    cluster = SlurmCluster(root, ctld, slurmd, dict(zip(NODES, node_ports)), cpus, memory)
    if accounting:
        cluster.accounting, cluster.dbd_port, cluster.mysql_port = True, dbd, mysql
    try:
        for sub in ("log", "state", "spool"):
            (root / sub).mkdir()
        cluster.write_conf()
        cluster.start_munged()
        if accounting:
            cluster.start_slurmdbd(cluster.start_mariadb())
            cluster.add_associations()
        cluster.start_controller(fresh=True)
        cluster.start_nodes()
        cluster.wait_idle()
    except BaseException:
        cluster.stop()
        raise
    return cluster
