"""scripts/bench-peers' driver: gradcodec's pipelines against their torch-op
peers (peers.compressors), encode and decode on one thread, side by side in one
run, and the end-to-end time to deliver one update over three links.

    PYTHONPATH=scripts python -m peers [--with-gradcodec BIN] [--min-time S]
        [--rounds N] [--quick] [--methods a,b] [--markdown OUT.md] [--json OUT.jsonl]
    PYTHONPATH=scripts python -m peers --self-test

Input: the real gradient gradcodec's bench uses, tiled as ``gradcodec perf
--tile`` tiles it (core/cli/src/perf.rs ``tile``): copies = ⌈tile / entries⌉,
each tensor stacked that many times along its first axis, every copy after the
first a permutation of its values seeded by the copy's index. The sizes and the
values are the same as gradcodec's; the permutations are torch's (randperm), not
the Rust ChaCha8 shuffle, so the order within copies differs.

Each figure is the median over repetitions timed for at least --min-time
seconds (and at least 3) after a warm-up, the way ``gradcodec perf`` times.
With --with-gradcodec the methods alternate, peer then gradcodec, for --rounds
rounds, so both see the same machine; each side's figure is its best round (a
shared machine only ever slows a round down). The peers with memory (error
feedback, DGC) are timed in the steady state: every repetition compensates with
the memory the previous one left (--reset-state: forget it before each
repetition, as ``gradcodec perf`` resets its encoder).

stdout: JSON lines (``kind`` peer / gradcodec per round, then comparison per
method); stderr: progress and the markdown tables.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from peers.compressors import Peer, make_peers, payload_bits

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "snapshots/fixtures/resfed-cnn-grad-late.safetensors"
PIPELINES = ROOT / "pipelines"
LINKS = [("10 Mbit/s", 10e6), ("1 Gbit/s", 1e9), ("10 Gbit/s", 10e9)]
DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16}

Update = list[tuple[str, torch.Tensor]]


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


# ------------------------------------------------------------------- input
def read_safetensors(path: Path) -> Update:
    """The tensors of a .safetensors file (8-byte little-endian header length,
    JSON header, raw little-endian data), in header order, as f32."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    base = 8 + length
    update = []
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        values = np.frombuffer(data[base + start : base + end], dtype=DTYPES[meta["dtype"]])
        array = values.astype(np.float32).reshape(meta["shape"])
        update.append((name, torch.from_numpy(array.copy())))
    return update


def tile(update: Update, at_least: int) -> Update:
    """gradcodec perf's --tile: each tensor stacked ⌈at_least / entries⌉ times
    along its first axis (a 0-d tensor becomes a vector), copy c > 0 a
    permutation of its values seeded by c."""
    entries = max(1, sum(t.numel() for _, t in update))
    copies = max(1, -(-at_least // entries))
    if copies == 1:
        return update
    tiled = []
    for name, tensor in update:
        flat = tensor.flatten()
        parts = [flat]
        for copy in range(1, copies):
            generator = torch.Generator().manual_seed(copy)
            parts.append(flat[torch.randperm(flat.numel(), generator=generator)])
        shape = list(tensor.shape)
        if shape:
            shape[0] *= copies
        else:
            shape = [copies]
        tiled.append((name, torch.cat(parts).view(shape)))
    return tiled


def entries_of(update: Update) -> int:
    return sum(t.numel() for _, t in update)


# ------------------------------------------------------------------ timing
def median_time(run: Callable[[], object], min_time: float, min_reps: int = 3) -> tuple[float, int]:
    """Median seconds of ``run`` over at least ``min_time`` and ``min_reps``
    repetitions (at most 1000), after one warm-up."""
    run()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - started < min_time and len(times) < 1000):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times)


