"""Fixtures for kiln's MLflow-compatibility tests.

The tests drive a real tracking server over HTTP with the stock MLflow client.

Environment:
- ``KILN_BIN``: the kiln binary (default ``$CARGO_TARGET_DIR/debug/kiln`` or
  ``<repo>/target/debug/kiln``).
- ``KILN_TEST_PG_URL``, ``KILN_TEST_S3_ENDPOINT``, ``KILN_TEST_S3_BUCKET`` and the AWS_* variables
  (``eval "$(scripts/services.sh start)"``): enable the PostgreSQL + S3 backend. Without them the
  ``postgresql`` params are skipped, or fail when ``KILN_REQUIRE_SERVICES=1``.
- ``KILN_TEST_AGAINST_MLFLOW=1``: run against the reference ``mlflow server`` (sqlite + local
  artifacts) instead of kiln, to validate the tests themselves. kiln-only tests are skipped
  (``KILN_TEST_RUN_KILN_ONLY=1`` runs them anyway: test_durability works against mlflow too).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

# Fail fast: the client otherwise retries 5xx/timeouts 7 times over ~4 minutes.
os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

import mlflow  # noqa: E402  (after the env knobs above)

REPO = Path(__file__).resolve().parents[2]
AGAINST_MLFLOW = os.environ.get("KILN_TEST_AGAINST_MLFLOW") == "1"
REQUIRE_SERVICES = os.environ.get("KILN_REQUIRE_SERVICES") == "1"
HEALTH_TIMEOUT_S = float(os.environ.get("KILN_TEST_HEALTH_TIMEOUT", "90" if AGAINST_MLFLOW else "30"))


def pytest_configure(config):
    config.addinivalue_line("markers", "kiln_only: uses kiln features (CLI, gc, durability); skipped against mlflow")


def pytest_collection_modifyitems(config, items):
    # KILN_TEST_RUN_KILN_ONLY=1 runs them anyway (useful for test_durability against mlflow).
    if not AGAINST_MLFLOW or os.environ.get("KILN_TEST_RUN_KILN_ONLY") == "1":
        return
    skip = pytest.mark.skip(reason="kiln-only test (KILN_TEST_AGAINST_MLFLOW=1)")
    for item in items:
        if "kiln_only" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config):
    target = "reference mlflow server" if AGAINST_MLFLOW else f"kiln ({kiln_bin_path()})"
    pg = os.environ.get("KILN_TEST_PG_URL") or "-"
    s3 = os.environ.get("KILN_TEST_S3_ENDPOINT") or "-"
    return [f"kiln tests: target={target} mlflow={mlflow.__version__} pg={pg} s3={s3}"]


# --------------------------------------------------------------------------------------------
# helpers


def kiln_bin_path() -> Path:
    if os.environ.get("KILN_BIN"):
        return Path(os.environ["KILN_BIN"]).resolve()
    target = Path(os.environ["CARGO_TARGET_DIR"]) if os.environ.get("CARGO_TARGET_DIR") else REPO / "target"
    if not target.is_absolute():
        target = REPO / target
    return target / "debug" / "kiln"


def mlflow_bin_path() -> Path:
    return Path(sys.executable).parent / "mlflow"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def missing_services(what: str):
    """Skip (or fail under KILN_REQUIRE_SERVICES=1) when a backing service is not configured."""
    msg = f'{what} not configured (run: eval "$(scripts/services.sh start)")'
    if REQUIRE_SERVICES:
        pytest.fail(msg + " and KILN_REQUIRE_SERVICES=1")
    pytest.skip(msg)


def pg_url() -> str:
    url = os.environ.get("KILN_TEST_PG_URL")
    if not url:
        missing_services("KILN_TEST_PG_URL")
    return url


def s3_settings() -> tuple[str, str]:
    endpoint = os.environ.get("KILN_TEST_S3_ENDPOINT")
    bucket = os.environ.get("KILN_TEST_S3_BUCKET")
    if not endpoint or not bucket:
        missing_services("KILN_TEST_S3_ENDPOINT/KILN_TEST_S3_BUCKET")
    return endpoint, bucket


def s3_client():
    import boto3

    endpoint, _ = s3_settings()
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    )


def psql(url: str, sql: str) -> None:
    proc = subprocess.run(
        ["psql", url, "-v", "ON_ERROR_STOP=1", "-Atqc", sql],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"psql {sql!r} on {url} failed ({proc.returncode}): {proc.stderr.strip()}")


def with_db(url: str, db: str) -> str:
    """Replace the database name of a postgresql:// URL."""
    base, _, _ = url.rpartition("/")
    return f"{base}/{db}"


