"""The README's internal-client example, run as printed: tool-service with
JWT_SECRET and mutual TLS (certificates from `taskagent certs`), then
examples/internal_client.py with a token from `taskagent token`."""

import os
import pathlib
import subprocess
import sys

import grpc
from support import ROOT, binary, free_port

SECRET = "an-example-secret-of-at-least-32-characters"


def test_the_internal_client_example_works_as_printed(tmp_path: pathlib.Path):
    # The README's set-up, in a scratch folder beside a view of proto/.
    (tmp_path / "proto").symlink_to(ROOT / "proto")
    subprocess.run([binary("taskagent"), "certs", "--out", "certs"], cwd=tmp_path, check=True)
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": f"sqlite://{tmp_path / 'tasks.db'}",
        "TOOL_SERVICE_ADDR": f"127.0.0.1:{port}",
        "JWT_SECRET": SECRET,
        "TLS_CERT_FILE": "certs/tool-service.pem",
        "TLS_KEY_FILE": "certs/tool-service.key",
        "TLS_CA_FILE": "certs/ca.pem",
        "LOG_LEVEL": "warn",
    }
    token = subprocess.run(
        [binary("taskagent"), "token", "--user", "alice"],
        cwd=tmp_path, env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()
    server = subprocess.Popen([binary("tool-service")], cwd=tmp_path, env=env)
    try:
        ca = (tmp_path / "certs" / "ca.pem").read_bytes()
        with grpc.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials(ca)) as ch:
            grpc.channel_ready_future(ch).result(timeout=20)
        example = ROOT / "examples" / "internal_client.py"
        readme = (ROOT / "README.md").read_text()
        assert example.read_text().split('"""', 2)[2].strip() in readme, \
            "the README prints examples/internal_client.py as it is"
        run = subprocess.run(
            [sys.executable, str(example)],
            cwd=tmp_path,
            env={**os.environ, "TOOL_SERVICE": f"localhost:{port}", "TOKEN": token},
            capture_output=True, text=True, timeout=120,
        )
        assert run.returncode == 0, run.stderr
        lines = run.stdout.splitlines()
        assert lines[0] == "created task 1: Buy milk", run.stdout
        assert lines[1] == "alice's tasks: ['Buy milk']", run.stdout
        assert lines[2].startswith("without proof: UNAUTHENTICATED Missing credentials"), run.stdout
    finally:
        server.terminate()
        assert server.wait(timeout=20) == 0
