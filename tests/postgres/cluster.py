"""A throwaway PostgreSQL server for tests and benchmarks: initdb + pg_ctl, on a Unix socket only.

with Cluster.start() as cluster:             # ~2 s; a private socket directory, no TCP port
    conninfo = cluster.create_database("t1")  # postgresql://postgres@/t1?host=...&port=...

The data and the socket live in one temporary directory. As root (CI),
initdb refuses to run, so the server runs as the ``postgres`` system user
(Debian's package creates it). ``Cluster.start`` raises ``ClusterUnavailable``
with a one-line reason when PostgreSQL's programs are missing.
"""

from __future__ import annotations

import getpass
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Self

import psycopg

__all__ = ["Cluster", "ClusterUnavailable", "find_bin_dir"]

_PORT = 5432  # only names the socket file inside our private directory; no TCP listener


class ClusterUnavailable(RuntimeError):
    """PostgreSQL cannot be started here; the message says why in one line."""


def find_bin_dir() -> Path | None:
    """The folder holding initdb, pg_ctl and pg_dump: Debian keeps them off PATH, in /usr/lib/postgresql/N/bin."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and Path(found).with_name("initdb").exists() else None


class Cluster:
    def __init__(self, bin_dir: Path, directory: Path, run_as: str | None, user: str) -> None:
        self.bin_dir = bin_dir
        self.directory = directory
        self._run_as = run_as
        self.user = user

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / program), *args]
        if self._run_as:
            command = ["runuser", "-u", self._run_as, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd="/")

    @classmethod
    def start(cls) -> Self:
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise ClusterUnavailable("PostgreSQL is not installed (no initdb/pg_ctl): run scripts/setup as root")
        run_as = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise ClusterUnavailable("running as root and there is no 'postgres' user to run PostgreSQL") from None
            run_as, user = "postgres", "postgres"
        else:
            user = getpass.getuser()
        directory = Path(tempfile.mkdtemp(prefix="stigmer-pg-"))
        if run_as:
            os.chown(directory, owner.pw_uid, owner.pw_gid)
        cluster = cls(bin_dir, directory, run_as, user)
        data = str(directory / "data")
        steps = [
            ("initdb", "-D", data, "-A", "trust", "-U", user, "--no-sync", "-E", "UTF8", "--locale", "C"),
            ("pg_ctl", "-D", data, "-l", str(directory / "server.log"), "-w", "-t", "60", "start",
             "-o", f"-k {directory} -p {_PORT} -c listen_addresses='' -c fsync=off -c max_connections=200"),
        ]  # fmt: skip
        for step in steps:
            result = cluster._run(*step)
            if result.returncode != 0:
                log = directory / "server.log"
                detail = (result.stderr.strip() or (log.read_text() if log.exists() else "")).splitlines()[-1:]
                shutil.rmtree(directory, ignore_errors=True)
                raise ClusterUnavailable(f"{step[0]} failed: {detail[0] if detail else result.returncode}")
        return cluster

    def conninfo(self, dbname: str) -> str:
        return f"postgresql://{self.user}@/{dbname}?host={self.directory}&port={_PORT}"

    def create_database(self, name: str) -> str:
        """Creates database ``name`` (empty) and returns its connection URI."""
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.conninfo(name)

    def require_password(self, role: str, password: str) -> None:
        """Creates login role ``role`` whose socket connections must give ``password`` (SCRAM)."""
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'")
        hba = self.directory / "data" / "pg_hba.conf"
        hba.write_text(f"local all {role} scram-sha-256\n" + hba.read_text())
        result = self._run("pg_ctl", "-D", str(self.directory / "data"), "reload")
        assert result.returncode == 0, result.stderr

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
