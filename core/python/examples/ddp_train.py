"""DDP training of LeNet-5 on Fashion-MNIST with gradient-compression hooks
side by side: plain allreduce (no hook), torch's ``fp16_compress_hook``,
torch's PowerSGD hook, and `gradcodec.torch.gradcodec_hook` with gradcodec
pipelines (co3-fp4, topk-ef-1pct, qsgd, signsgd-ef, powersgd-r4 ...).

Every hook trains the same model from the same initial weights on the same
batches for the same number of steps, on ``--world-size`` gloo processes on
loopback (CPU). The run writes, under ``--out``:

- ``ddp.md``: test accuracy after the last step, bytes per step per rank, bits
  per entry, step time, codec time per step and its share of the step;
- ``ddp.json``: the same, with the configuration and the accuracy curves;
- ``ddp.png`` (when matplotlib is installed): accuracy against cumulative bytes
  sent, and against steps.

Bytes per step per rank are what each rank puts into the collectives, summed
over the buckets: for allreduce 4 bytes per parameter, for fp16 2, for
PowerSGD 4 bytes per entry of its P and Q factors plus 4 per entry of the
tensors it leaves uncompressed (read from the PowerSGD state's own counter),
for gradcodec the messages' lengths (``wire`` adds the padding to the longest
rank's message and the 8-byte size exchange). The steady-state column leaves
out the warm-up iterations of plain allreduce (``--start-iter``) that PowerSGD
and gradcodec run first.

Usage (from the repository root; the data comes from ``scripts/fetch-data``)::

    .venv-python/bin/python core/python/examples/ddp_train.py --steps 600 --out runs/ddp
    .venv-python/bin/python core/python/examples/ddp_train.py --hooks allreduce,topk-ef-1pct
"""

import argparse
import datetime
import gc
import gzip
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook
from torch.nn.parallel import DistributedDataParallel as DDP

import gradcodec
from gradcodec.torch import GradcodecState, gradcodec_hook

TORCH_HOOKS = ("allreduce", "torch-fp16", "torch-powersgd")
DEFAULT_HOOKS = "allreduce,torch-fp16,torch-powersgd,co3-fp4,topk-ef-1pct,qsgd,signsgd-ef"
REPO = Path(__file__).resolve().parents[3]
CURVE_SAMPLES = 2000  # test images scored at each point of the accuracy curve


# -- data and model -----------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped) as a numpy array."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_fashion_mnist(folder: Path) -> dict[str, torch.Tensor]:
    """Train and test images (N x 1 x 28 x 28, normalized with the training
    set's mean and deviation) and labels."""
    split = {}
    for name, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz").astype(np.float32) / 255.0
        labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
        split[name] = (images, labels)
    mean, std = split["train"][0].mean(), split["train"][0].std()
    out = {}
    for name, (images, labels) in split.items():
        out[f"{name}_x"] = torch.from_numpy((images - mean) / std).unsqueeze(1)
        out[f"{name}_y"] = torch.from_numpy(labels)
    return out