def measure_peer(peer: Peer, update: Update, min_time: float, reset_state: bool) -> dict:
    """One peer's encode / decode throughput on the whole update, and its size."""
    entries = entries_of(update)

    def encode():
        if reset_state:
            peer.reset()
        return [peer.compress(tensor, name) for name, tensor in update]

    peer.reset()
    encode_s, reps = median_time(encode, min_time)
    encoded = encode()  # the steady state's message (or round 0's with --reset-state)

    def decode():
        return [peer.decompress(payload, ctx) for payload, ctx in encoded]

    decode_s, _ = median_time(decode, min_time)
    bits = sum(payload_bits(payload) for payload, _ in encoded)
    return {
        "kind": "peer",
        "method": peer.method,
        "follows": peer.follows,
        "entries": entries,
        "tensors": len(update),
        "bits_per_entry": bits / entries,
        "encode_meps": entries / encode_s / 1e6,
        "decode_meps": entries / decode_s / 1e6,
        "repetitions": reps,
        "threads": torch.get_num_threads(),
        "steady_state": not reset_state,
    }


# --------------------------------------------------------------- gradcodec
def stage_gradcodec(binary: Path) -> Path:
    """A private copy of the binary and its plugins (libgradcodec_plugin_*.so
    beside it), so rebuilds during the run do not change what is measured."""
    binary = binary.resolve()
    if not binary.is_file():
        sys.exit(f"bench-peers: no gradcodec binary at {binary}")
    staged = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    shutil.copy2(binary, staged / "gradcodec")
    plugins = sorted(binary.parent.glob("libgradcodec_plugin_*.so"))
    for plugin in plugins:
        shutil.copy2(plugin, staged / plugin.name)
    log(f"bench-peers: {binary} and {len(plugins)} plugins copied to {staged}")
    return staged


def pipelines_for(method: str) -> list[str]:
    """The pipelines a method is timed with: ``pipelines/<method>.yaml`` (the
    entropy-coded one), and ``<method>-bitpack.yaml`` where it exists (the
    same quantizer on the peer's fixed-width wire)."""
    names = [method]
    if (PIPELINES / f"{method}-bitpack.yaml").is_file():
        names.append(f"{method}-bitpack")
    return names


def measure_gradcodec(
    staged: Path, method: str, input_path: Path, tile_to: int, min_time: float
) -> dict:
    """``gradcodec perf --threads 1`` on one pipeline (``method`` names its file
    in pipelines/); its pipeline line."""
    pipeline = PIPELINES / f"{method}.yaml"
    command = [
        str(staged / "gradcodec"),
        "perf",
        "--threads",
        "1",
        "--tile",
        str(tile_to),
        "--input",
        str(input_path),
        "--min-time",
        str(min_time),
        "--pipeline",
        str(pipeline),
    ]
    env = dict(os.environ, GRADCODEC_PLUGIN_PATH=str(staged))
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"bench-peers: {' '.join(command)} failed:\n{done.stderr}")
    return parse_gradcodec(done.stdout, method)


def parse_gradcodec(stdout: str, method: str) -> dict:
    for line in stdout.splitlines():
        record = json.loads(line)
        if record.get("kind") == "pipeline":
            return {
                "kind": "gradcodec",
                "method": method,
                "pipeline": record["pipeline"],
                "entries": record["entries"],
                "bits_per_entry": record["bits_per_entry"],
                "encode_meps": record["encode_mentries_per_s"],
                "decode_meps": record["decode_mentries_per_s"],
                "repetitions": record["repetitions"],
                "threads": record["threads"],
            }
    raise ValueError(f"no pipeline line from gradcodec perf for {method}")


