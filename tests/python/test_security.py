"""Path confinement of the artifact proxy and of every field that names a storage location.

kiln's rule: anything that could leave the artifact root (`..` segments, absolute paths,
backslashes, percent-encoded or double-encoded forms, `#`/`?` tricks, locations outside the
root) is answered with 400 INVALID_PARAMETER_VALUE and touches nothing.

Against the reference server (KILN_TEST_AGAINST_MLFLOW=1) only the safety properties are
checked (nothing outside the root is read, written or deleted): MLflow answers some of these
with 404 or accepts harmless names such as `a#b.txt` inside the root.

The server runs as root in CI, so write and delete attempts only ever aim at files in the
test's own temp dir, never at system files.
"""

from __future__ import annotations

import http.client
import json
import os
from pathlib import Path

import pytest
import requests

from conftest import AGAINST_MLFLOW, rest, s3_client, unique

ART = "/api/2.0/mlflow-artifacts/artifacts"
SENTINEL_TEXT = "kiln sentinel: must never change\n"
PASSWD_MARK = "root:x:0:0"


@pytest.fixture(scope="module", params=[("sqlite", "file"), ("postgresql", "s3")], ids=["sqlite-file", "postgresql-s3"])
def sec_server(request, module_servers):
    """A private server with sentinel files just outside its artifact root.

    For a file store the sentinels sit in the directory above the root; for S3 they are objects
    above the store's prefix, so `../sentinel.txt` from the root names them in both cases.
    """
    srv = module_servers.server(*request.param)
    if srv.store.artifacts == "file":
        workdir = srv.store.workdir
        (workdir / "sentinel.txt").write_text(SENTINEL_TEXT)
        (workdir / "sentinel-dir").mkdir()
        (workdir / "sentinel-dir" / "inner.txt").write_text(SENTINEL_TEXT)
    else:
        s3 = s3_client()
        for key in ("sentinel.txt", "sentinel-dir/inner.txt"):
            s3.put_object(Bucket=srv.store.s3_bucket, Key=key, Body=SENTINEL_TEXT.encode())
    # Something legitimate inside the root, so that listings have content to leak.
    r = requests.put(f"{srv.url}{ART}/0/legit/file.txt", data=b"legit", timeout=30)
    assert r.status_code == 200, r.text
    return srv


def outside_snapshot(srv) -> dict:
    """Every file (object) outside the server's artifact root, with its content (etag)."""
    store = srv.store
    if store.artifacts == "s3":
        s3 = s3_client()
        snap = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=store.s3_bucket):
            for o in page.get("Contents", []):
                if not o["Key"].startswith(store.s3_prefix + "/"):
                    snap[o["Key"]] = (o["ETag"], o["Size"])
        return snap
    workdir = store.workdir
    root = store.artifact_root
    snap = {}
    for p in workdir.rglob("*"):
        if not p.is_file() or root in p.parents:
            continue
        if p.name.startswith(("kiln.db", "kiln-server-", "mlflow-server-")):
            continue
        snap[str(p.relative_to(workdir))] = p.read_bytes()
    return snap


def sentinel_text(srv) -> str:
    if srv.store.artifacts == "s3":
        obj = s3_client().get_object(Bucket=srv.store.s3_bucket, Key="sentinel.txt")
        return obj["Body"].read().decode()
    return (srv.store.workdir / "sentinel.txt").read_text()


