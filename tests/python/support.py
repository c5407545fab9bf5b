"""Shared by the foreign-client tests: where the binaries are, free ports,
the launcher."""

import os
import pathlib
import socket
import subprocess
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]


def binary(name: str) -> str:
    """The binary `name`, from `<NAME>_BIN` (e.g. TOOL_SERVICE_BIN), else
    the debug build in CARGO_TARGET_DIR (default: target)."""
    variable = name.upper().replace("-", "_") + "_BIN"
    target = ROOT / os.environ.get("CARGO_TARGET_DIR", "target")
    return os.environ.get(variable, str(target / "debug" / name))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TASKAGENT = binary("taskagent")


class Launcher:
    """`taskagent` in a fresh folder; `base` is the gateway's address, `url`
    its /mcp endpoint."""

    def __init__(self, **extra_env):
        self.folder = tempfile.TemporaryDirectory()
        self.port = free_port()
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "TOOL_SERVICE_ADDR": f"127.0.0.1:{free_port()}",
            "AGENT_SERVICE_ADDR": f"127.0.0.1:{free_port()}",
            "GATEWAY_ADDR": f"127.0.0.1:{self.port}",
            "LOG_LEVEL": "warn",
            **extra_env,
        }
        self.banner_file = pathlib.Path(self.folder.name) / "banner.txt"
        with open(self.banner_file, "w") as banner:
            self.process = subprocess.Popen([TASKAGENT], cwd=self.folder.name, env=self.env, stdout=banner)
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/mcp"
        deadline = time.time() + 30
        while subprocess.run([TASKAGENT, "probe", f"http://127.0.0.1:{self.port}/health"], capture_output=True).returncode:
            assert time.time() < deadline, "the launcher did not become healthy"
            time.sleep(0.1)

    def banner(self) -> str:
        """What the launcher printed (its banner: addresses, token, links)."""
        return self.banner_file.read_text()

    def token(self, user: str) -> str:
        out = subprocess.run([TASKAGENT, "token", "--user", user], cwd=self.folder.name, env=self.env,
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()

    def close(self):
        self.process.terminate()
        assert self.process.wait(timeout=20) == 0
        self.folder.cleanup()
