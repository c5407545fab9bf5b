"""Shared by the foreign-client tests: where the binaries are, free ports."""

import os
import pathlib
import socket

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