# ----------------------------------------------------------------- checks
def check_peer(peer: Peer, update: Update) -> str:
    """decompress(compress(x)) checked against what the method promises; raises
    AssertionError, else returns a one-line summary."""
    peer.reset()
    name, x = max(update, key=lambda item: item[1].numel())
    flat = x.flatten()
    n = flat.numel()
    payload, ctx = peer.compress(x, name)
    decoded = peer.decompress(payload, ctx).clone()
    assert decoded.shape == x.shape, f"{peer.method}: shape {decoded.shape} != {x.shape}"
    d = decoded.flatten()
    rel = lambda a, b: float((a - b).norm() / b.norm().clamp_min(1e-30))  # noqa: E731
    method = peer.method
    if method == "fp16":
        bound = flat.abs() * 2.0**-11 + 2.0**-24
        assert bool(((d - flat).abs() <= bound).all()), "fp16: error above half an ulp"
        summary = f"max |err| {float((d - flat).abs().max()):.2e}"
    elif method == "qsgd":
        levels, norms = payload
        s, bucket = peer.compressor.s, peer.compressor.bucket
        assert levels.dtype == torch.int8 and int(levels.abs().max()) <= s
        spread = norms.repeat_interleave(bucket)[:n]
        assert bool(((d - flat).abs() <= spread / s * (1 + 1e-5)).all()), "qsgd: error above norm/s"
        mean = torch.stack(
            [peer.decompress(*peer.compress(x, name)).flatten() for _ in range(16)]
        ).mean(0)
        single, averaged = rel(d, flat), rel(mean, flat)
        assert averaged < 0.5 * single, f"qsgd: biased? 16-draw mean error {averaged} vs {single}"
        summary = f"rel err {single:.3f}, 16-draw mean {averaged:.3f}"
    elif method == "terngrad":
        levels, scalar = payload
        assert set(levels.unique().tolist()) <= {-1, 0, 1}
        bound = 2.5 * float(flat.std(correction=0))
        clipped = flat.clamp(-bound, bound)
        assert math.isclose(float(scalar), float(clipped.abs().max()), rel_tol=1e-5)
        mean = torch.stack(
            [peer.decompress(*peer.compress(x, name)).flatten() for _ in range(16)]
        ).mean(0)
        single, averaged = rel(d, clipped), rel(mean, clipped)
        assert averaged < 0.5 * single, f"terngrad: biased? {averaged} vs {single}"
        summary = f"rel err vs clipped {single:.3f}, 16-draw mean {averaged:.3f}"
    elif method in ("signsgd-ef", "topk-ef-1pct", "dgc"):
        if method == "signsgd-ef":
            mean = float(flat.abs().mean())
            assert bool(torch.allclose(d.abs(), torch.full_like(d, mean)))
            assert bool(((d >= 0) == (flat >= 0)).all()), "signsgd-ef: a sign flipped"
        elif method == "topk-ef-1pct":
            k = max(1, int(n * 0.01))
            kept = d != 0
            assert int(kept.sum()) == k, f"top-k kept {int(kept.sum())}, not {k}"
            assert float(flat[kept].abs().min()) >= float(flat[~kept].abs().max())
            assert bool((d[kept] == flat[kept]).all())
        else:
            target = n * 0.001
            kept = d != 0
            assert 1 <= int(kept.sum()) <= 4 * target + 8, f"dgc sent {int(kept.sum())}"
            assert float(flat[kept].abs().min()) >= float(flat[~kept].abs().max())
        # Error feedback loses nothing: the sum of what was sent and what is
        # held back equals the sum of the inputs (for DGC, momentum correction
        # with m = 0 would; with m > 0 the sent entries' memory is cleared).
        sent = d.clone()
        for _ in range(3):
            payload, ctx = peer.compress(x, name)
            sent += peer.decompress(payload, ctx).flatten()
        if method == "dgc":
            v = peer.memory.gradients[name].flatten()
            assert bool((v[peer.decompress(payload, ctx).flatten() != 0] == 0).all()), (
                "dgc: memory not cleared where sent"
            )
            summary = f"sent {int(kept.sum())} of {n} (target {target:.0f}), memory masked"
        else:
            held = peer.memory.residuals[name].flatten()
            err = rel(sent + held, 4 * flat)
            assert err < 1e-5, f"{method}: error feedback lost mass ({err})"
            summary = f"Σ sent + residual = Σ inputs (rel {err:.1e})"
    else:
        raise AssertionError(f"no check for {method}")
    peer.reset()
    return summary


# ----------------------------------------------------------------- tables
def combine(records: list[dict]) -> dict:
    """The best round of one side of one method."""
    best = dict(records[0])
    best["encode_meps"] = max(r["encode_meps"] for r in records)
    best["decode_meps"] = max(r["decode_meps"] for r in records)
    best["rounds"] = len(records)
    return best


