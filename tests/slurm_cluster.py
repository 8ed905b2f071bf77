"""A real single-node Slurm (Debian's slurm-wlm 22.05) started for the tests, all state in a
scratch folder; see /work/shared/slurm-notes.md for why each setting is there.

slurmdbd + MariaDB are needed: without accounting, sacct fails and submitit never learns that a
cancelled job ended (its result() hangs). `AuthInfo=cred_expire=5` lets a requeued job start
again after about 6 s instead of about 2 minutes. Daemons are stopped by their pid files, jobs
first (slurmd does not kill running job steps).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.sweep.jobstate import pid_alive

PACKAGES = "slurmctld slurmd slurm-client munge slurmdbd mariadb-server"

SLURM_CONF = """\
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobCompType=jobcomp/none
SwitchType=switch/none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation={scratch}/state/ctld
SlurmdSpoolDir={scratch}/state/d
SlurmctldPidFile={scratch}/run/slurmctld.pid
SlurmdPidFile={scratch}/run/slurmd.pid
SlurmctldLogFile={scratch}/log/slurmctld.log
SlurmdLogFile={scratch}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmctldPort=6817
SlurmdPort=6818
SchedulerType=sched/backfill
AuthInfo=cred_expire=5
SchedulerParameters=sched_interval=1,bf_interval=1,sched_min_interval=0,batch_sched_delay=0
MessageTimeout=10
KillWait=5
MinJobAge=300
InactiveLimit=0
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs=8 RealMemory=16000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""

SLURMDBD_CONF = """\
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
LogFile={scratch}/log/slurmdbd.log
PidFile={scratch}/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
"""

MUNGE_PID = Path("/run/munge/munged.pid")
MARIADB_PID = Path("/run/mysqld/mysqld.pid")


def missing() -> str | None:
    """Why a local cluster cannot start here (None when it can)."""
    for program in ("slurmctld", "slurmd", "sbatch", "slurmdbd", "munged", "mariadbd"):
        if shutil.which(program) is None and not Path(f"/usr/sbin/{program}").exists():
            return (f"{program} is not installed (apt-get install -y --no-install-recommends "
                    f"{PACKAGES})")
    if os.geteuid() != 0:
        return "starting Slurm daemons needs root"
    return None


def _wait(check, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def _ok(*command: str, env: dict[str, str] | None = None) -> bool:
    return subprocess.run(command, capture_output=True, env=env).returncode == 0


def _stop_pid_file(path: Path) -> None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return
    if pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        try:
            _wait(lambda: not pid_alive(pid), f"pid {pid} ({path.name}) to exit", timeout=30)
        except RuntimeError:
            os.kill(pid, signal.SIGKILL)
    path.unlink(missing_ok=True)


@dataclass
class LocalSlurm:
    scratch: Path
    startup_seconds: float = 0.0

    @property
    def conf(self) -> Path:
        return self.scratch / "etc" / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self) -> float:
        """Start munge, MariaDB, slurmdbd, slurmctld, slurmd; returns the seconds it took."""
        started = time.monotonic()
        scratch = self.scratch
        for folder in ("etc", "state/ctld", "state/d", "run", "log"):
            (scratch / folder).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(SLURM_CONF.format(scratch=scratch))
        dbd = scratch / "etc" / "slurmdbd.conf"
        dbd.write_text(SLURMDBD_CONF.format(scratch=scratch))
        dbd.chmod(0o600)
        env = self.env
        subprocess.run(["install", "-d", "-o", "munge", "-g", "munge", "-m", "755",
                        "/run/munge"], check=True)
        if not (MUNGE_PID.is_file() and pid_alive(int(MUNGE_PID.read_text().strip() or 0))):
            subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
        subprocess.run(["install", "-d", "-o", "mysql", "-g", "root", "-m", "755",
                        "/run/mysqld"], check=True)
        with open(scratch / "log" / "mariadb.log", "wb") as log:
            subprocess.Popen(
                ["/usr/sbin/mariadbd", "--user=mysql", "--skip-networking",
                 "--socket=/run/mysqld/mysqld.sock", f"--pid-file={MARIADB_PID}"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        _wait(lambda: _ok("mariadb", "-uroot", "-e", "select 1"), "MariaDB")
        subprocess.run(["mariadb", "-uroot", "-e",
                        "DROP DATABASE IF EXISTS slurm_acct_db; CREATE USER IF NOT EXISTS "
                        "'slurm'@'localhost' IDENTIFIED BY 'slurmpw'; GRANT ALL ON "
                        "slurm_acct_db.* TO 'slurm'@'localhost';"], check=True)
        subprocess.run(["slurmdbd"], check=True, env=env)
        _wait(lambda: _ok("sacctmgr", "-n", "show", "cluster", env=env), "slurmdbd")
        subprocess.run(["slurmctld"], check=True, env=env)
        subprocess.run(["slurmd", "-N", "localhost"], check=True, env=env)

        def idle() -> bool:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                                 env=env)
            return out.stdout.strip() == "idle"

        _wait(idle, "the node to be idle")
        return time.monotonic() - started

    def stop(self) -> None:
        """Cancel every job, then stop the daemons by their pid files, in dependency order."""
        env = self.env
        run = self.scratch / "run"
        ctld = run / "slurmctld.pid"
        if ctld.is_file():
            queue = subprocess.run(["squeue", "-h", "-o", "%A"], capture_output=True,
                                   text=True, env=env)
            ids = queue.stdout.split()
            if ids:
                subprocess.run(["scancel", *ids], capture_output=True, env=env)
                try:
                    _wait(lambda: not subprocess.run(
                        ["squeue", "-h", "-o", "%A"], capture_output=True, text=True,
                        env=env).stdout.split(), "the queue to empty", timeout=30)
                except RuntimeError:
                    pass
        for pid_file in (run / "slurmd.pid", ctld, run / "slurmdbd.pid", MARIADB_PID,
                         MUNGE_PID):
            _stop_pid_file(pid_file)