def raw(srv, method: str, path: str, body: bytes | None = None, content_type: str = "application/octet-stream"):
    """Send `path` exactly as written (no client-side normalisation or encoding): (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        headers = {"Content-Type": content_type} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def traversal_paths(srv) -> list[str]:
    """Artifact paths (as sent on the wire, after ART + '/') that aim outside the root."""
    workdir = srv.store.workdir
    abs_sentinel = str(workdir / "sentinel.txt")  # starts with '/'
    return [
        # raw `..`
        "../sentinel.txt",
        "../pwned.txt",
        "0/../../sentinel.txt",
        "0/legit/../../../pwned.txt",
        "../sentinel-dir/inner.txt",
        # percent-encoded `..` and `/`
        "%2e%2e/sentinel.txt",
        "%2E%2E%2Fsentinel.txt",
        "%2e%2e%2fpwned.txt",
        "0%2F..%2F..%2Fsentinel.txt",
        "..%2fpwned.txt",
        ".%2e/sentinel.txt",
        # double-encoded
        "%252e%252e/sentinel.txt",
        "%252e%252e%252fpwned.txt",
        "0/%252e%252e/%252e%252e/sentinel.txt",
        # absolute
        "/" + abs_sentinel.lstrip("/"),  # ART + '//abs/path'
        abs_sentinel.replace("/", "%2F"),
        abs_sentinel.replace("/", "%2f") + ".new",
        # backslashes
        "..\\sentinel.txt",
        "0\\..\\..\\pwned.txt",
        "..%5Csentinel.txt",
        "..%5cpwned.txt",
        # fragment and query tricks
        "x%23/../../sentinel.txt",
        "..%23/sentinel.txt",
        "a%23b.txt",
        "x%3F/../../sentinel.txt",
        "..%3Fx=1/../sentinel.txt",
        "a%3Fb.txt",
        # NUL, and overlong UTF-8 dots (invalid UTF-8)
        "a%00/../../sentinel.txt",
        "%c0%ae%c0%ae/sentinel.txt",
        "%c0%ae%c0%ae%c0%afpwned.txt",
    ]


def rejection_problem(status: int, body: bytes, what: str) -> str | None:
    """Why this answer is not kiln's 400 INVALID_PARAMETER_VALUE (None when it is)."""
    if status >= 500:
        return f"{what}: server error {status}: {body[:200]!r}"
    if AGAINST_MLFLOW:
        return None
    if status != 400:
        return f"{what}: expected 400, got {status}: {body[:200]!r}"
    try:
        code = json.loads(body).get("error_code")
    except ValueError:
        return f"{what}: 400 without a JSON error body: {body[:200]!r}"
    if code != "INVALID_PARAMETER_VALUE":
        return f"{what}: error_code {code!r}, expected INVALID_PARAMETER_VALUE"
    return None


def check_rejected(status: int, body: bytes, what: str) -> None:
    problem = rejection_problem(status, body, what)
    assert problem is None, problem


def check_no_leak(body: bytes, what: str) -> None:
    text = body.decode("utf-8", "replace")
    assert SENTINEL_TEXT.strip() not in text, f"{what}: leaked the sentinel: {text[:300]!r}"
    assert PASSWD_MARK not in text, f"{what}: leaked /etc/passwd: {text[:300]!r}"


def check_no_listing_leak(status: int, body: bytes, what: str) -> None:
    """A listing that answered must not name anything from outside the root.

    (Error messages may echo the requested path, so only listed entries are checked.)
    """
    if status != 200:
        return
    try:
        payload = json.loads(body)
    except ValueError:
        return
    names = [f.get("path", "") for f in payload.get("files", [])] if isinstance(payload, dict) else []
    bad = [n for n in names if any(x in n for x in ("sentinel", "kiln.db", "passwd", "shadow", "hostname"))]
    assert not bad, f"{what}: listed entries from outside the root: {bad}"


def assert_untouched(srv, before: dict[str, bytes]) -> None:
    after = outside_snapshot(srv)
    changed = {k for k in set(after) | set(before) if after.get(k) != before.get(k)}
    assert not changed, f"files outside the artifact root changed: {sorted(changed)[:20]}"
    assert sentinel_text(srv) == SENTINEL_TEXT
    assert Path("/etc/passwd").read_text().startswith("root:")