def end_to_end_ms(record: dict, rate: float) -> float:
    entries = record["entries"]
    encode = entries / (record["encode_meps"] * 1e6)
    decode = entries / (record["decode_meps"] * 1e6)
    return 1e3 * (encode + record["bits_per_entry"] * entries / rate + decode)


def comparison(method: str, peer: dict, gradcodec: dict | None) -> dict:
    line = {
        "kind": "comparison",
        "method": method,
        "pipeline": gradcodec["pipeline"] if gradcodec else None,
        "entries": peer["entries"],
        "peer": {k: peer[k] for k in ("bits_per_entry", "encode_meps", "decode_meps")},
    }
    line["peer_end_to_end_ms"] = {name: end_to_end_ms(peer, rate) for name, rate in LINKS}
    if gradcodec is not None:
        line["gradcodec"] = {
            k: gradcodec[k] for k in ("bits_per_entry", "encode_meps", "decode_meps")
        }
        line["encode_ratio"] = gradcodec["encode_meps"] / peer["encode_meps"]
        line["decode_ratio"] = gradcodec["decode_meps"] / peer["decode_meps"]
        line["matched"] = line["encode_ratio"] >= 1 and line["decode_ratio"] >= 1
        line["gradcodec_end_to_end_ms"] = {
            name: end_to_end_ms(gradcodec, rate) for name, rate in LINKS
        }
    return line


def fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def markdown(lines: list[dict], peers: dict[str, Peer], settings: dict) -> str:
    with_gc = all("gradcodec" in line for line in lines)
    out = [
        f"Input: {settings['input']}, tiled to {settings['entries']:,} entries "
        f"({settings['tensors']} tensors); one thread; medians over ≥ "
        f"{settings['min_time']} s per figure, best of {settings['rounds']} alternating "
        f"round(s); torch {torch.__version__}"
        + (
            "; peers with memory in the steady state"
            if settings["steady"]
            else "; peers' memory reset before each repetition"
        )
        + ".",
        "",
    ]
    if with_gc:
        out += [
            "Throughput, M entries/s (ratio = gradcodec / peer; matched = gradcodec at "
            "least as fast, encode and decode):",
            "",
            "| method | pipeline | peer bits/entry | gradcodec bits/entry | peer enc "
            "| gradcodec enc | enc ratio | peer dec | gradcodec dec | dec ratio | matched? |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
        ]
        for line in lines:
            p, g = line["peer"], line["gradcodec"]
            misses = [
                what
                for what, key in (("enc", "encode_ratio"), ("dec", "decode_ratio"))
                if line[key] < 1
            ]
            matched = "yes" if not misses else "no (" + ", ".join(misses) + ")"
            out.append(
                f"| {line['method']} | {line['pipeline']} | {p['bits_per_entry']:.3f} "
                f"| {g['bits_per_entry']:.3f} "
                f"| {fmt(p['encode_meps'])} | {fmt(g['encode_meps'])} | {line['encode_ratio']:.2f} "
                f"| {fmt(p['decode_meps'])} | {fmt(g['decode_meps'])} | {line['decode_ratio']:.2f} "
                f"| {matched} |"
            )
        out += [
            "",
            "Time to deliver one update (encode + bits / link rate + decode), ms:",
            "",
            "| method | pipeline | "
            + " | ".join(f"peer {n} | gradcodec {n}" for n, _ in LINKS)
            + " |",
            "|---|---|" + "--:|" * (2 * len(LINKS)),
        ]
        for line in lines:
            cells = [
                f"{fmt(line['peer_end_to_end_ms'][n])} | {fmt(line['gradcodec_end_to_end_ms'][n])}"
                for n, _ in LINKS
            ]
            out.append(f"| {line['method']} | {line['pipeline']} | " + " | ".join(cells) + " |")
    else:
        out += [
            "| method | bits/entry | enc M/s | dec M/s | "
            + " | ".join(f"{n} ms" for n, _ in LINKS)
            + " |",
            "|---|--:|--:|--:|" + "--:|" * len(LINKS),
        ]
        for line in lines:
            p = line["peer"]
            cells = [fmt(line["peer_end_to_end_ms"][n]) for n, _ in LINKS]
            out.append(
                f"| {line['method']} | {p['bits_per_entry']:.3f} | {fmt(p['encode_meps'])} "
                f"| {fmt(p['decode_meps'])} | " + " | ".join(cells) + " |"
            )
    out += [
        "",
        "The peers (plain torch ops, one tensor at a time, scripts/peers/compressors.py):",
        "",
    ]
    described = set()
    for line in lines:
        if line["method"] in described:
            continue
        described.add(line["method"])
        peer = peers[line["method"]]
        out.append(f"- {peer.method}: {peer.follows}; {peer.settings}.")
    return "\n".join(out) + "\n"


