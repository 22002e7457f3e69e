"""The Python call's overhead over the Rust encode of the same update.

For each pipeline, one real gradient tiled to about 1M entries is encoded
alternately by `Encoder.encode` from Python (dict of float32 arrays -> bytes:
conversion, copy into the update, the encode with the GIL released, the bytes
object) and by the Rust encoder alone inside the extension (same build, same
update, no Python objects). Medians of each, and the overhead in percent.

    python core/python/examples/bench_overhead.py [--entries 1000000] [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import gradcodec
from gradcodec import _native

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import FIXTURES, read_safetensors


def tiled_update(entries: int) -> dict[str, np.ndarray]:
    """The ResFed-CNN gradient's tensors, each repeated along a new first axis
    (seeded permutations, like scripts/bench) until the update holds `entries`."""
    base = read_safetensors(FIXTURES / "resfed-cnn-grad-late.safetensors")
    total = sum(v.size for v in base.values())
    copies = max(1, round(entries / total))
    rng = np.random.default_rng(0)
    return {
        name: np.stack([rng.permutation(v.ravel()).reshape(v.shape) for _ in range(copies)])
        for name, v in base.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--pipelines", nargs="+", default=["f32", "co3-fp4", "qsgd", "topk-ef-1pct"]
    )
    args = parser.parse_args()
    update = tiled_update(args.entries)
    entries = sum(v.size for v in update.values())
    pairs = list(update.items())
    print(f"{entries} entries in {len(update)} tensors; medians of {args.repeats} alternating runs")
    print("| pipeline | Rust encode (ms) | Python encode (ms) | overhead |")
    print("|---|---:|---:|---:|")
    for name in args.pipelines:
        pipeline = gradcodec.pipeline(name)
        encoder = pipeline.encoder()
        encoder.encode(update)  # warm up both paths
        _native.time_rust_encode(pipeline._native, pairs, 1)
        rust, python = [], []
        for _ in range(args.repeats):
            rust.extend(_native.time_rust_encode(pipeline._native, pairs, 1))
            start = time.perf_counter()
            encoder.encode(update)
            python.append(time.perf_counter() - start)
        r, p = statistics.median(rust), statistics.median(python)
        print(f"| {name} | {r * 1e3:.2f} | {p * 1e3:.2f} | {100 * (p - r) / r:+.1f}% |")


if __name__ == "__main__":
    main()