def test_artifact_proxy_put_get_delete_traversal(sec_server):
    srv = sec_server
    before = outside_snapshot(srv)
    paths = traversal_paths(srv)
    problems = []
    for p in paths:
        for method, body in (("PUT", b"pwned"), ("GET", None), ("DELETE", None)):
            what = f"{method} {ART}/{p}"
            status, resp = raw(srv, method, f"{ART}/{p}", body)
            check_no_leak(resp, what)
            assert_untouched(srv, before)
            problems.append(rejection_problem(status, resp, what))
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)

    # Read-only attempts at system files (never written to).
    for p in (
        "../../../../../../../../../../etc/passwd",
        "0/../../../../../../../../../../../etc/passwd",
        "/etc/passwd",
        "%2Fetc%2Fpasswd",
        "%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "%252e%252e%252f%252e%252e%252f%252e%252e%252f%252e%252e%252fetc%252fpasswd",
        "..\\..\\..\\..\\..\\..\\..\\..\\etc\\passwd",
    ):
        status, resp = raw(srv, "GET", f"{ART}/{p}")
        check_rejected(status, resp, f"GET {p}")
        check_no_leak(resp, f"GET {p}")

    # The legitimate file is still there and readable.
    r = requests.get(f"{srv.url}{ART}/0/legit/file.txt", timeout=30)
    assert r.status_code == 200 and r.content == b"legit"
    assert_untouched(srv, before)


def test_artifact_list_traversal(sec_server):
    srv = sec_server
    before = outside_snapshot(srv)
    workdir = str(srv.store.workdir)
    for p in (
        "..",
        "../",
        "../sentinel-dir",
        "0/../..",
        "0/legit/../../../sentinel-dir",
        "/etc",
        "/",
        workdir,
        workdir + "/sentinel-dir",
        "..\\",
        "..\\sentinel-dir",
        "%2e%2e",
        "%2e%2e%2fsentinel-dir",
        "%252e%252e",
        "x#/../..",
        "x?/../..",
    ):
        r = requests.get(f"{srv.url}{ART}", params={"path": p}, timeout=30)
        check_rejected(r.status_code, r.content, f"list path={p!r}")
        check_no_leak(r.content, f"list path={p!r}")
        check_no_listing_leak(r.status_code, r.content, f"list path={p!r}")
    # Raw query strings with encoded forms.
    for q in ("path=..%2F..", "path=%2e%2e", "path=%2Fetc", "path=..%5C", "path=0%2F..%2F.."):
        status, resp = raw(srv, "GET", f"{ART}?{q}")
        check_rejected(status, resp, f"list ?{q}")
        check_no_listing_leak(status, resp, f"list ?{q}")
    assert_untouched(srv, before)


def test_experiment_artifact_location_outside_root(sec_server):
    srv = sec_server
    workdir = srv.store.workdir
    bucket = os.environ.get("KILN_TEST_S3_BUCKET", "kiln-test")
    problems = []
    for loc in (
        f"s3://{bucket}/outside-the-prefix",
        "file:///etc",
        "/etc",
        "../x",
        "s3://other-bucket/x",
        workdir.as_uri(),
        str(workdir / "sentinel-dir"),
        srv.store.artifacts_destination + "/../escape",
        srv.store.artifacts_destination + "-sibling/x",
        "mlflow-artifacts:/../x",
        "mlflow-artifacts:/0/../../x",
        "mlflow-artifacts://evil.example:80/x",
    ):
        r = rest(srv, "POST", "experiments/create", json={"name": unique("sec-loc"), "artifact_location": loc})
        problems.append(rejection_problem(r.status_code, r.content, f"experiments/create artifact_location={loc!r}"))
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)


def test_model_version_source_outside_root(sec_server):
    srv = sec_server
    name = unique("sec-model")
    r = rest(srv, "POST", "registered-models/create", json={"name": name})
    assert r.status_code == 200, r.text
    for source in (
        "/etc/passwd",
        "file:///etc",
        "file:///etc/passwd",
        "../../x",
        str(srv.store.workdir / "sentinel.txt"),
        "mlflow-artifacts:/../x",
        "mlflow-artifacts:/0/../../x",
        "models:/../../x",
        "runs:/../../x",
    ) + (() if AGAINST_MLFLOW else (
        # Object-store URIs are records only, and only plain ones.
        "s3://bucket/../x",
        "s3://bucket/%2e%2e/x",
        "s3://bucket/x#frag",
        "s3://bucket/x?versionId=1",
        "s3:///x",
    )):
        r = rest(srv, "POST", "model-versions/create", json={"name": name, "source": source})
        check_rejected(r.status_code, r.content, f"model-versions/create source={source!r}")
        if not AGAINST_MLFLOW:
            # Nothing was registered, so nothing can be downloaded from there later.
            got = rest(srv, "GET", "model-versions/search", params={"filter": f"name = '{name}'"})
            assert got.status_code == 200 and got.json().get("model_versions", []) == [], got.text