# -------------------------------------------------------------------- run
def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    peers = make_peers(args.qsgd_levels, args.qsgd_bucket)
    methods = list(peers) if args.methods is None else args.methods.split(",")
    for method in methods:
        if method not in peers:
            sys.exit(f"bench-peers: no peer {method!r} (peers: {', '.join(peers)})")
        if args.with_gradcodec and not (PIPELINES / f"{method}.yaml").is_file():
            sys.exit(f"bench-peers: no pipelines/{method}.yaml")
    staged = stage_gradcodec(Path(args.with_gradcodec)) if args.with_gradcodec else None
    update = tile(read_safetensors(Path(args.input)), args.tile)
    entries = entries_of(update)
    log(f"bench-peers: {args.input}: {len(update)} tensors tiled to {entries:,} entries")
    for method in methods:
        log(f"  check {method}: {check_peer(peers[method], update)}")
    jsonl = open(args.json, "w") if args.json else None

    def emit(record: dict) -> None:
        text = json.dumps(record)
        print(text, flush=True)
        if jsonl:
            jsonl.write(text + "\n")

    results: dict[str, dict] = {
        m: {"peer": [], "gradcodec": {name: [] for name in pipelines_for(m)}} for m in methods
    }
    for round_ in range(1, args.rounds + 1):
        for method in methods:
            record = measure_peer(peers[method], update, args.min_time, args.reset_state)
            record["round"] = round_
            emit(record)
            results[method]["peer"].append(record)
            log(
                f"  round {round_} {method}: peer enc {fmt(record['encode_meps'])} "
                f"dec {fmt(record['decode_meps'])} M/s"
            )
            if staged is None:
                continue
            for name in pipelines_for(method):
                record = measure_gradcodec(staged, name, Path(args.input), args.tile, args.min_time)
                record["method"] = method
                record["round"] = round_
                if record["entries"] != entries:
                    log(
                        f"  warning: gradcodec tiled to {record['entries']} entries, "
                        f"the peers to {entries}"
                    )
                emit(record)
                results[method]["gradcodec"][name].append(record)
                log(
                    f"  round {round_} {name}: gradcodec enc {fmt(record['encode_meps'])} "
                    f"dec {fmt(record['decode_meps'])} M/s"
                )
    lines = []
    for method in methods:
        peer = combine(results[method]["peer"])
        timed = [records for records in results[method]["gradcodec"].values() if records]
        for records in timed or [None]:
            line = comparison(method, peer, combine(records) if records else None)
            emit(line)
            lines.append(line)
    if jsonl:
        jsonl.close()
    settings = {
        "input": os.path.relpath(args.input, ROOT),
        "entries": entries,
        "tensors": len(update),
        "min_time": args.min_time,
        "rounds": args.rounds,
        "steady": not args.reset_state,
    }
    table = markdown(lines, peers, settings)
    log("")
    log(table)
    if args.markdown:
        Path(args.markdown).write_text(table)
    if staged is not None:
        shutil.rmtree(staged, ignore_errors=True)