def run_kiln(*args: str, env: dict | None = None, check: bool = True, timeout: float = 120, cwd=None):
    """Run the kiln CLI; on an unexpected exit code, fail with its output."""
    exe = kiln_bin_path()
    if not exe.is_file():
        pytest.fail(f"kiln binary not found at {exe} (build it with `cargo build -p kiln` or set KILN_BIN)")
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=cwd)
    if check and proc.returncode != 0:
        pytest.fail(
            f"`kiln {' '.join(args)}` exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


# --------------------------------------------------------------------------------------------
# servers


@dataclass
class Store:
    """Where a server keeps its metadata and artifacts."""

    backend: str  # "sqlite" | "postgresql"
    artifacts: str  # "file" | "s3"
    workdir: Path
    backend_store_uri: str
    artifacts_destination: str
    artifact_root: Path | None = None  # local artifact root (file)
    s3_bucket: str | None = None
    s3_prefix: str | None = None  # key prefix inside the bucket, no trailing slash
    pg_db: str | None = None

    def artifact_files(self) -> list[str]:
        """Every stored artifact file, as a path relative to the artifact root."""
        if self.artifacts == "file":
            root = self.artifact_root
            if not root.exists():
                return []
            return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        s3 = s3_client()
        keys = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.s3_bucket, Prefix=self.s3_prefix + "/"):
            keys += [o["Key"][len(self.s3_prefix) + 1 :] for o in page.get("Contents", [])]
        return sorted(keys)


@dataclass
class Server:
    kind: str  # "kiln" | "mlflow"
    store: Store
    env: dict
    port: int | None = None
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    starts: int = 0
    _log_file: object = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def backend(self) -> str:
        return self.store.backend

    def command(self) -> list[str]:
        s = self.store
        if self.kind == "mlflow":
            return [
                str(mlflow_bin_path()), "server",
                "--backend-store-uri", s.backend_store_uri,
                "--artifacts-destination", s.artifacts_destination,
                "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            ]  # fmt: skip
        exe = kiln_bin_path()
        if not exe.is_file():
            pytest.fail(f"kiln binary not found at {exe} (build it with `cargo build -p kiln` or set KILN_BIN)")
        return [
            str(exe), "server",
            "--backend-store-uri", s.backend_store_uri,
            "--artifacts-destination", s.artifacts_destination,
            "--host", "127.0.0.1", "--port", str(self.port),
        ]  # fmt: skip

    def start(self, port: int | None = None) -> "Server":
        assert self.proc is None, "already running"
        self.port = port or free_port()
        self.starts += 1
        self.log_path = self.store.workdir / f"{self.kind}-server-{self.starts}.log"
        self._log_file = open(self.log_path, "wb")
        full_env = dict(os.environ)
        full_env.update(self.env)
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=self.store.workdir,
            start_new_session=True,
        )
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.kind} server exited with {self.proc.returncode} during startup\n{self.log_tail()}")
            try:
                r = requests.get(self.url + "/health", timeout=2)
                if r.status_code == 200 and r.text.strip() == "OK":
                    return
                last = f"HTTP {r.status_code}: {r.text[:200]!r}"
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.1)
        self.kill()
        pytest.fail(f"{self.kind} server not healthy after {HEALTH_TIMEOUT_S}s (last: {last})\n{self.log_tail()}")

    def log_tail(self, n: int = 8000) -> str:
        if self.log_path and self.log_path.exists():
            text = self.log_path.read_text(errors="replace")
            return f"--- {self.log_path} (tail)\n{text[-n:]}"
        return "(no server log)"

    def _reap(self) -> None:
        self.proc = None
        if self._log_file:
            self._log_file.close()
            self._log_file = None

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, not a shutdown."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        self._reap()

    def stop(self) -> int | None:
        """SIGTERM, then wait; the exit status (None when it was not running)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        code = self.proc.returncode
        self._reap()
        return code

    def restart(self, same_port: bool = False) -> "Server":
        port = self.port if same_port else None
        self.stop()
        return self.start(port)

    def kiln(self, *args: str, check: bool = True, env: dict | None = None):
        """Run a kiln CLI command with this server's store flags appended."""
        merged = dict(self.env)
        merged.update(env or {})
        return run_kiln(*args, *self.store_args(), env=merged, check=check)

    def store_args(self) -> list[str]:
        return [
            "--backend-store-uri", self.store.backend_store_uri,
            "--artifacts-destination", self.store.artifacts_destination,
        ]  # fmt: skip