class LeNet5(torch.nn.Module):
    """LeNet-5 for 28 x 28 inputs (conv1 padded), as the harness builds it:
    61,706 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = torch.nn.Conv2d(6, 16, 5)
        self.fc1 = torch.nn.Linear(16 * 5 * 5, 120)
        self.fc2 = torch.nn.Linear(120, 84)
        self.fc3 = torch.nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        correct = sum(
            (model(x[i : i + 1000]).argmax(1) == y[i : i + 1000]).sum().item()
            for i in range(0, len(x), 1000)
        )
    return 100.0 * correct / len(x)


# -- the hooks ----------------------------------------------------------------


class Meter:
    """Bytes this rank put into collectives in the current step, and the
    codec seconds, for the torch hooks (gradcodec's state keeps its own)."""

    def __init__(self) -> None:
        self.bytes = 0

    def take(self) -> int:
        taken, self.bytes = self.bytes, 0
        return taken


def attach_hook(model: DDP, hook: str, args: argparse.Namespace, meter: Meter):
    """Registers ``hook`` on ``model``; returns the gradcodec state (or None)."""
    if hook == "allreduce":
        return None
    if hook == "torch-fp16":

        def fp16(state, bucket):
            meter.bytes += 2 * bucket.buffer().numel()
            return default_hooks.fp16_compress_hook(state, bucket)

        model.register_comm_hook(None, fp16)
        return None
    if hook == "torch-powersgd":
        psgd = powerSGD_hook.PowerSGDState(
            process_group=None,
            matrix_approximation_rank=args.powersgd_rank,
            start_powerSGD_iter=args.start_iter,
            random_seed=args.seed,
        )

        def powersgd(state, bucket):
            allreduce = state.iter < state.start_powerSGD_iter
            before = state.total_numel_after_compression
            future = powerSGD_hook.powerSGD_hook(state, bucket)
            numel = (
                bucket.buffer().numel()
                if allreduce
                else state.total_numel_after_compression - before
            )
            meter.bytes += 4 * numel  # P and Q, plus the uncompressed tensors, as float32
            return future

        model.register_comm_hook(psgd, powersgd)
        return None
    state = GradcodecState(hook, start_iter=args.start_iter)
    model.register_comm_hook(state, gradcodec_hook)
    return state


# -- one rank -----------------------------------------------------------------


def train_one(rank: int, world: int, hook: str, data: dict, args: argparse.Namespace) -> dict:
    """Trains a fresh LeNet-5 with ``hook``; returns rank 0's measurements."""
    torch.manual_seed(args.seed)
    model = DDP(LeNet5())
    meter = Meter()
    state = attach_hook(model, hook, args, meter)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    params = sum(p.numel() for p in model.parameters())
    n_train, batch = len(data["train_y"]), args.batch_size
    per_epoch = n_train // (batch * world)
    curve_x, curve_y = data["test_x"][:CURVE_SAMPLES], data["test_y"][:CURVE_SAMPLES]

    steps, curve, sent = [], [], 0
    order = None
    for step in range(args.steps):
        epoch, k = divmod(step, per_epoch)
        if k == 0:  # the same permutation on every rank; each takes its slice
            order = torch.randperm(n_train, generator=torch.Generator().manual_seed(epoch))
        start = (k * world + rank) * batch
        index = order[start : start + batch]
        started = time.perf_counter()
        optimizer.zero_grad()
        loss = F.cross_entropy(model(data["train_x"][index]), data["train_y"][index])
        loss.backward()
        optimizer.step()
        elapsed = time.perf_counter() - started
        if state is not None:
            (stat,) = state.pop_step_stats()
            record = {
                "bytes": stat["bytes"],
                "wire_bytes": stat["wire_bytes"],
                "codec_s": stat["encode_s"] + stat["decode_s"],
                "encode_s": stat["encode_s"],
                "decode_s": stat["decode_s"],
                "mode": stat["mode"],
            }
        else:
            size = meter.take() if hook != "allreduce" else 4 * params
            coded = hook == "torch-fp16" or (hook == "torch-powersgd" and step >= args.start_iter)
            mode = "compressed" if coded else "allreduce"
            record = {"bytes": size, "wire_bytes": size, "codec_s": None, "mode": mode}
        record.update(step_s=elapsed, loss=loss.item())
        steps.append(record)
        sent += record["wire_bytes"]
        if rank == 0 and ((step + 1) % args.eval_every == 0 or step + 1 == args.steps):
            curve.append(
                {
                    "step": step + 1,
                    "wire_bytes": sent,
                    "accuracy": accuracy(model.module, curve_x, curve_y),
                }
            )
    result = {"hook": hook, "params": params, "steps": steps, "curve": curve}
    if rank == 0:
        result["accuracy"] = accuracy(model.module, data["test_x"], data["test_y"])
    # The replicas must agree: compare them once at the end (a small extra collective).
    digest = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.empty_like(digest) for _ in range(world)]
    dist.all_gather(gathered, digest)
    result["replicas_identical"] = all(torch.equal(gathered[0], g) for g in gathered[1:])
    return result


def worker(rank: int, world: int, port: int, args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(minutes=5),
    )
    try:
        data = load_fashion_mnist(Path(args.data))
        results = []
        for hook in args.hooks:
            started = time.perf_counter()
            results.append(train_one(rank, world, hook, data, args))
            if rank == 0:
                print(
                    f"{hook:>16}: accuracy {results[-1]['accuracy']:.2f}% "
                    f"({time.perf_counter() - started:.1f} s)",
                    flush=True,
                )
        if rank == 0:
            Path(args.out, "raw.json").write_text(json.dumps(results))
    finally:
        gc.collect()  # the DDP models hold the group: free them first (docs/python.md)
        dist.destroy_process_group()


