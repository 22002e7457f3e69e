"""What every part shares: the context it runs in, running harness / gradcodec
commands in parallel with a progress line each, reading a run's outputs,
statistics, Markdown tables and the computed verdicts.

Nothing here knows a particular claim; the parts (``parts/*.py``) do.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The demo's training settings (scripts/demo-run): LeNet-5 on a Fashion-MNIST
# subset, batch 32, SGD lr 0.02 momentum 0.9, one libtorch thread per run.
# A part adds (or overrides: the harness takes the last of repeated options)
# mode, model, clients, partition, rounds and pipelines.
TRAIN_BASE = [
    "--dataset", "fashion-mnist",
    "--model", "lenet5",
    "--train-limit", "12000",
    "--test-limit", "2000",
    "--batch-size", "32",
    "--lr", "0.02",
    "--momentum", "0.9",
    "--threads", "1",
]  # fmt: skip

FASHION_NOTE = (
    "Data: Fashion-MNIST (CIFAR-10, the data set of most of these papers, cannot be "
    "downloaded on this machine; Fashion-MNIST comes from Debian's dataset-fashion-mnist "
    "package via scripts/fetch-data)."
)


def fmt_duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    return f"{s // 60} min {s % 60:02d} s"


@dataclass
class Ctx:
    """Where a part runs and writes, and the tools it calls."""

    part: str
    quick: bool
    jobs: int
    harness: Path
    gradcodec: Path
    runs: Path
    docs: Path
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def pick(self, full, quick):
        """`full` normally, `quick` under GRADCODEC_REPRODUCE_QUICK=1."""
        return quick if self.quick else full

    def log(self, line: str) -> None:
        elapsed = fmt_duration(time.monotonic() - self.started)
        with self._lock:
            print(f"[{self.part} {elapsed:>11}] {line}", flush=True)

    def fresh_runs(self) -> Path:
        """Empties this part's runs folder (a rerun starts over)."""
        if self.runs.exists():
            shutil.rmtree(self.runs)
        self.runs.mkdir(parents=True)
        return self.runs

    def image(self, name: str, alt: str) -> str:
        """Markdown for a picture written in the part's docs folder."""
        return f"![{alt}]({name})"


# ---------------------------------------------------------------- running


@dataclass
class Job:
    """One command. `log` gets its stdout and stderr; `done` makes the progress
    line from the finished job (None: a plain one)."""

    name: str
    argv: list[str]
    log: Path
    done: Callable[[Job], str] | None = None
    rc: int | None = None
    seconds: float = 0.0


def run_jobs(ctx: Ctx, jobs: Sequence[Job], what: str = "runs", every: int = 1) -> list[Job]:
    """Runs `jobs`, `ctx.jobs` at a time, printing one line per finished job
    (per `every` jobs, and every failure, when `every` > 1: for many small
    commands). A failing job is recorded (rc) and the others go on."""
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    total = len(jobs)
    ctx.log(f"{total} {what}, {ctx.jobs} at a time")
    counter = {"n": 0}

    def one(job: Job) -> Job:
        job.log.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        with open(job.log, "w") as log:
            job.rc = subprocess.run(
                job.argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, check=False
            ).returncode
        job.seconds = time.monotonic() - t0
        return job

    with ThreadPoolExecutor(max_workers=ctx.jobs) as pool:
        futures = [pool.submit(one, j) for j in jobs]
        for fut in as_completed(futures):
            job = fut.result()
            counter["n"] += 1
            if job.rc != 0:
                tail = last_line(job.log)
                line = f"FAILED (exit {job.rc}): {tail}"
            else:
                try:
                    line = job.done(job) if job.done else "done"
                except Exception as e:  # a progress line must not stop the part
                    line = f"done ({e})"
            n = counter["n"]
            if job.rc != 0 or every == 1 or n % every == 0 or n == total:
                ctx.log(f"{n:>3}/{total} {job.name}: {line} ({job.seconds:.0f} s)")
    return list(jobs)


def last_line(path: Path) -> str:
    try:
        lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return "(no log)"
    return lines[-1][:200] if lines else "(empty log)"


def train_job(ctx: Ctx, label: str, seed: int, args: Sequence[str]) -> Job:
    """A `gradcodec-harness train` run named `<label>@seed<seed>` in the part's
    runs folder, with the demo's settings (TRAIN_BASE) then `args`."""
    name = f"{label}@seed{seed}"
    argv = [
        str(ctx.harness), "train", "--name", name, "--seed", str(seed),
        "--out", str(ctx.runs), "--fresh", "--quiet", *TRAIN_BASE, *args,
    ]  # fmt: skip

    def done(job: Job) -> str:
        s = load_json(ctx.runs / name / "summary.json")
        div = s.get("diverged")
        tail = f", DIVERGED at round {div.get('round')}" if div else ""
        line = f"final accuracy {s['final_accuracy']:.4f}"
        aop = s.get("aop_saved_fraction") or 0
        if s.get("uplink_pipeline") != "none" or not aop:
            line += (
                f", {s['mean_uplink_bits_per_entry']:.3g} bits/entry, "
                f"uplink {s['total_uplink_bits'] / 8e6:.2f} MB"
            )
        if aop:
            line += f", Mem-AOP-GD saved {100 * aop:.0f}% of the weight-gradient work"
        return line + tail

    return Job(name, argv, ctx.runs / name / "train.log", done)