class ServerFactory:
    """Creates stores and servers under one temp dir and tears them all down."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory):
        self.tmp = tmp_path_factory
        self.servers: list[Server] = []
        self.pg_dbs: list[str] = []

    def store(self, backend: str = "sqlite", artifacts: str | None = None) -> tuple[Store, dict]:
        artifacts = artifacts or ("file" if backend == "sqlite" else "s3")
        if AGAINST_MLFLOW and (backend != "sqlite" or artifacts != "file"):
            pytest.skip("the reference mlflow run covers sqlite + file artifacts only")
        workdir = self.tmp.mktemp(f"{backend}-{artifacts}-")
        env: dict = {"RUST_BACKTRACE": "1"}
        if backend == "sqlite":
            # sqlite:/// + an absolute path: SQLAlchemy reads it as absolute, and so does kiln.
            uri = f"sqlite:///{workdir / 'kiln.db'}"
            pg_db = None
        elif backend == "postgresql":
            url = pg_url()
            pg_db = "kiln_" + uuid.uuid4().hex[:12]
            psql(url, f"CREATE DATABASE {pg_db}")
            self.pg_dbs.append(pg_db)
            uri = with_db(url, pg_db)
        else:
            raise ValueError(backend)
        store = Store(backend, artifacts, workdir, uri, "", pg_db=pg_db)
        if artifacts == "file":
            store.artifact_root = workdir / "artifacts"
            store.artifact_root.mkdir()
            store.artifacts_destination = store.artifact_root.as_uri()
        elif artifacts == "s3":
            endpoint, bucket = s3_settings()
            store.s3_bucket = bucket
            store.s3_prefix = "kiln-" + uuid.uuid4().hex[:12]
            store.artifacts_destination = f"s3://{bucket}/{store.s3_prefix}"
            env.update(
                AWS_ENDPOINT_URL=endpoint,
                AWS_ALLOW_HTTP="true",
                AWS_ACCESS_KEY_ID=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
                AWS_SECRET_ACCESS_KEY=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
                AWS_DEFAULT_REGION=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            )
        else:
            raise ValueError(artifacts)
        if backend == "postgresql":
            run_kiln("db", "upgrade", "--backend-store-uri", uri, env=env)
        return store, env

    def server(self, backend: str = "sqlite", artifacts: str | None = None, start: bool = True) -> Server:
        store, env = self.store(backend, artifacts)
        srv = Server("mlflow" if AGAINST_MLFLOW else "kiln", store, env)
        self.servers.append(srv)
        if start:
            srv.start()
        return srv

    def close(self) -> None:
        for srv in self.servers:
            srv.stop()
        url = os.environ.get("KILN_TEST_PG_URL")
        for db in self.pg_dbs:
            try:
                psql(url, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            except Exception:  # noqa: BLE001  best effort
                pass


BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="module")
def module_servers(tmp_path_factory):
    factory = ServerFactory(tmp_path_factory)
    yield factory
    factory.close()


@pytest.fixture(scope="module", params=BACKENDS)
def server(request, module_servers) -> Server:
    """A running server, one per test module and backend (sqlite+file, postgresql+s3)."""
    if AGAINST_MLFLOW and request.param != "sqlite":
        pytest.skip("the reference mlflow run covers sqlite only")
    return module_servers.server(request.param)


@pytest.fixture
def server_factory(tmp_path_factory):
    """Per-test factory for servers that a test stops, kills or restarts."""
    factory = ServerFactory(tmp_path_factory)
    yield factory
    factory.close()


@pytest.fixture
def tracking(server):
    """Point the fluent API at `server` for one test; end leaked runs afterwards."""
    mlflow.set_tracking_uri(server.url)
    mlflow.set_registry_uri(server.url)
    yield server
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture
def client(tracking):
    return mlflow.MlflowClient(tracking_uri=tracking.url, registry_uri=tracking.url)


@pytest.fixture(scope="session")
def iris():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    X, y = load_iris(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42)
    model = LogisticRegression(max_iter=200).fit(X_train, y_train)
    return model, X_test, y_test


def rest(server: Server, method: str, endpoint: str, **kwargs) -> requests.Response:
    """A raw REST call: `endpoint` is relative to /api/2.0/mlflow/."""
    return requests.request(method, f"{server.url}/api/2.0/mlflow/{endpoint}", timeout=30, **kwargs)