# -- the report ---------------------------------------------------------------


def summarize(result: dict, warmup: int) -> dict:
    steps = result["steps"]
    steady = [s for s in steps if s["mode"] != "allreduce"] or steps
    timed = steps[warmup:] or steps
    out = {
        "hook": result["hook"],
        "accuracy": result["accuracy"],
        "replicas_identical": result["replicas_identical"],
        "bytes_per_step": float(np.mean([s["bytes"] for s in steady])),
        "wire_bytes_per_step_all_steps": float(np.mean([s["wire_bytes"] for s in steps])),
        "total_wire_bytes": int(sum(s["wire_bytes"] for s in steps)),
        "step_ms": 1e3 * float(np.mean([s["step_s"] for s in timed])),
        "curve": result["curve"],
    }
    out["bits_per_entry"] = 8 * out["bytes_per_step"] / result["params"]
    codec = [s["codec_s"] for s in timed if s["codec_s"] is not None]
    out["codec_ms"] = 1e3 * float(np.mean(codec)) if codec else None
    for key in ("encode", "decode"):
        values = [s[f"{key}_s"] for s in timed if f"{key}_s" in s]
        out[f"{key}_ms"] = 1e3 * float(np.mean(values)) if values else None
    return out


def label(hook: str) -> str:
    return hook if hook in TORCH_HOOKS else f"gradcodec {hook}"


