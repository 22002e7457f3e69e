"""ResFed (Song, Zhou, Lyu, Festag, Knoll): residual coding against a shared
predictor on both links; >700x compression per round and about 99% of the
communication volume saved to reach the target accuracy.

FedAvg, the ResFed CNN, 10 non-IID clients (client i holds the classes
{(i + j) mod 10 : j < c}), all participating: f32 against ResFed on both links
(and, as a diagnostic, ResFed on the uplink only).
"""

from __future__ import annotations

import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from reproduction.common import (
    FASHION_NOTE,
    Check,
    Ctx,
    Section,
    checks_table,
    code,
    first_reach,
    load_run,
    md_table,
    run_jobs,
    train_job,
    verdict,
)
from reproduction.parts import Part

CLASSES = 3
PAPER_TARGET = 0.70
RATIO_CLAIM = 700
SAVING_CLAIM = 0.985  # "about 99%" (the paper's figures: 1 - 6.79/587.61 = 98.8%)
F32, RF, RFU = "f32", "resfed", "resfed-uplink-only"


def run(ctx: Ctx) -> Section:
    ctx.fresh_runs()
    seed = 1
    train_limit = ctx.pick(1000, 200)
    rounds = {F32: ctx.pick(20, 3), RF: ctx.pick(55, 3), RFU: ctx.pick(25, 3)}
    common = [
        "--model", "resfed-cnn", "-k", "10", "--partition", f"classes:{CLASSES}",
        "--participation", "1", "--local-epochs", "1", "--batch-size", "64", "--lr", "0.01",
        "--momentum", "0.9", "--train-limit", str(train_limit), "--test-limit", "1000",
    ]  # fmt: skip
    links = {
        F32: [],
        RF: ["--uplink", "pipelines/resfed.yaml", "--downlink", "pipelines/resfed.yaml"],
        RFU: ["--uplink", "pipelines/resfed.yaml"],
    }
    # The longest first; the uplink-only diagnostic takes the core f32 frees.
    order = [RF, F32, RFU]
    jobs = [
        train_job(ctx, p, seed, [*common, "--rounds", str(rounds[p]), *links[p]]) for p in order
    ]
    run_jobs(ctx, jobs)
    runs = {p: load_run(ctx, p, seed) for p in order}
    if not runs[F32].ok or not runs[RF].ok:
        raise RuntimeError("the f32 or the resfed run did not finish; see runs/reproduce/resfed/")

    f, r = runs[F32].metrics, runs[RF].metrics
    params = runs[F32].config["resolved"]["model_parameters"]
    f32_up = f[1]["uplink_bytes"]  # raw parameters, all clients, every round
    f32_down = f[1]["downlink_bytes"] - f[1]["uplink_buffer_bytes"]
    buf = f[1]["uplink_buffer_bytes"]

    # Compression per round after the warm-up (the first round sends raw models).
    after = [m for m in r if m["round"] >= 2]
    up_ratio = [f32_up / m["uplink_bytes"] for m in after]
    down_ratio = [f32_down / (m["downlink_bytes"] - buf) for m in after]
    up_ratio_buf = [(f32_up + buf) / (m["uplink_bytes"] + buf) for m in after]

    # The target: 70% (the paper's) if f32 reaches it, else the highest multiple of
    # 0.05 below that f32 reaches.
    f32_best = max(m["test_accuracy"] for m in f)
    target = PAPER_TARGET
    while target > 0.1 and f32_best < target - 1e-9:
        target = round(target - 0.05, 2)

    def volume(metrics, t):
        hit = first_reach(metrics, t)
        if hit is None:
            return None
        rnd = hit[0]
        row = next(m for m in metrics if m["round"] == rnd)
        return rnd, row["cum_uplink_bits"] / 8e6, row["cum_downlink_bits"] / 8e6

    vols = {p: volume(runs[p].metrics, target) if runs[p].ok else None for p in order}
    rf_best = max(m["test_accuracy"] for m in r)
    # Both reach this one: the largest multiple of 0.05 ResFed reaches (<= target).
    common_t = min(target, int(rf_best * 20) / 20)
    vols_common = {p: volume(runs[p].metrics, common_t) if runs[p].ok else None for p in order}

    def saving(v, p, i):
        if v[p] is None or v[F32] is None:
            return None
        return 1 - v[p][i] / v[F32][i]

    # ---- tables
    ratio_rows = [
        (
            "uplink (messages)", f"{f32_up / 1e6:.3f}",
            f"{statistics.median(m['uplink_bytes'] for m in after) / 1e6:.4f}",
            f"{statistics.median(up_ratio):.0f}x", f"{min(up_ratio):.0f}x–{max(up_ratio):.0f}x",
        ),
        (
            "uplink incl. batch-norm statistics (raw f32)", f"{(f32_up + buf) / 1e6:.3f}",
            f"{statistics.median(m['uplink_bytes'] + buf for m in after) / 1e6:.4f}",
            f"{statistics.median(up_ratio_buf):.0f}x",
            f"{min(up_ratio_buf):.0f}x–{max(up_ratio_buf):.0f}x",
        ),
        (
            "downlink (messages)", f"{f32_down / 1e6:.3f}",
            f"{statistics.median(m['downlink_bytes'] - buf for m in after) / 1e6:.4f}",
            f"{statistics.median(down_ratio):.0f}x",
            f"{min(down_ratio):.0f}x–{max(down_ratio):.0f}x",
        ),
    ]  # fmt: skip
    ratio_table = md_table(
        ["link, per round (10 clients)", "f32 MB", "ResFed MB (median)",
         "compression (median)", "min–max"],
        ratio_rows,
    )  # fmt: skip

    def vrow(p, v):
        run_ = runs[p]
        if not run_.ok:
            return (f"`{p}`", "failed", "-", "-", "-", "-", "-", "-")
        best = max(m["test_accuracy"] for m in run_.metrics)
        if v[p] is None:
            return (f"`{p}`", rounds[p], f"{best:.3f}", f"not reached in {rounds[p]} rounds",
                    "-", "-", "-", "-")  # fmt: skip
        su, sd = saving(v, p, 1), saving(v, p, 2)
        first = run_.metrics[1]
        warm = (first["uplink_bytes"] + first["uplink_buffer_bytes"]) / 1e6
        return (
            f"`{p}`", rounds[p], f"{best:.3f}", v[p][0], f"{v[p][1]:.2f}",
            f"{warm:.2f} ({100 * warm / v[p][1]:.0f}%)", f"{v[p][2]:.2f}",
            "-" if p == F32 else f"{100 * su:.2f}% / {100 * sd:.2f}%",
        )  # fmt: skip

    vol_headers = [
        "run", "rounds run", "best accuracy", "round reaching it", "uplink MB to it",
        "of which round 1 (raw warm-up for ResFed)", "downlink MB to it",
        "saved vs f32 (uplink / downlink)",
    ]  # fmt: skip
    vol_table = md_table(vol_headers, [vrow(p, vols) for p in order])
    common_table = md_table(vol_headers, [vrow(p, vols_common) for p in order])

    # ---- criteria
    med_up = statistics.median(up_ratio)
    su, sd = saving(vols, RF, 1), saving(vols, RF, 2)
    checks = [
        Check(
            f"compression per round: the median uplink compression after the warm-up round "
            f"(f32 bytes / ResFed message bytes per round) exceeds {RATIO_CLAIM}x",
            med_up > RATIO_CLAIM,
            f"median {med_up:.0f}x (downlink {statistics.median(down_ratio):.0f}x; with the raw "
            f"batch-norm statistics counted, uplink {statistics.median(up_ratio_buf):.0f}x)",
        ),
        Check(
            f"volume to the target ({target:.0%}): ResFed on both links reaches it and saves at "
            f"least {SAVING_CLAIM:.1%} of f32's uplink volume to it",
            su is not None and su >= SAVING_CLAIM,
            "not reached: best accuracy "
            f"{rf_best:.3f} in {rounds[RF]} rounds (f32 reached it in round {vols[F32][0]})"
            if su is None
            else f"{100 * su:.2f}% saved ({vols[RF][1]:.2f} vs {vols[F32][1]:.2f} MB)",
        ),
        Check(
            f"the same for the downlink volume to {target:.0%}",
            sd is not None and sd >= SAVING_CLAIM,
            "not reached"
            if sd is None
            else f"{100 * sd:.2f}% saved ({vols[RF][2]:.2f} vs {vols[F32][2]:.2f} MB)",
        ),
    ]
    v = verdict(checks)

    target_why = (
        "the paper's"
        if target == PAPER_TARGET
        else f"the paper's 70% is out of reach of f32 here (best {f32_best:.3f}); the "
        "highest multiple of 5% it reaches"
    )
    start_acc = f[0]["test_accuracy"]
    if common_t >= start_acc + 0.05 and common_t < target:
        common_text = (
            f"For comparison at an accuracy that ResFed reaches too ({common_t:.0%}, the highest "
            f"multiple of 5% ResFed reaches; not a criterion):\n\n{common_table}\n"
        )
    elif common_t >= target:
        common_text = ""
    else:
        common_text = (
            f"ResFed's best accuracy ({rf_best:.3f}) is not 5 points above the initial "
            f"{start_acc:.3f}, so no lower accuracy is compared.\n"
        )
    sec_per_round = statistics.mean(m["wall_s"] for m in f if m["round"] > 0)

    # ---- plot
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    colors = {F32: "black", RF: "tab:blue", RFU: "tab:orange"}
    for p in order:
        if not runs[p].ok:
            continue
        m = runs[p].metrics
        ax1.plot([x["round"] for x in m], [x["test_accuracy"] for x in m], color=colors[p],
                 marker=".", label=p)  # fmt: skip
        ax2.plot([x["cum_uplink_bits"] / 8e6 for x in m[1:]], [x["test_accuracy"] for x in m[1:]],
                 color=colors[p], marker=".", label=f"{p} (uplink)")  # fmt: skip
    for ax in (ax1, ax2):
        ax.axhline(target, color="gray", ls="--", lw=1, label=f"target {target:.0%}")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    ax1.set_xlabel("round")
    ax1.set_title(f"ResFed CNN, 10 clients (classes:{CLASSES}), FedAvg")
    ax2.set_xscale("log")
    ax2.set_xlabel("cumulative uplink MB, all clients (log)")
    ax2.set_title("Accuracy against uplink volume")
    fig.tight_layout()
    fig.savefig(ctx.docs / "resfed.png", dpi=110)
    plt.close(fig)

    cmd = (
        "gradcodec-harness train --name resfed@seed1 --seed 1 --dataset fashion-mnist "
        + " ".join(common)
        + f" --threads 1 --rounds {rounds[RF]} --uplink pipelines/resfed.yaml "
        "--downlink pipelines/resfed.yaml"
    )
    body = f"""
**Paper** (ResFed, Song, Zhou, Lyu, Festag, Knoll 2022-2024; ALGORITHMS.md §3): clients and
server send residuals of their models against a shared predictor (Res-1), sparsified by
top-k (sparsity 0.995) and ternary-quantized; a 1,020,160-parameter CNN (4.08 MB in f32) on
CIFAR-10 with 10 non-IID clients (client i holds the classes {{(i+j) mod 10 : j < c}}), all
participating, 1 local epoch, SGD lr 0.01 momentum 0.9, batch 64. Claims: over 700x
compression per round, and to reach 70% accuracy an uplink volume of 6.79 MB against
587.61 MB for FedAvg (downlink 4.61 MB): about 99% of the communication saved.

**Here**: the ResFed CNN (`--model resfed-cnn`, {params:,} parameters on 1x28x28 inputs)
on Fashion-MNIST with {train_limit:,} training examples ({train_limit // 10} per client)
and 1,000 test examples, 10 clients with `--partition classes:{CLASSES}`
(harness/src/data/partition.rs: client i holds the classes
{{(i+j) mod 10 : j < {CLASSES}}}, each class's examples shared evenly by the clients
holding it; the paper's c is not given in ALGORITHMS.md), all
participating, 1 local epoch, batch 64, SGD lr 0.01 momentum 0.9, seed {seed}. f32 FedAvg
runs {rounds[F32]} rounds, ResFed on both links {rounds[RF]} (it may need more rounds for
the same accuracy), ResFed on the uplink only {rounds[RFU]} (a diagnostic: is the downlink
the bottleneck?). {FASHION_NOTE} The ResFed CNN is the heaviest model here (a round
took {sec_per_round:.1f} s on average in the f32 run, one core per run), which limits the
data per client, the rounds and the seeds (one) to fit about 10 minutes. The harness's round 1
sends raw models (ResFed's warm-up "round 0"); batch-norm statistics travel raw and are
counted in the volumes.

{code(cmd)}

Per round ({params:,} parameters x 10 clients):

{ratio_table}

Volume to the target: {target:.0%} ({target_why}); cumulative volumes, all clients,
MB = 10^6 bytes:

{vol_table}

{common_text}
The harness counts ResFed's raw warm-up models (round 1 here, ResFed's "round 0") in the
volumes, as they are sent; the column "of which round 1" shows how much of the volume to
an accuracy that round is (for f32 it is an ordinary round).

{ctx.image("resfed.png", "ResFed vs f32: accuracy against rounds and against uplink volume")}

**Criteria** (*reproduced* when all pass, *not reproduced* when none does, *partly*
otherwise):

{checks_table(checks)}

**Verdict: {v}.**
"""
    passed = sum(1 for c in checks if c.passed)
    return Section(body, v, f"{passed}/{len(checks)} criteria pass "
                   f"(per-round uplink compression {med_up:.0f}x)")  # fmt: skip


PART = Part(
    order=30,
    title="ResFed: residual coding on both links",
    claim="ResFed (Song et al. 2022-24): >700x compression per round, ~99% of the volume "
    "to 70% accuracy saved",
    run=run,
)
