"""`kiln serve --log-predictions s3://…` against an S3 endpoint that fails: a failed upload
keeps its file and retries it, and a bucket that cannot be written fails the start.

The endpoint is a small in-process S3 stand-in (PUT only), so that it can refuse on cue.
"""

from __future__ import annotations

import http.server
import io
import os
import subprocess
import threading

import pyarrow.parquet as pq
import pytest
import requests
from sklearn.linear_model import LogisticRegression

from conftest import free_port, kiln_bin_path
from test_onnx import export, served, split
from sklearn.datasets import load_breast_cancer

pytestmark = pytest.mark.kiln_only


class FakeS3:
    """Answers PUT: `.kiln-prediction-log` per `probe_status`, then `fail` refusals (403),
    then stores objects in `objects`."""

    def __init__(self, fail: int = 0, probe_status: int = 200):
        self.fail = fail
        self.probe_status = probe_status
        self.objects: dict[str, bytes] = {}
        self.refused: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_PUT(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                path = self.path.split("?")[0]
                if path.endswith("/.kiln-prediction-log"):
                    status = owner.probe_status
                elif owner.fail > 0:
                    owner.fail -= 1
                    owner.refused.append(path)
                    status = 403
                else:
                    owner.objects[path] = body
                    status = 200
                if status == 200:
                    self.send_response(200)
                    self.send_header("ETag", '"0123"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    code = "NoSuchBucket" if status == 404 else "AccessDenied"
                    xml = f"<Error><Code>{code}</Code><Message>{code}</Message></Error>".encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(xml)))
                    self.end_headers()
                    self.wfile.write(xml)

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def env(self) -> dict:
        env = dict(os.environ)
        env.update(
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{self.port}",
            AWS_ALLOW_HTTP="true",
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
        )
        return env

    def close(self):
        self.server.shutdown()


def predict_rows(base: str, X, n: int) -> None:
    """The first `n` rows of `X`, one request each, every one answered 200."""
    columns = [f"f{j}" for j in range(X.shape[1])]
    for i in range(n):
        body = {"dataframe_split": {"columns": columns, "data": [X[i].tolist()]}}
        assert requests.post(f"{base}/invocations", json=body, timeout=10).status_code == 200


@pytest.fixture
def model(tmp_path):
    X_train, X_test, y_train, _ = split(load_breast_cancer)
    clf = LogisticRegression(max_iter=500).fit(X_train, y_train)
    return export(clf, X_train.shape[1], tmp_path / "model.onnx"), X_test


def test_failed_uploads_are_kept_and_retried(tmp_path, model, monkeypatch):
    path, X = model
    s3 = FakeS3(fail=2)
    try:
        for k, v in s3.env().items():
            monkeypatch.setenv(k, v)
        extra = ("--log-predictions", "s3://logs/serve", "--log-sample", "1", "--log-rotate-rows", "5")
        with served(path, tmp_path, *extra) as base:
            predict_rows(base, X, 20)
        # Two uploads were refused; every file still arrived, once, with every row.
        assert len(s3.refused) == 2, s3.refused
        names = [p for p in s3.objects if p.endswith(".parquet")]
        assert len(names) == 4, sorted(s3.objects)
        assert all(p.startswith("/logs/serve/predictions-") for p in names), names
        rows = sum(pq.read_table(io.BytesIO(s3.objects[p])).num_rows for p in names)
        assert rows == 20
    finally:
        s3.close()


def test_a_bucket_that_cannot_be_written_fails_the_start(tmp_path, model):
    path, _ = model
    s3 = FakeS3(probe_status=404)
    try:
        proc = subprocess.run(
            [str(kiln_bin_path()), "serve", str(path), "--port", str(free_port()),
             "--log-predictions", "s3://missing/serve"],
            cwd=tmp_path, env=s3.env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert "s3://missing/serve" in proc.stderr and "bucket" in proc.stderr, proc.stderr
    finally:
        s3.close()


def test_files_unsent_at_exit_are_uploaded_by_the_next_server(tmp_path, model, monkeypatch):
    """A store down through the shutdown: the file waits on local disk (not in the staging
    files a restart sweeps away), and the next server logging there uploads it at start."""
    import time

    path, X = model
    s3 = FakeS3(fail=1_000_000)
    try:
        for k, v in s3.env().items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("TMPDIR", str(tmp_path))
        extra = ("--log-predictions", "s3://logs/later", "--log-sample", "1", "--log-rotate-rows", "5")
        with served(path, tmp_path, *extra) as base:
            predict_rows(base, X, 5)
        kept = list((tmp_path / "kiln-predictions-unsent").rglob("predictions-*.parquet"))
        assert len(kept) == 1, list(tmp_path.rglob("*"))
        assert not [p for p in s3.objects if p.endswith(".parquet")]
        s3.fail = 0
        with served(path, tmp_path, *extra):
            deadline = time.time() + 30
            while not [p for p in s3.objects if p.endswith(".parquet")] and time.time() < deadline:
                time.sleep(0.1)
        names = [p for p in s3.objects if p.endswith(".parquet")]
        assert names == [f"/logs/later/{kept[0].name}"], names
        assert pq.read_table(io.BytesIO(s3.objects[names[0]])).num_rows == 5
        assert not kept[0].exists()
    finally:
        s3.close()
