"""The ServerApp: FedAvg over the gradcodec-coded uplink
(`gradcodec.flower.GradcodecFedAvg`), with the global model evaluated on the
test set before round 1 and after every round. With run config ``out-file`` it
writes a JSON of the run: per round the test accuracy and loss, the uplink
bytes per node (the real message sizes) and the model's parameter norm."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from gradcodec.flower import GradcodecFedAvg

from . import task

app = ServerApp()


def _norm(arrays: ArrayRecord) -> float:
    return math.sqrt(
        sum(float(np.sum(a.astype(np.float64) ** 2)) for a in arrays.to_numpy_ndarrays())
    )


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Runs ``num-server-rounds`` rounds of FedAvg and writes the results."""
    torch.set_num_threads(1)
    cfg = context.run_config
    pipeline = str(task.setting(cfg, "pipeline"))
    rounds = int(task.setting(cfg, "num-server-rounds"))
    nodes = int(task.setting(cfg, "num-nodes"))
    seed = int(task.setting(cfg, "seed"))
    model_name = str(task.setting(cfg, "model"))

    data = task.load_dataset(str(task.setting(cfg, "data-dir")))
    test = task.limit(np.arange(len(data["test-labels"])), int(task.setting(cfg, "test-limit")))
    x_test, y_test = task.to_tensors(data["test-images"][test], data["test-labels"][test])
    model = task.build_model(model_name, seed)
    initial = ArrayRecord(model.state_dict())

    evaluations: dict[int, dict[str, float]] = {}

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model.load_state_dict(arrays.to_torch_state_dict())
        loss, accuracy = task.evaluate(model, x_test, y_test)
        evaluations[server_round] = {"loss": loss, "accuracy": accuracy, "norm": _norm(arrays)}
        return MetricRecord({"loss": loss, "accuracy": accuracy})

    strategy = GradcodecFedAvg(
        pipeline,
        fraction_evaluate=0.0,
        min_train_nodes=nodes,
        min_available_nodes=nodes,
    )
    started = time.monotonic()
    result = strategy.start(
        grid=grid,
        initial_arrays=initial,
        num_rounds=rounds,
        timeout=600,
        evaluate_fn=evaluate,
    )
    seconds = time.monotonic() - started

    out = str(cfg.get("out-file", ""))
    if not out:
        return
    per_round = []
    for server_round in range(1, rounds + 1):
        records = [r for r in strategy.records if r["round"] == server_round]
        metrics = result.train_metrics_clientapp.get(server_round)
        per_round.append(
            {
                "round": server_round,
                **evaluations.get(server_round, {}),
                "train_loss": float(metrics["train-loss"]) if metrics else None,
                "replies": len(records),
                "uplink_bytes": sum(r["bytes"] + r["raw_bytes"] for r in records),
                "uplink_entries": sum(r["entries"] for r in records),
            }
        )
    document = {
        "pipeline": strategy.pipeline.name,
        "fingerprint": strategy.pipeline.fingerprint_hex,
        "payload": strategy.payload,
        "model": model_name,
        "parameters": int(sum(a.size for a in initial.to_numpy_ndarrays())),
        "rounds": rounds,
        "seconds": seconds,
        "initial": evaluations.get(0, {}),
        "per_round": per_round,
        "records": strategy.records,
    }
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    tmp.replace(path)