def test_logged_model_ids_and_artifact_paths(sec_server):
    srv = sec_server
    before = outside_snapshot(srv)
    r = rest(srv, "POST", "logged-models", json={"experiment_id": "0", "name": "sec"})
    assert r.status_code == 200, r.text
    model_id = r.json()["model"]["info"]["model_id"]
    assert model_id.startswith("m-")

    # Bad ids: traversal in the id itself.
    for bad_id in ("..", "..%2F..%2Fsentinel.txt", "m-..%2F..", "%2e%2e", "m-0123%5C..%5C.."):
        for method, body in (("GET", None), ("PATCH", b'{"status": "LOGGED_MODEL_READY"}'), ("DELETE", None)):
            status, resp = raw(srv, method, f"/api/2.0/mlflow/logged-models/{bad_id}", body, "application/json")
            assert status < 500, f"{method} logged-models/{bad_id}: {status} {resp[:200]!r}"
            assert status in (400, 404, 405), f"{method} logged-models/{bad_id}: {status} {resp[:200]!r}"
            check_no_leak(resp, f"{method} logged-models/{bad_id}")

    # The logged model's artifact area: traversal out of it is refused like any artifact path.
    prefix = f"0/models/{model_id}/artifacts"
    for p in ("../../../../sentinel.txt", "%2e%2e/%2e%2e/%2e%2e/%2e%2e/sentinel.txt", "..\\..\\..\\..\\pwned.txt"):
        for method, body in (("PUT", b"pwned"), ("GET", None), ("DELETE", None)):
            status, resp = raw(srv, method, f"{ART}/{prefix}/{p}", body)
            check_rejected(status, resp, f"{method} {prefix}/{p}")
            check_no_leak(resp, f"{method} {prefix}/{p}")

    # The UI's logged-model file endpoint, where a server has it.
    for p in ("../../../../sentinel.txt", "/etc/passwd", "%2e%2e/%2e%2e/sentinel.txt"):
        r = requests.get(
            f"{srv.url}/ajax-api/2.0/mlflow/logged-models/{model_id}/artifacts/files",
            params={"artifact_file_path": p},
            timeout=30,
        )
        assert r.status_code in (400, 404) or (AGAINST_MLFLOW and r.status_code < 500), (p, r.status_code, r.text[:200])
        check_no_leak(r.content, f"logged-model files {p}")
    assert_untouched(srv, before)


def test_legacy_artifact_endpoints(sec_server):
    """UI-era download endpoints: never serve a file from outside the root."""
    srv = sec_server
    run = rest(srv, "POST", "runs/create", json={"experiment_id": "0", "start_time": 1700000000000}).json()["run"]
    run_id = run["info"]["run_id"]
    for p in (
        "../../../sentinel.txt",
        "../../../../../../../../etc/passwd",
        "/etc/passwd",
        "%2e%2e/%2e%2e/%2e%2e/sentinel.txt",
    ):
        for url, params in (
            (f"{srv.url}/get-artifact", {"run_id": run_id, "run_uuid": run_id, "path": p}),
            (f"{srv.url}/api/2.0/mlflow/artifacts/list", {"run_id": run_id, "run_uuid": run_id, "path": p}),
        ):
            r = requests.get(url, params=params, timeout=30)
            assert r.status_code < 500 or AGAINST_MLFLOW, (url, p, r.status_code, r.text[:200])
            check_no_leak(r.content, f"{url} path={p}")
            check_no_listing_leak(r.status_code, r.content, f"{url} path={p}")


@pytest.mark.kiln_only
def test_traversal_error_shape(sec_server):
    """kiln answers traversal with a JSON error that names the problem, not a bare status."""
    srv = sec_server
    status, body = raw(srv, "GET", f"{ART}/../sentinel.txt")
    assert status == 400
    payload = json.loads(body)
    assert payload["error_code"] == "INVALID_PARAMETER_VALUE"
    assert payload["message"]
    assert os.fspath(srv.store.workdir) not in payload["message"], "error leaks a server-side path"
