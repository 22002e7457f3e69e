"""Shared helpers of the Python tests: the repository, the CLI binary, the
snapshot fixtures (real gradients) read in the file's own tensor order."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "snapshots" / "fixtures"


def cli_path() -> Path:
    """The `gradcodec` CLI built by ./scripts/test (or GRADCODEC_CLI)."""
    path = Path(os.environ.get("GRADCODEC_CLI", ROOT / "target" / "debug" / "gradcodec"))
    if not path.is_file():
        pytest.fail(f"{path} not found: build the CLI first (cargo build -p gradcodec-cli)")
    return path


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """A float32 .safetensors file as name -> array, in the file's data order
    (the order the CLI reads and encodes them in)."""
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    header.pop("__metadata__", None)
    body = raw[8 + header_len :]
    ordered = sorted(header.items(), key=lambda item: item[1]["data_offsets"][0])
    out = {}
    for name, info in ordered:
        assert info["dtype"] == "F32", (name, info["dtype"])
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(body[start:end], dtype="<f4").reshape(info["shape"]).copy()
    return out


@pytest.fixture(scope="session")
def lenet_grad() -> dict[str, np.ndarray]:
    return read_safetensors(FIXTURES / "lenet5-grad.safetensors")
