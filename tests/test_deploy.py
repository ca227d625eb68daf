"""deploy/: the Kubernetes manifests and the Containerfile, checked without a cluster.

Every manifest is parsed and cross-checked (labels and selectors, named ports, the
ConfigMap key mounted where the container reads its configuration, the listen ports in
that configuration, RBAC references, the image's command, ports and writable paths);
kubectl builds the folder offline. The Containerfile's build stage is replayed in a
fresh venv by `make deploy-check` (it installs from PyPI, too slow for every test run).
tests/test_deploy_serving.py runs the ConfigMap's gateway.toml.
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from core.config import Kubernetes
from tests.deploy_kit import (
    CLUSTER_SCOPED,
    CONFIGMAP,
    CONTAINER,
    DEPLOY,
    DOCS,
    GATEWAY,
    NAMESPACE,
    READ_VERBS,
    REDIS,
    ROOT,
    config_path,
    container_ports,
    containerfile,
    gateway_toml,
    json_arg,
    last,
    loadable,
    matches,
    one,
)

# ------------------------------------------------------------------------ the manifests


def test_every_manifest_parses_and_names_its_object() -> None:
    assert DOCS, "no manifests in deploy/"
    seen: set[tuple[str, str, str]] = set()
    for doc in DOCS:
        body = doc.body
        assert body.get("apiVersion") and body.get("kind"), doc
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", doc.name), doc
        namespace = (body.get("metadata") or {}).get("namespace", "")
        if doc.kind in CLUSTER_SCOPED:
            assert not namespace, f"{doc}: cluster-scoped, has a namespace"
        else:
            assert namespace == NAMESPACE, f"{doc}: namespace {namespace!r}"
        key = (doc.kind, namespace, doc.name)
        assert key not in seen, f"{doc}: defined twice"
        seen.add(key)
    kinds = {d.kind for d in DOCS}
    assert {
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "IngressClass",
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
    } <= kinds


SELECTORS = [
    pytest.param("Deployment", "wasmgate", "Deployment", "wasmgate", id="gateway-deployment"),
    pytest.param("Deployment", "wasmgate-redis", "Deployment", "wasmgate-redis", id="redis-deploy"),
    pytest.param("Service", "wasmgate", "Deployment", "wasmgate", id="gateway-service"),
    pytest.param("Service", "wasmgate-redis", "Deployment", "wasmgate-redis", id="redis-service"),
    pytest.param("PodDisruptionBudget", "wasmgate", "Deployment", "wasmgate", id="pdb"),
    pytest.param("NetworkPolicy", "wasmgate-redis", "Deployment", "wasmgate-redis", id="netpol"),
]


def _selector(body: dict[str, Any]) -> dict[str, str]:
    spec = body["spec"]
    if body["kind"] == "Service":
        return dict(spec["selector"])
    if body["kind"] == "NetworkPolicy":
        return dict(spec["podSelector"]["matchLabels"])
    return dict(spec["selector"]["matchLabels"])


@pytest.mark.parametrize(("kind", "name", "target_kind", "target"), SELECTORS)
def test_selectors_pick_exactly_their_pods(
    kind: str, name: str, target_kind: str, target: str
) -> None:
    selector = _selector(one(kind, name))
    assert selector, f"{kind}/{name}: empty selector"
    picked = [
        d.name
        for d in DOCS
        if d.kind == "Deployment"
        and matches(selector, d.body["spec"]["template"]["metadata"]["labels"])
    ]
    assert picked == [target], f"{kind}/{name} selects the pods of {picked}"


def test_only_the_gateways_may_reach_redis() -> None:
    rule = one("NetworkPolicy", "wasmgate-redis")["spec"]["ingress"]
    sources = [peer["podSelector"]["matchLabels"] for r in rule for peer in r["from"]]
    labels = GATEWAY["spec"]["template"]["metadata"]["labels"]
    assert sources and all(matches(s, labels) for s in sources)
    ports = {p["port"] for r in rule for p in r["ports"]}
    assert ports <= set(container_ports(REDIS))


def test_named_ports_exist_on_the_containers() -> None:
    for service, deployment in (("wasmgate", GATEWAY), ("wasmgate-redis", REDIS)):
        names = container_ports(deployment)
        for port in one("Service", service)["spec"]["ports"]:
            assert port["targetPort"] in names, f"Service/{service}: {port['targetPort']}"
    gateway_ports = container_ports(GATEWAY)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert CONTAINER[probe]["httpGet"]["port"] == "admin", probe
    assert "admin" in gateway_ports and "http" in gateway_ports
    # The admin port is not published to clients.
    published = {p["targetPort"] for p in one("Service", "wasmgate")["spec"]["ports"]}
    assert "admin" not in published


def test_gateway_toml_is_mounted_where_the_container_reads_it() -> None:
    path = config_path()
    folder, key = posixpath.split(path)
    assert key in CONFIGMAP["data"]
    pod = GATEWAY["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = [m for m in CONTAINER["volumeMounts"] if m["mountPath"] == folder]
    assert len(mounts) == 1, f"nothing mounted at {folder}"
    mount = mounts[0]
    # A subPath mount is never updated by the kubelet: no reload would see a change.
    assert "subPath" not in mount
    assert volumes[mount["name"]]["configMap"]["name"] == "wasmgate-config"
    # And the image runs the same command by default.
    cmd = containerfile()[-1].instructions
    assert json_arg(cmd, "ENTRYPOINT") + json_arg(cmd, "CMD") == ["wasmgate", *CONTAINER["args"]]


def test_files_the_config_names_are_mounted() -> None:
    config = tomllib.loads(gateway_toml())
    token_file = config["admin"]["token_file"]
    folder = posixpath.dirname(token_file)
    pod = GATEWAY["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mount = next(m for m in CONTAINER["volumeMounts"] if m["mountPath"] == folder)
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == "wasmgate-admin"
    # Readable by the pod's group (fsGroup), by nobody else.
    assert secret["defaultMode"] == 0o440
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    # Everything the gateway writes has a writable volume under a read-only root.
    assert CONTAINER["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e["value"] for e in CONTAINER["env"]}
    writable = {m["mountPath"] for m in CONTAINER["volumeMounts"] if not m.get("readOnly")}
    assert {env["WASMGATE_CACHE_DIR"], env["WASMGATE_HOME"], "/tmp"} <= writable


def test_listen_addresses_match_the_container_ports() -> None:
    config = tomllib.loads(gateway_toml())
    ports = container_ports(GATEWAY)
    (listen,) = config["server"]["listen"]
    assert listen == f"0.0.0.0:{ports['http']}"
    assert config["admin"]["listen"] == f"0.0.0.0:{ports['admin']}"
    # One worker per pod: only the first worker serves the admin listener (the probes).
    assert config["server"]["workers"] == 1


def test_store_url_names_the_redis_service() -> None:
    url = urlsplit(tomllib.loads(gateway_toml())["store"]["redis"])
    service = one("Service", "wasmgate-redis")
    assert url.scheme == "redis"
    assert url.hostname in {
        "wasmgate-redis",
        f"wasmgate-redis.{NAMESPACE}",
        f"wasmgate-redis.{NAMESPACE}.svc.cluster.local",
    }
    assert url.port in {p["port"] for p in service["spec"]["ports"]}
    limits = [f for f in tomllib.loads(gateway_toml())["filters"].values()]
    assert all(f["config"]["policy"] == "redis" for f in limits if f["plugin"] == "rate-limit")


def test_grace_period_covers_the_pause_and_the_drain() -> None:
    pod = GATEWAY["spec"]["template"]["spec"]
    pause = float(CONTAINER["lifecycle"]["preStop"]["exec"]["command"][1])
    drain = tomllib.loads(gateway_toml())["server"]["limits"]["drain_timeout"]
    assert pod["terminationGracePeriodSeconds"] > pause + drain


def test_rollout_never_drops_below_the_replica_count() -> None:
    spec = GATEWAY["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert one("PodDisruptionBudget", "wasmgate")["spec"]["maxUnavailable"] == 1


def test_pods_run_unprivileged() -> None:
    for deployment in (GATEWAY, REDIS):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
            assert "memory" in c["resources"]["limits"]
    user = containerfile()[-1].instructions
    assert last(user, "USER").split(":")[0] == str(
        GATEWAY["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    )


def test_rbac_binds_a_read_only_role_to_the_pods_account() -> None:
    account = GATEWAY["spec"]["template"]["spec"]["serviceAccountName"]
    one("ServiceAccount", account)
    binding = one("ClusterRoleBinding", "wasmgate")
    role = one(binding["roleRef"]["kind"], binding["roleRef"]["name"])
    assert {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE} in binding[
        "subjects"
    ]
    granted: set[tuple[str, str]] = set()
    for rule in role["rules"]:
        assert set(rule["verbs"]) <= READ_VERBS, rule
        granted |= {(g, r) for g in rule["apiGroups"] for r in rule["resources"]}
    assert {
        ("networking.k8s.io", "ingresses"),
        ("networking.k8s.io", "ingressclasses"),
        ("", "services"),
        ("", "secrets"),
        ("discovery.k8s.io", "endpointslices"),
        ("gateway.networking.k8s.io", "gatewayclasses"),
        ("gateway.networking.k8s.io", "gateways"),
        ("gateway.networking.k8s.io", "httproutes"),
        ("gateway.networking.k8s.io", "referencegrants"),
    } <= granted


def test_ingressclass_is_the_class_the_gateway_serves() -> None:
    classes = [d.name for d in DOCS if d.kind == "IngressClass"]
    assert classes == [Kubernetes.model_fields["ingress_class"].default]


# ------------------------------------------------------------------------------ kubectl


def _kubectl() -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed (Debian package: kubernetes-client)")
    return kubectl


def test_kubectl_builds_the_folder_offline(tmp_path: Path) -> None:
    kubectl = _kubectl()
    names = sorted(p.name for p in DEPLOY.glob("*.yaml"))
    for name in names:
        shutil.copy(DEPLOY / name, tmp_path / name)
    (tmp_path / "kustomization.yaml").write_text(
        "resources:\n" + "".join(f"  - {n}\n" for n in names)
    )
    done = subprocess.run(
        [kubectl, "kustomize", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    built = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in built) == sorted(
        (d.kind, d.name) for d in DOCS
    )


# --------------------------------------------------------------------------- Containerfile


def test_containerfile_builds_on_python_slim_and_runs_unprivileged() -> None:
    stages = containerfile()
    assert [s.base for s in stages] == ["python:3.11-slim"] * len(stages)
    final = stages[-1].instructions
    assert last(final, "USER").split(":")[0] not in {"0", "root"}
    # The image and the Deployment agree on ports and on where the gateway writes.
    assert {int(p) for p in last(final, "EXPOSE").split()} == set(container_ports(GATEWAY).values())
    image_env = dict(pair.partition("=")[::2] for pair in shlex.split(last(final, "ENV")))
    for var in CONTAINER["env"]:
        assert image_env.get(var["name"]) == var["value"], var["name"]
    # Everything the image copies from the build context exists in the repository.
    for stage in stages:
        for word, rest in stage.instructions:
            if word == "COPY" and not rest.startswith("--from"):
                for source in shlex.split(rest)[:-1]:
                    assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


_IGNORED = shutil.ignore_patterns("__pycache__", "node_modules", "*.egg-info")


@pytest.mark.skipif(
    not os.environ.get("WASMGATE_DEPLOY_CHECK"),
    reason="replays the Containerfile's pip installs from PyPI; run `make deploy-check`",
)
def test_containerfile_build_steps_replayed_in_a_fresh_venv(tmp_path: Path) -> None:
    """The build stage's COPY and RUN steps, with /opt/wasmgate and /src in tmp_path."""
    build = containerfile()[0]
    venv, src = tmp_path / "opt" / "wasmgate", tmp_path / "src"
    src.mkdir()
    env = {"PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    replayed = 0
    for word, rest in build.instructions:
        if word == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                env[name] = value
        elif word == "COPY":
            *sources, dest = shlex.split(rest)
            for source in sources:
                target = src / dest / (Path(source).name if dest.endswith("/") else "")
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, src / dest, dirs_exist_ok=True, ignore=_IGNORED)
                else:
                    shutil.copy(ROOT / source, target)
        elif word == "RUN":
            command = rest.replace("/opt/wasmgate", str(venv))
            # python:3.11-slim's python is 3.11; ours may be newer, which pip accepts too.
            command = re.sub(r"^python ", f"{sys.executable} ", command)
            # The project's pip cache makes the downloads a copy (the image sets none).
            env.pop("PIP_NO_CACHE_DIR", None)
            done = subprocess.run(
                command, shell=True, cwd=src, env=env, capture_output=True, text=True, timeout=300
            )
            assert done.returncode == 0, f"RUN {rest}\n{done.stdout}\n{done.stderr}"
            replayed += 1
    assert replayed >= 3
    # What the image runs: the installed (not editable) gateway checks the ConfigMap.
    checked = tmp_path / "gateway.toml"
    checked.write_text(loadable(gateway_toml()))
    done = subprocess.run(
        [str(venv / "bin" / "wasmgate"), "check", "-c", str(checked)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
