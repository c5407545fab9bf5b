"""Checks the deployment files without a Docker engine (none runs here).

- docker-compose.yml parses (PyYAML, with its merge keys), every dependency
  names a service, every service has a health check, every taskagent service
  runs a binary the workspace builds, and every variable it sets is one the
  services read (a typo would be silently ignored in production).
- The Dockerfile builds the one binary (`taskagent`) with its dependencies in
  a cached layer of their own (cargo-chef), runs it as the entrypoint under
  a numeric non-root user, and declares /data a volume; `taskagent NAME`
  runs each service as its own binary does (checked by hand below).
- deploy/k8s: each overlay renders (`kubectl kustomize`) and every object
  validates against the Kubernetes OpenAPI schemas offline
  (kubernetes-validate, which ships them, --strict); then what the design
  asks of each service: probes, non-root read-only pods, resources, a
  headless Service per gRPC service, a budget and an autoscaler, network
  policies, secrets referenced and never inlined.
- The health check commands inside the images run by hand against the real
  launcher: `taskagent probe http://.../health` must exit 0 while healthy and
  non-zero for a dead address. (grpc_health_probe speaks grpc.health.v1, which
  tests/python checks with grpcio.)
"""

import os
import pathlib
import re
import socket
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = ROOT / os.environ.get("CARGO_TARGET_DIR", "target") / "debug"
SERVICES = {"tool-service", "agent-service", "gateway"}
# What the image's entrypoint (`taskagent`) accepts as its first argument.
ENTRYPOINT_ARGS = SERVICES | {"migrate", "certs", "probe", "token", "chat", "mcp"}


def known_variables() -> set[str]:
    names = set()
    for path in ROOT.glob("*/src/**/*.rs"):
        names |= set(re.findall(r'"([A-Z][A-Z0-9_]{2,})"', path.read_text()))
    for path in (ROOT / "src").glob("*.rs"):
        names |= set(re.findall(r'"([A-Z][A-Z0-9_]{2,})"', path.read_text()))
    return names


def check_compose() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    variables = known_variables()
    # A one-shot job (restart "no") runs to its end; the others run on and say
    # when they are healthy.
    one_shot = {name for name, service in services.items() if service.get("restart") == "no"}
    for name, service in services.items():
        assert name in one_shot or "healthcheck" in service, f"{name}: no health check"
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name}: depends on unknown {dependency}"
            wanted = "service_completed_successfully" if dependency in one_shot else "service_healthy"
            assert condition["condition"] == wanted, f"{name}: waits for {dependency}: {wanted}"
        if service.get("image", "").startswith("taskagent"):
            assert service["build"] == ".", f"{name}: builds the Dockerfile"
            command = service["command"][0]
            assert command in ENTRYPOINT_ARGS, f"{name}: taskagent does not run {command!r}"
            for variable in service.get("environment", {}):
                assert variable in variables, f"{name}: {variable} is read by no service"
    print(f"docker-compose.yml: {len(services)} services check out")


def check_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    built = set(re.findall(r"target/release/([a-z-]+)", text))
    assert built == {"taskagent"}, f"the image ships {built}, not the one launcher binary"
    cook = text.index("cargo chef cook")
    assert text.index("COPY --from=plan") < cook < text.index("COPY . .", cook), (
        "dependencies are cooked from the recipe before the sources are copied"
    )
    assert re.search(r'^ENTRYPOINT \["taskagent"\]$', text, re.M), "taskagent is the entrypoint"
    assert re.search(r"^USER 10001:10001$", text, re.M), "the image runs as a numeric non-root user"
    assert re.search(r'^VOLUME \["/data"\]$', text, re.M), "/data is a volume"
    assert "sqlite:///data/" in text, "the SQLite default lives in /data"
    print("Dockerfile: one binary, cached dependencies, entrypoint, user and volume check out")


def check_entrypoint() -> None:
    """`taskagent NAME` is the NAME binary: same help, and it serves."""
    for service in sorted(SERVICES):
        alone = subprocess.run([BIN / service, "--version"], capture_output=True, text=True, check=True)
        via = subprocess.run([BIN / "taskagent", service, "--version"], capture_output=True, text=True, check=True)
        assert via.stdout == alone.stdout, f"taskagent {service}: {via.stdout!r}"
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        env = {
            "PATH": os.environ.get("PATH", ""),
            "TOOL_SERVICE_ADDR": f"127.0.0.1:{port}",
            "DATABASE_URL": f"sqlite://{folder}/tasks.db",
            "LOG_LEVEL": "warn",
        }
        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        serve_until([BIN / "taskagent", "tool-service"], env, listening, "taskagent tool-service")
    print("entrypoint: taskagent tool-service / agent-service / gateway run each service")


