"""The ClientApp: trains the received model on this node's IID partition and
replies with the new weights; `gradcodec.flower.compression_mod` turns that
reply into one gradcodec message of the run's pipeline (run config
``pipeline``). The partition comes from the node config (``partition-id``,
``num-partitions``, as in ``flower-supernode --node-config``)."""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from gradcodec.flower import compression_mod

from . import task


def _pipeline(context: Context) -> str:
    return str(task.setting(context.run_config, "pipeline"))


def _client_log(context: Context) -> str:
    return str(context.run_config.get("client-log", ""))


app = ClientApp(mods=[compression_mod(_pipeline, log_file=_client_log)])


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Local SGD on this node's partition, starting from the received model."""
    torch.set_num_threads(1)
    cfg = context.run_config
    partition_id = int(context.node_config.get("partition-id", 0))
    num_partitions = int(context.node_config.get("num-partitions", 1))
    seed = int(task.setting(cfg, "seed"))
    server_round = int(msg.content["config"].get("server-round", 0))

    data = task.load_dataset(str(task.setting(cfg, "data-dir")))
    indices = task.partition(len(data["train-labels"]), partition_id, num_partitions, seed)
    indices = task.limit(indices, int(task.setting(cfg, "train-limit")))
    x, y = task.to_tensors(data["train-images"][indices], data["train-labels"][indices])

    model = task.build_model(str(task.setting(cfg, "model")), seed)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    loss = task.train(
        model,
        x,
        y,
        epochs=int(task.setting(cfg, "local-epochs")),
        batch_size=int(task.setting(cfg, "batch-size")),
        lr=float(task.setting(cfg, "lr")),
        seed=seed * 1_000_003 + 1_000 * server_round + partition_id,
    )
    content = RecordDict(
        {
            "arrays": ArrayRecord(model.state_dict()),
            "metrics": MetricRecord({"train-loss": loss, "num-examples": len(x)}),
        }
    )
    return Message(content=content, reply_to=msg)
