"""Test stores: one real PostgreSQL server per session, and MLflow stores migrated once per session.

    .venv/bin/python -m pytest -q tests/unit/schedule/test_schedule.py tests/recipes/test_postgres_tracking.py

Registered from tests/conftest.py (`pytest_plugins`). Fixtures:
  postgres          the session's server (Debian's `postgresql` package: initdb + postgres on 127.0.0.1, a free
                    port, its unix socket and data in a temp dir; as root it runs as the `postgres` system user);
                    stopped by its PID at the end of the session. `.ci/run` installs the package where it is
                    missing; a machine without it (or without the psycopg driver) skips with the reason shown.
  claims_db         a claims database URL, parametrized: a sqlite file, and a PostgreSQL database
                    emptied for each test.
  mlflow_pg_uri     one MLflow tracking database on the server, migrated once per session (experiments are
                    named per test, so sharing it is sound).
  mlflow_sqlite_uri a fresh sqlite MLflow store for this test: a copy of one migrated per session (a fresh
                    migration costs seconds each time).
"""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

SUPERUSER = "workbench"  # initdb's superuser; trust authentication, bound to 127.0.0.1 only
TIMINGS = {}  # measured set-up costs, printed at the end of the session


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    postgres = shutil.which("postgres")
    return Path(postgres).parent if postgres else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """A throw-away cluster: `start()`, `stop()` (by PID, fast shutdown), `url(db)`, `create_database(name)`."""

    def __init__(self, bindir: Path):
        self.bindir, self.port, self.proc = bindir, _free_port(), None
        self.root = Path(tempfile.mkdtemp(prefix="workbench-pg-"))
        self.as_user = []  # postgres refuses to run as root: drop to Debian's `postgres` user with setpriv (an exec, so
        if os.geteuid() == 0:  # the PID we hold is the server itself)
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.as_user = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
        self.log = self.root / "server.log"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
        subprocess.run(self.as_user + [str(bindir / "initdb"), "-D", str(self.root / "data"), "-U", SUPERUSER,
                                       "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"],
                       env=env, check=True, capture_output=True, text=True, timeout=120)

    def start(self, wait_s: float = 60.0) -> None:
        # fsync and friends off: a test cluster that never needs to survive a power cut starts and writes faster
        settings = ["fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=200"]
        cmd = self.as_user + [str(self.bindir / "postgres"), "-D", str(self.root / "data"), "-h", "127.0.0.1",
                              "-p", str(self.port), "-k", str(self.root)] + [a for s in settings for a in ("-c", s)]
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={"LC_ALL": "C"})
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self._connect("postgres").close()
                return
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"postgres did not start: {self.log.read_text()[-1500:]}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: disconnect clients, stop cleanly
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _connect(self, database: str):
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname=database,
                               connect_timeout=2, autocommit=True)

    def create_database(self, name: str) -> str:
        with self._connect("postgres") as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def execute(self, database: str, sql: str) -> None:
        with self._connect(database) as db:
            db.execute(sql)


def _skip_reason() -> str | None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return 'the PostgreSQL driver is not installed (pip install -c constraints.txt -e ".[postgres]")'
    if _bindir() is None:
        return "PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run does it as root)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, but there is no `postgres` user to run the server as"
    return None


@pytest.fixture(scope="session")
def postgres():
    """The session's PostgreSQL server (skipped, with the reason, where it cannot be installed or started)."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    start = time.perf_counter()
    try:
        server = PostgresServer(_bindir())
        server.start()
    except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
        pytest.skip(f"PostgreSQL could not be started: {exc} {getattr(exc, 'stderr', '') or ''}".strip())
    TIMINGS["PostgreSQL initdb + start"] = time.perf_counter() - start
    yield server
    server.stop()
    shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def claims_db(request, tmp_path):
    """A claims database URL: a sqlite file in the test's temp dir, or the session server's `claims`
    database with the claims table dropped (so every test starts from an empty, freshly created table)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'claims.db'}"
    server = request.getfixturevalue("postgres")
    if not getattr(server, "claims_url", None):
        server.claims_url = server.create_database("claims")
    from workbench.schedule.claims import CLAIMS_TABLE

    server.execute("claims", f"DROP TABLE IF EXISTS {CLAIMS_TABLE}")
    return server.claims_url


@pytest.fixture(scope="session")
def mlflow_pg_uri(postgres):
    """An MLflow tracking store on PostgreSQL, its schema migrated once for the session."""
    import mlflow

    uri = postgres.create_database("mlflow")
    start = time.perf_counter()
    mlflow.MlflowClient(uri).search_experiments()  # creates the schema (alembic migrations)
    TIMINGS["MLflow schema on a fresh PostgreSQL"] = time.perf_counter() - start
    return uri


@pytest.fixture(scope="session")
def _mlflow_sqlite_template(tmp_path_factory):
    import mlflow

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    start = time.perf_counter()
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    TIMINGS["MLflow schema on a fresh sqlite file (once; tests copy it)"] = time.perf_counter() - start
    return path


@pytest.fixture
def mlflow_sqlite_uri(_mlflow_sqlite_template, tmp_path):
    """A fresh, migrated sqlite MLflow store in this test's temp dir."""
    shutil.copy(_mlflow_sqlite_template, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def pytest_terminal_summary(terminalreporter):
    for what, seconds in TIMINGS.items():
        terminalreporter.write_line(f"stores: {what}: {seconds:.1f} s")
