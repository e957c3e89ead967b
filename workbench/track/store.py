"""Is the tracking store there? One quick look before MLflow is asked anything.

    from workbench.track.store import check_store
    check_store("postgresql://mlflow@db/mlflow", key="track.tracking_uri")   # WorkbenchError in one line if not

MLflow itself retries a database that does not answer for about two minutes, printing a warning per try, and
then raises a traceback; every command that reads or writes runs looks here first instead: a sqlite file in a
folder that exists (and, for a run about to be written, can be written; for reading, the file exists), a server
that accepts a connection, a database whose driver is installed and whose server accepts a connection within
5 seconds.
"""

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from workbench.errors import WorkbenchError

SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks", "databricks-uc")
DATABASES = ("postgresql", "mysql", "mssql")
TIMEOUT_S = 5


def check_store(uri: str, key: str = "tracking store", write: bool = False) -> str:
    """Raise a one-line WorkbenchError naming `key` when `uri` cannot be used from here; returns `uri`.
    `write`: a run will be written (a sqlite file may not exist yet, but its folder must be writable)."""
    parsed = urlparse(uri)
    scheme = parsed.scheme.split("+")[0]
    if scheme and len(scheme) > 1 and scheme not in SCHEMES:
        raise WorkbenchError(f"{key}: '{uri}' has an unknown scheme '{scheme}' (MLflow stores: {', '.join(SCHEMES)}, "
                             "or a folder)")
    if scheme == "sqlite":
        _check_sqlite(Path(uri[len("sqlite:///"):]), key, write)
    elif scheme in ("http", "https"):
        try:
            socket.create_connection((parsed.hostname, parsed.port or (443 if scheme == "https" else 80)),
                                     timeout=TIMEOUT_S).close()
        except OSError as exc:
            raise WorkbenchError(f"{key}: cannot reach the MLflow server {uri}: {exc.strerror or exc}") from None
    elif scheme in DATABASES:
        _reach_database(uri, scheme, key)
    return uri


def _check_sqlite(store: Path, key: str, write: bool) -> None:
    if not store.parent.is_dir():
        raise WorkbenchError(f"{key}: the folder of the sqlite store does not exist: {store.parent}")
    if write and not os.access(store if store.exists() else store.parent, os.W_OK):
        raise WorkbenchError(f"{key}: the sqlite store {store} cannot be written here")
    if not write and not store.is_file():
        raise WorkbenchError(f"{key}: no MLflow store at {store} yet: run a fine-tune first (`make finetune "
                             "RECIPE=legal`), or point MLFLOW_TRACKING_URI at your store")


def _reach_database(uri: str, scheme: str, key: str) -> None:
    from sqlalchemy.engine import make_url

    try:
        url = make_url(uri)
        url.get_dialect().import_dbapi()
    except Exception as exc:  # the URL is malformed or its database driver is not installed
        raise WorkbenchError(f"{key}: cannot use {scheme} here: {str(exc).splitlines()[0]}") from None
    try:
        ping_database(uri)
    except Exception as exc:  # the drivers raise their own OperationalErrors
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise WorkbenchError(f"{key}: cannot reach the tracking database {url.render_as_string(hide_password=True)}: "
                             f"{reason[0] if reason else type(exc).__name__}") from None


def ping_database(uri: str) -> None:
    """One connection to a database store with a short timeout; raises the driver's own error (SQLAlchemy's
    OperationalError) when it is down, which the scheduler's retry recognises as an outage."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    url = make_url(uri)
    timeout = {"connect_timeout": TIMEOUT_S} if url.get_backend_name() in ("postgresql", "mysql") else {}
    engine = create_engine(url, connect_args=timeout, poolclass=NullPool)
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()


def is_database(uri: str) -> bool:
    return urlparse(uri).scheme.split("+")[0] in DATABASES


def tracking_client(uri: str):
    """An MlflowClient, after one quick connection to a database store: MLflow alone retries one that is down for
    two minutes and then raises; this raises the driver's error at once (the scheduler's StoreRetry rides it out)."""
    import mlflow

    if is_database(uri):
        ping_database(uri)
    return mlflow.MlflowClient(tracking_uri=uri)


def store_key() -> str:
    """How errors name the store the commands read: the variable that set it, or the project's default."""
    return "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "tracking store"