# -------------------------------------------------------------- self-test
def self_test() -> None:
    """Seconds: the tiling, every peer's round-trip check on the real (untiled)
    gradient and a tiled slice, the timing loop, the gradcodec line parser and
    both tables."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    started = time.perf_counter()
    original = read_safetensors(FIXTURE)
    assert len(original) == 15 and entries_of(original) == 112_896
    tiled = tile(original, 1_000_000)
    assert entries_of(tiled) == 1_016_064, entries_of(tiled)
    for (name, a), (_, b) in zip(original, tiled, strict=True):
        assert b.shape[0] == 9 * a.shape[0] and b.shape[1:] == a.shape[1:], name
        copies = b.flatten().view(9, -1)
        assert bool((copies[0] == a.flatten()).all())
        assert bool((copies[3].sort().values == a.flatten().sort().values).all())
    assert tile(original, 10) is original
    small = tile(original, 300_000)
    peers = make_peers()
    for method, peer in peers.items():
        for update in (original, small):
            check_peer(peer, update)
        # A bucket-straddling, odd-sized tensor and an all-zero one.
        odd = [("odd", torch.randn(1000, 3)), ("zero", torch.zeros(700))]
        for name, x in odd:
            payload, ctx = peer.compress(x, name)
            y = peer.decompress(payload, ctx)
            assert y.shape == x.shape and bool(torch.isfinite(y).all()), (method, name)
        peer.reset()
    assert pipelines_for("terngrad") == ["terngrad", "terngrad-bitpack"]
    assert pipelines_for("fp16") == ["fp16"]
    reps = median_time(lambda: None, 0.01)[1]
    assert reps >= 3
    record = measure_peer(peers["fp16"], small, 0.01, reset_state=False)
    assert record["bits_per_entry"] == 16 and record["encode_meps"] > 0
    gc_line = json.dumps(
        {
            "kind": "pipeline",
            "pipeline": "fp16",
            "entries": record["entries"],
            "threads": 1,
            "bits_per_entry": 16.0057,
            "encode_mentries_per_s": 500.0,
            "decode_mentries_per_s": 1.0,
            "repetitions": 9,
        }
    )
    gc = parse_gradcodec('{"kind":"baselines"}\n' + gc_line + "\n", "fp16")
    line = comparison("fp16", record, gc)
    assert not line["matched"]
    link = line["gradcodec_end_to_end_ms"]["10 Mbit/s"]
    expect = 1e3 * (record["entries"] * (1 / 500e6 + 16.0057 / 10e6 + 1 / 1e6))
    assert math.isclose(link, expect, rel_tol=1e-9)
    settings = {
        "input": "x",
        "entries": 1,
        "tensors": 1,
        "min_time": 0.01,
        "rounds": 1,
        "steady": True,
    }
    text = markdown([line], peers, settings)
    assert "| fp16 |" in text and "| no (" in text
    assert "| fp16 |" in markdown([comparison("fp16", record, None)], peers, settings)
    log(f"bench-peers self-test: ok ({time.perf_counter() - started:.1f} s)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="scripts/bench-peers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--with-gradcodec",
        metavar="BIN",
        help="also time gradcodec perf with this binary (plugins beside it)",
    )
    parser.add_argument(
        "--min-time", type=float, default=1.0, help="seconds per figure (default 1.0)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="alternating rounds, peer then gradcodec per method (default 2)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="plumbing check: --min-time 0.05, one round"
    )
    parser.add_argument("--methods", help="comma-separated subset (default: all six)")
    parser.add_argument("--input", default=str(FIXTURE), help="the update (.safetensors)")
    parser.add_argument(
        "--tile",
        type=int,
        default=1_000_000,
        help="tile the input to at least this many entries (default 1000000)",
    )
    parser.add_argument(
        "--reset-state",
        action="store_true",
        help="forget the peers' memory before each encode repetition",
    )
    parser.add_argument("--qsgd-levels", type=int, default=16)
    parser.add_argument("--qsgd-bucket", type=int, default=512)
    parser.add_argument("--markdown", metavar="OUT.md", help="also write the tables here")
    parser.add_argument("--json", metavar="OUT.jsonl", help="also write the JSON lines here")
    parser.add_argument("--self-test", action="store_true", help="run the self-test and exit")
    args = parser.parse_args(argv)
    if args.self_test:
        self_test()
        return
    if args.quick:
        args.min_time, args.rounds = 0.05, 1
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    run(args)


if __name__ == "__main__":
    main()