def serve_until(command: list, env: dict, ready, what: str, cwd=None) -> None:
    """Starts `command`, waits (10 s at most) until `ready()`, then stops it
    with SIGTERM, which it must answer by exiting 0."""
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if ready():
                break
            time.sleep(0.1)
        else:
            sys.exit(f"{what} never became ready")
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0, f"{what} exits 0 on SIGTERM"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_health_commands() -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "TOOL_SERVICE_ADDR": f"127.0.0.1:{free_port()}",
            "AGENT_SERVICE_ADDR": f"127.0.0.1:{free_port()}",
            "GATEWAY_ADDR": f"127.0.0.1:{port}",
            "LOG_LEVEL": "warn",
        }
        probe = [BIN / "taskagent", "probe", f"http://127.0.0.1:{port}/health"]

        def healthy() -> bool:
            return subprocess.run(probe, capture_output=True).returncode == 0

        serve_until([BIN / "taskagent"], env, healthy, "the launcher (taskagent probe)", cwd=folder)
        dead = subprocess.run(probe, capture_output=True)
        assert dead.returncode != 0, "the probe fails when nothing answers"
    print("health check commands: taskagent probe passes while healthy, fails when down")


KUBERNETES_VERSION = "1.30.0"


def check_kubernetes() -> None:
    for overlay in sorted((ROOT / "deploy/k8s/overlays").iterdir()):
        rendered = subprocess.run(
            ["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=True
        ).stdout
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
            file.write(rendered)
            file.flush()
            subprocess.run(
                ["kubernetes-validate", "--strict", "--quiet", "-k", KUBERNETES_VERSION, file.name],
                check=True,
            )
        objects = [o for o in yaml.safe_load_all(rendered) if o]
        by_kind: dict[str, dict[str, dict]] = {}
        for o in objects:
            by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
        assert "Secret" not in by_kind, f"{overlay.name}: secrets are referenced, never inlined"
        known = known_variables()
        deployments = by_kind["Deployment"]
        assert set(deployments) == SERVICES, f"{overlay.name}: deployments {set(deployments)}"
        for name, deployment in deployments.items():
            pod = deployment["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True, f"{name}: runAsNonRoot"
            (container,) = pod["containers"]
            assert container["args"] == [name], f"{name}: the image runs {container['args']}"
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, f"{name}: read-only root"
            assert container["resources"]["requests"] and container["resources"]["limits"], f"{name}: resources"
            assert "readinessProbe" in container and "livenessProbe" in container, f"{name}: probes"
            if name != "gateway":
                assert container["readinessProbe"]["grpc"]["service"].startswith("taskagent.v1."), (
                    f"{name}: a gRPC readiness probe with the service name"
                )
                assert by_kind["Service"][name]["spec"]["clusterIP"] == "None", f"{name}: headless"
            for variable in container["env"]:
                assert variable["name"] in known, f"{name}: {variable['name']} is read by no service"
                assert "value" not in variable or variable["name"] not in {
                    "JWT_SECRET", "DATABASE_URL", "OPENAI_API_KEY", "REDIS_URL"
                }, f"{name}: {variable['name']} inlined"
            assert name in by_kind["PodDisruptionBudget"], f"{name}: no disruption budget"
            assert name in by_kind["HorizontalPodAutoscaler"], f"{name}: no autoscaler"
            assert name in by_kind["NetworkPolicy"], f"{name}: no network policy"
        for variable in by_kind["ConfigMap"]["taskagent-settings"]["data"]:
            assert variable in known, f"settings: {variable} is read by no service"
        assert "default-deny" in by_kind["NetworkPolicy"], f"{overlay.name}: no default deny"
        print(f"deploy/k8s/overlays/{overlay.name}: {len(objects)} objects valid for Kubernetes {KUBERNETES_VERSION}")


if __name__ == "__main__":
    check_compose()
    check_dockerfile()
    check_kubernetes()
    check_entrypoint()
    check_health_commands()