def aggregate(ctx: Ctx, target: float, about: str, baseline: str = "f32") -> str | None:
    """`gradcodec-harness aggregate` over the part's runs; returns the table of
    its comparison.md (None when it failed)."""
    log = ctx.runs / "aggregate.log"
    with open(log, "w") as f:
        rc = subprocess.run(
            [
                str(ctx.harness), "aggregate", "--dir", str(ctx.runs), "--baseline", baseline,
                "--target-accuracy", str(target), "--about", about,
            ],
            stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, check=False,
        ).returncode  # fmt: skip
    md = ctx.runs / "comparison.md"
    if rc != 0 or not md.exists():
        ctx.log(f"aggregate failed: {last_line(log)}")
        return None
    return md.read_text()


# ---------------------------------------------------------------- reading runs


def load_json(path: Path):
    with open(path) as f:
        return json.load(f)


def _num(v: str):
    if v == "":
        return None
    try:
        return float(v)
    except ValueError:
        return v


def load_metrics(path: Path) -> list[dict]:
    """metrics.csv as a list of rows, numbers as floats, empty fields as None."""
    with open(path, newline="") as f:
        return [{k: _num(v) for k, v in row.items()} for row in csv.DictReader(f)]


@dataclass
class Run:
    label: str
    seed: int
    dir: Path
    summary: dict | None
    metrics: list[dict]
    config: dict | None

    @property
    def ok(self) -> bool:
        return self.summary is not None and not self.summary.get("diverged")


def load_run(ctx: Ctx, label: str, seed: int) -> Run:
    d = ctx.runs / f"{label}@seed{seed}"
    summary = metrics = config = None
    try:
        summary = load_json(d / "summary.json")
        metrics = load_metrics(d / "metrics.csv")
        config = load_json(d / "config.json")
    except (OSError, ValueError):
        summary = None
    return Run(label, seed, d, summary, metrics or [], config)


def first_reach(metrics: list[dict], target: float, key: str = "cum_uplink_bits"):
    """(round, metrics[key]) of the first round whose test accuracy reaches
    `target`; None when no round does."""
    for row in metrics:
        if row["round"] > 0 and row["test_accuracy"] >= target:
            return int(row["round"]), row[key]
    return None


# ---------------------------------------------------------------- statistics


@dataclass
class Stat:
    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation (0 for one value)."""
        n = len(self.values)
        if n < 2:
            return 0.0
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (n - 1))

    @property
    def min(self) -> float:
        return min(self.values) if self.values else math.nan

    @property
    def max(self) -> float:
        return max(self.values) if self.values else math.nan

    def pm(self, digits: int = 4) -> str:
        if not self.values:
            return "-"
        if self.n == 1:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def stat(values: Iterable[float | None]) -> Stat:
    return Stat([float(v) for v in values if v is not None and not math.isnan(float(v))])


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties)."""

    def ranks(v: Sequence[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2 + 1
            i = j + 1
        return r

    rx, ry = ranks(x), ranks(y)
    n = len(x)
    mx, my = sum(rx) / n, sum(ry) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = math.sqrt(sum((a - mx) ** 2 for a in rx))
    vy = math.sqrt(sum((b - my) ** 2 for b in ry))
    return cov / (vx * vy) if vx and vy else math.nan


# ---------------------------------------------------------------- Markdown


def md_table(headers: Sequence[str], rows: Iterable[Sequence], right: Sequence[bool] | None = None):
    """A Markdown table; `right[i]` right-aligns column i (default: all but the first)."""
    right = right or [i > 0 for i in range(len(headers))]
    out = ["| " + " | ".join(headers) + " |"]
    out.append("|" + "|".join("---:" if r else "---" for r in right) + "|")
    for row in rows:
        out.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(out)


def code(cmd: str) -> str:
    return f"```sh\n{cmd}\n```"


def embed_aggregate(md: str | None) -> str:
    """The table part of an aggregate comparison.md (its title line dropped)."""
    if not md:
        return "(gradcodec-harness aggregate failed; see the part's runs folder)"
    lines = md.strip().splitlines()
    return "\n".join(lines[1:]).strip() if len(lines) > 1 else md


# ---------------------------------------------------------------- verdicts


@dataclass
class Check:
    """One criterion, evaluated on the measured numbers."""

    criterion: str
    passed: bool | None  # None: could not be evaluated (counts as not passed)
    measured: str


def verdict(checks: Sequence[Check]) -> str:
    """reproduced when every check passes, not reproduced when none does,
    partly reproduced otherwise."""
    passed = sum(1 for c in checks if c.passed)
    if checks and passed == len(checks):
        return "reproduced"
    if passed == 0:
        return "not reproduced"
    return "partly reproduced"


def checks_table(checks: Sequence[Check]) -> str:
    def mark(p: bool | None) -> str:
        return {True: "**pass**", False: "**fail**", None: "**n/a**"}[p]

    return md_table(
        ["criterion", "measured", "result"],
        [(c.criterion, c.measured, mark(c.passed)) for c in checks],
        [False, False, False],
    )


@dataclass
class Section:
    """What a part returns: its section of docs/reproduction.md (the heading and
    the timing line are added by the driver)."""

    body: str
    verdict: str
    summary: str  # one line for the overview table


def slug_float(x: float) -> str:
    """0.3 -> '0.3', 1.0 -> '1.0' (for names of generated pipelines)."""
    s = f"{x:g}"
    return s if "." in s else s + ".0"


def substitute(text: str, pattern: str, repl: str) -> str:
    """re.sub that insists on exactly one match (generated YAMLs must differ
    from their template exactly where intended)."""
    new, n = re.subn(pattern, repl, text, flags=re.M)
    if n != 1:
        raise ValueError(f"expected one match of {pattern!r}, found {n}")
    return new