def write_report(out: Path, args: argparse.Namespace, results: list[dict]) -> str:
    warmup = max(args.start_iter, 5)
    rows = [summarize(r, warmup) for r in results]
    by_hook = {row["hook"]: row for row in rows}
    base, fp16 = by_hook.get("allreduce"), by_hook.get("torch-fp16")
    params = results[0]["params"]
    lines = [
        "# DDP gradient compression on Fashion-MNIST (LeNet-5)",
        "",
        f"{args.world_size} gloo ranks on loopback (CPU, 1 thread each), {args.steps} steps, "
        f"batch {args.batch_size} per rank, SGD lr {args.lr} momentum 0.9, seed {args.seed}, "
        f"{params:,} parameters; warm-up allreduce iterations: {args.start_iter} "
        f"(PowerSGD rank {args.powersgd_rank}). torch {torch.__version__}, "
        f"gradcodec {gradcodec.__version__}, {os.cpu_count()} CPU(s), {platform.machine()}.",
        "",
        "| hook | test acc. % | vs allreduce (pt) | bytes/step/rank | of fp16 | bits/entry "
        "| wire bytes/step (all steps) | step ms | codec ms/step | codec share |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        delta = f"{row['accuracy'] - base['accuracy']:+.2f}" if base else "-"
        of_fp16 = f"{row['bytes_per_step'] / fp16['bytes_per_step']:.3f}" if fp16 else "-"
        codec = "-" if row["codec_ms"] is None else f"{row['codec_ms']:.2f}"
        share = "-" if row["codec_ms"] is None else f"{100 * row['codec_ms'] / row['step_ms']:.0f}%"
        lines.append(
            f"| {label(row['hook'])} | {row['accuracy']:.2f} | {delta} "
            f"| {row['bytes_per_step']:,.0f} | {of_fp16} | {row['bits_per_entry']:.3f} "
            f"| {row['wire_bytes_per_step_all_steps']:,.0f} | {row['step_ms']:.2f} | {codec} "
            f"| {share} |"
        )
    lines += [
        "",
        "bytes/step/rank: what one rank contributes to the collectives per step once "
        "compression runs (warm-up allreduce steps left out); allreduce 4 B/param, fp16 2 B/param, "
        "PowerSGD 4 B per entry of P, Q and its uncompressed tensors, gradcodec the message "
        "lengths. Wire bytes/step: averaged over all steps, with warm-up, gradcodec's padding to "
        "the longest rank's message and its 8-byte size exchange. Step and codec times: means "
        f"after step {warmup}, rank 0; codec = gradcodec encode + decode of every rank's message "
        "+ averaging (torch's hooks interleave compression with their collectives: not "
        "separable).",
    ]
    if not all(row["replicas_identical"] for row in rows):
        bad = [row["hook"] for row in rows if not row["replicas_identical"]]
        lines += ["", f"**Replicas differ after training with: {', '.join(bad)}.**"]
    if base and fp16:
        goal = [
            row
            for row in rows
            if row["hook"] not in TORCH_HOOKS
            and row["accuracy"] >= base["accuracy"] - 1.0
            and row["bytes_per_step"] <= fp16["bytes_per_step"] / 10
        ]
        lines.append("")
        if goal:
            best = min(goal, key=lambda row: row["bytes_per_step"])
            lines.append(
                f"Goal (within 1 pt of allreduce, at most 1/10 of fp16's bytes) met by: "
                f"{', '.join(label(row['hook']) for row in goal)}; fewest bytes: "
                f"{label(best['hook'])}, {best['accuracy']:.2f}% with "
                f"{best['bytes_per_step'] / fp16['bytes_per_step']:.3f} of fp16's bytes."
            )
        else:
            lines.append(
                "Goal (within 1 pt of allreduce, at most 1/10 of fp16's bytes): not met by any "
                "gradcodec pipeline in this run."
            )
    text = "\n".join(lines) + "\n"
    (out / "ddp.md").write_text(text)
    config = dict(vars(args))
    (out / "ddp.json").write_text(json.dumps({"config": config, "results": rows}, indent=2))
    plot(out / "ddp.png", rows)
    return text


def plot(path: Path, rows: list[dict]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for row in rows:
        curve = row["curve"]
        accuracy_points = [c["accuracy"] for c in curve]
        left.plot([c["wire_bytes"] / 1e6 for c in curve], accuracy_points, label=label(row["hook"]))
        right.plot([c["step"] for c in curve], accuracy_points, label=label(row["hook"]))
    left.set_xscale("log")
    left.set_xlabel("cumulative MB sent per rank")
    right.set_xlabel("step")
    for axis in (left, right):
        axis.set_ylabel(f"test accuracy % (first {CURVE_SAMPLES} images)")
        axis.grid(alpha=0.3)
    right.legend(fontsize=8)
    fig.suptitle("DDP on Fashion-MNIST, LeNet-5: accuracy against bytes and steps")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# -- main ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=64, help="per rank")
    parser.add_argument("--out", type=Path, default=Path("runs/ddp"))
    parser.add_argument(
        "--hooks",
        default=DEFAULT_HOOKS,
        help="comma-separated: allreduce, torch-fp16, torch-powersgd, or gradcodec pipelines "
        "(shipped names or spec paths)",
    )
    parser.add_argument("--world-size", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start-iter", type=int, default=2, help="warm-up allreduce iterations")
    parser.add_argument("--powersgd-rank", type=int, default=2)
    parser.add_argument("--eval-every", type=int, default=0, help="default: steps / 10")
    parser.add_argument("--data", help="folder of the IDX files (default: scripts/fetch-data)")
    args = parser.parse_args()
    args.hooks = [h.strip() for h in args.hooks.split(",") if h.strip()]
    args.eval_every = args.eval_every or max(1, args.steps // 10)
    for hook in args.hooks:
        if hook not in TORCH_HOOKS:
            gradcodec.pipeline(hook)  # fails early on an unknown pipeline
    if args.data is None:
        fetched = subprocess.run(
            [str(REPO / "scripts" / "fetch-data")], check=True, capture_output=True, text=True
        )
        args.data = fetched.stdout.strip().splitlines()[-1]
    args.out.mkdir(parents=True, exist_ok=True)
    if Path("/sys/class/net/lo").exists():
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    started = time.perf_counter()
    mp.spawn(worker, args=(args.world_size, free_port(), args), nprocs=args.world_size)
    results = json.loads(Path(args.out, "raw.json").read_text())
    args.out = str(args.out)
    print(write_report(Path(args.out), args, results))
    print(
        f"written to {args.out}/ddp.md, ddp.json, ddp.png ({time.perf_counter() - started:.0f} s)"
    )


if __name__ == "__main__":
    main()
