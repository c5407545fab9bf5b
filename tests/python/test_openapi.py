"""The gateway's HTTP contract, checked by schemathesis (PyPI) against the
real launcher (TASKAGENT_BIN, default target/debug/taskagent): every
operation of /openapi.json with generated positive and negative cases and
every check: no 5xx, every status, header, content type and body as the
document says, valid data accepted, invalid data and missing tokens refused.
The settings are in tests/schemathesis/schemathesis.toml;
SCHEMATHESIS_EXAMPLES and SCHEMATHESIS_SEED change the size and the seed of
the run (CI: 40 cases per operation, a fixed seed)."""

import os
import pathlib
import subprocess
import sys

from support import ROOT, Launcher

CONFIG = ROOT / "tests" / "schemathesis" / "schemathesis.toml"
SCHEMATHESIS = pathlib.Path(sys.executable).parent / "schemathesis"


def test_every_operation_keeps_the_openapi_contract():
    # A budget no generated run reaches: 429 is documented, but the checks
    # should see the operations answer.
    running = Launcher(RATE_LIMIT="1000000")
    try:
        command = [
            str(SCHEMATHESIS), "--config-file", str(CONFIG), "--no-color", "run",
            f"{running.base}/openapi.json",
            "--header", f"Authorization: Bearer {running.token('alice')}",
            "--checks", "all",
            "--max-examples", os.environ.get("SCHEMATHESIS_EXAMPLES", "40"),
            "--seed", os.environ.get("SCHEMATHESIS_SEED", "20261130"),
            "--workers", "2",
        ]
        # Run in the launcher's folder: schemathesis keeps a cache where it runs.
        result = subprocess.run(command, cwd=running.folder.name, capture_output=True, text=True, timeout=1200)
        report = result.stdout + result.stderr
        assert result.returncode == 0, report[-30000:]
        assert "Tested: 14" in report, report[-5000:]
    finally:
        running.close()
