"""The Flower integration (`gradcodec.flower`).

Unit tests build Flower Messages and Contexts by hand (no network): the Mod
codes a train reply into one message of the delta (or, for a predictive
pipeline, of the model after a lossless warm-up) and keeps the MetricRecord;
its encoder state survives a fresh Mod through ``Context.state``; the strategy
decodes per node, averages like FedAvg and records the real message sizes.

One test runs the real thing: Flower's deployment engine on loopback (a
SuperLink, two SuperNodes, `flwr run`, via examples/flower_run.py's
`LoopbackFederation`) for 3 rounds of the example app with topk-ef-1pct, and
checks every reply against what its ClientApp logged.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")

from conftest import ROOT
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.supercore.task_identity import TaskIdentity

import gradcodec
from gradcodec.flower import (
    MESSAGE_KEY,
    MESSAGE_STYPE,
    META_KEY,
    WARMUP_PIPELINE,
    GradcodecFedAvg,
    compression_mod,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SHAPES = {"fc.weight": (48, 40), "fc.bias": (48,), "out.weight": (10, 48)}


# -- helpers -----------------------------------------------------------------------


def model(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in SHAPES.items()}


def step(seed: int, scale: float = 0.01) -> dict[str, np.ndarray]:
    """A local training step: a dense random change of every tensor."""
    rng = np.random.default_rng(10_000 + seed)
    return {
        name: (scale * rng.standard_normal(shape)).astype(np.float32)
        for name, shape in SHAPES.items()
    }


def arrays(tensors: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({name: Array(value) for name, value in tensors.items()})


def numpy_of(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {name: array.numpy() for name, array in record.items()}


def context(node_id: int, state: RecordDict | None = None) -> Context:
    return Context(
        run_id=1,
        node_id=node_id,
        node_config={},
        state=state if state is not None else RecordDict(),
        run_config={},
    )


def fresh_state(ctxt: Context) -> RecordDict:
    """A copy of the Context's state, record by record, as a new ClientApp
    process gets it back from the SuperNode."""
    copy = RecordDict()
    for key, record in ctxt.state.items():
        if isinstance(record, ConfigRecord):
            copy[key] = ConfigRecord(dict(record))
        else:
            copy[key] = ArrayRecord({name: Array(a.numpy().copy()) for name, a in record.items()})
    return copy


def train_message(global_model: dict[str, np.ndarray], node_id: int, server_round: int) -> Message:
    content = RecordDict(
        {"arrays": arrays(global_model), "config": ConfigRecord({"server-round": server_round})}
    )
    return Message(content=content, dst_node_id=node_id, message_type=MessageType.TRAIN)


def trainer(change: dict[str, np.ndarray], examples: int, extra: dict | None = None):
    """A ClientApp train function that adds ``change`` to the received model."""

    def call_next(msg: Message, ctxt: Context) -> Message:
        received = numpy_of(msg.content["arrays"])
        local = {name: received[name] + change[name] for name in received}
        record = arrays(local)
        for name, array in (extra or {}).items():
            record[name] = array
        metrics = MetricRecord({"train-loss": 0.5, "num-examples": examples})
        return Message(content=RecordDict({"arrays": record, "metrics": metrics}), reply_to=msg)

    return call_next


class FakeGrid:
    """The part of a Grid that FedAvg.configure_train uses. configure_train asks
    twice; a third call means FedAvg waits for more nodes (it would wait forever)."""

    def __init__(self, node_ids: list[int]) -> None:
        self.node_ids = node_ids
        self.calls = 0

    def get_node_ids(self) -> list[int]:
        self.calls += 1
        if self.calls > 2:
            raise AssertionError(f"the strategy waits for more nodes than {self.node_ids}")
        return list(self.node_ids)


def fedavg(pipeline: str, nodes: int, **kwargs) -> GradcodecFedAvg:
    """A strategy that trains on all ``nodes`` nodes and does not evaluate."""
    return GradcodecFedAvg(
        pipeline,
        fraction_evaluate=0.0,
        min_train_nodes=nodes,
        min_available_nodes=nodes,
        **kwargs,
    )


def message_of(reply: Message) -> bytes:
    record = reply.content["arrays"]
    return record[MESSAGE_KEY].data


# -- the Mod -------------------------------------------------------------------------


def test_mod_codes_the_delta_into_one_message_and_keeps_the_metrics():
    global_model, change = model(0), step(0)
    ctxt = context(7)
    mod = compression_mod("f32")
    reply = mod(train_message(global_model, 7, 1), ctxt, trainer(change, examples=123))

    record = reply.content["arrays"]
    assert list(record) == [MESSAGE_KEY]
    array = record[MESSAGE_KEY]
    assert (array.dtype, array.stype, array.shape) == ("uint8", MESSAGE_STYPE, (len(array.data),))
    decoded = gradcodec.decode(array.data)  # f32 is lossless and round 0 is self-describing
    assert list(decoded) == list(SHAPES)
    for name in SHAPES:
        expected = (global_model[name] + change[name]) - global_model[name]
        np.testing.assert_array_equal(decoded[name], expected)
    assert dict(reply.content["metrics"]) == {"train-loss": 0.5, "num-examples": 123}
    meta = reply.content[META_KEY]
    assert (meta["pipeline"], meta["payload"], meta["stream-round"]) == ("f32", "delta", 0)
    assert list(meta["tensors"]) == list(SHAPES)
    assert ctxt.state["gradcodec"]["fingerprint"] == gradcodec.pipeline("f32").fingerprint_hex


def test_mod_leaves_evaluate_messages_and_error_replies_alone():
    mod = compression_mod("topk-ef-1pct")
    ctxt = context(3)
    evaluate = Message(
        content=RecordDict({"arrays": arrays(model(1))}),
        dst_node_id=3,
        message_type=MessageType.EVALUATE,
    )
    untouched = Message(
        content=RecordDict({"metrics": MetricRecord({"accuracy": 0.5, "num-examples": 10})}),
        reply_to=evaluate,
    )
    assert mod(evaluate, ctxt, lambda msg, c: untouched) is untouched

    from flwr.app import Error as FlowerError

    train = train_message(model(1), 3, 1)
    failed = Message(FlowerError(code=1, reason="boom"), reply_to=train)
    assert mod(train, ctxt, lambda msg, c: failed) is failed
    assert "gradcodec" not in ctxt.state  # nothing coded, no state


def test_mod_passes_arrays_it_does_not_code_beside_the_message():
    steps = Array(np.array([5], dtype=np.int64))
    mod = compression_mod("qsgd")
    reply = mod(
        train_message(model(2), 4, 1),
        context(4),
        trainer(step(2), examples=10, extra={"steps": steps}),
    )
    record = reply.content["arrays"]
    assert list(record) == [MESSAGE_KEY, "steps"]
    np.testing.assert_array_equal(record["steps"].numpy(), steps.numpy())
    assert "steps" not in reply.content[META_KEY]["tensors"]


def test_encoder_state_survives_a_fresh_mod_through_the_context():
    """Three rounds, each through a new Mod and a copied Context state (a fresh
    ClientApp process), give the bytes of one uninterrupted encoder."""
    pipeline = gradcodec.pipeline("topk-ef-1pct")
    reference = pipeline.encoder()
    ctxt = context(9)
    global_model = model(3)
    for server_round in range(1, 4):
        change = step(server_round)
        ctxt = context(9, fresh_state(ctxt))
        reply = compression_mod("topk-ef-1pct")(
            train_message(global_model, 9, server_round), ctxt, trainer(change, examples=10)
        )
        delta = {n: (global_model[n] + change[n]) - global_model[n] for n in SHAPES}
        expected = reference.encode(delta)
        assert message_of(reply) == expected
        assert reply.content[META_KEY]["stream-round"] == server_round - 1
        global_model = {n: global_model[n] + 0.5 * change[n] for n in SHAPES}
    # Without the state the third message would differ (round 0, no error memory).
    assert pipeline.encoder().encode(delta) != expected


def test_mod_refuses_state_of_another_pipeline():
    ctxt = context(5)
    compression_mod("topk-ef-1pct")(train_message(model(4), 5, 1), ctxt, trainer(step(4), 10))
    with pytest.raises(ValueError, match="topk-ef-1pct"):
        compression_mod("qsgd")(train_message(model(4), 5, 2), ctxt, trainer(step(5), 10))


# -- the strategy --------------------------------------------------------------------


def run_round(
    strategy: GradcodecFedAvg,
    server_round: int,
    global_model: dict[str, np.ndarray],
    contexts: dict[int, Context],
    changes: dict[int, dict[str, np.ndarray]],
    examples: dict[int, int],
    pipeline: str,
) -> tuple[dict[str, np.ndarray] | None, dict[int, bytes]]:
    """One round through configure_train, a fresh Mod per node and aggregate_train:
    the aggregate (None when no reply was left to average) and the messages sent."""
    messages = strategy.configure_train(
        server_round, arrays(global_model), ConfigRecord(), FakeGrid(sorted(contexts))
    )
    replies = {}
    for msg in messages:
        node = msg.metadata.dst_node_id
        contexts[node] = context(node, fresh_state(contexts[node]))
        replies[node] = compression_mod(pipeline)(
            msg, contexts[node], trainer(changes[node], examples[node])
        )
    sent = {node: message_of(reply) for node, reply in replies.items()}
    aggregated, _metrics = strategy.aggregate_train(server_round, list(replies.values()))
    return (numpy_of(aggregated) if aggregated is not None else None), sent


def test_strategy_decodes_per_node_and_averages_like_fedavg(tmp_path):
    """f32 is lossless: the aggregate is FedAvg of the clients' models."""
    nodes, examples = [11, 22], {11: 30, 22: 10}
    records = tmp_path / "uplink.json"
    strategy = fedavg("f32", 2, records_path=records)
    contexts = {node: context(node) for node in nodes}
    global_model = model(5)
    for server_round in (1, 2):
        changes = {node: step(100 * server_round + node) for node in nodes}
        aggregated, sent = run_round(
            strategy, server_round, global_model, contexts, changes, examples, "f32"
        )
        total = sum(examples.values())
        for name in SHAPES:
            local = {node: global_model[name] + changes[node][name] for node in nodes}
            expected = sum(examples[node] / total * local[node] for node in nodes)
            np.testing.assert_allclose(aggregated[name], expected, rtol=1e-6, atol=1e-7)
        assert strategy.bytes_per_round[server_round] == {n: len(m) for n, m in sent.items()}
        for record in strategy.records[-2:]:
            message = sent[record["node_id"]]
            assert record["sha256"] == hashlib.sha256(message).hexdigest()
            assert record["entries"] == sum(int(np.prod(s)) for s in SHAPES.values())
        global_model = aggregated

    assert strategy.total_bytes_per_round == {
        rnd: sum(nodes.values()) for rnd, nodes in strategy.bytes_per_round.items()
    }
    written = json.loads(records.read_text())
    assert written["records"] == strategy.records
    strategy.write_records(tmp_path / "uplink.csv")
    with (tmp_path / "uplink.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["bytes"]) for row in rows] == [r["bytes"] for r in strategy.records]


def test_strategy_follows_stateful_streams_over_rounds():
    """topk-ef-1pct over 3 rounds, fresh Mods each round: the server's delta of
    each node is what an uninterrupted encoder of that node reconstructs."""
    nodes, examples = [1, 2], {1: 5, 2: 5}
    strategy = fedavg("topk-ef-1pct", 2)
    pipeline = gradcodec.pipeline("topk-ef-1pct")
    references = {node: pipeline.encoder() for node in nodes}
    contexts = {node: context(node) for node in nodes}
    global_model = model(6)
    for server_round in range(1, 4):
        changes = {node: step(10 * server_round + node) for node in nodes}
        expected_deltas = {}
        for node in nodes:
            delta = {n: (global_model[n] + changes[node][n]) - global_model[n] for n in SHAPES}
            references[node].encode(delta)
            expected_deltas[node] = references[node].last_reconstruction
        aggregated, _ = run_round(
            strategy, server_round, global_model, contexts, changes, examples, "topk-ef-1pct"
        )
        for name in SHAPES:
            expected = global_model[name] + np.mean(
                [expected_deltas[node][name] for node in nodes], axis=0
            )
            np.testing.assert_allclose(aggregated[name], expected, rtol=1e-6, atol=1e-6)
        assert aggregated["fc.weight"].tolist() != global_model["fc.weight"].tolist()
        global_model = aggregated
    assert [r["stream_round"] for r in strategy.records] == [0, 0, 1, 1, 2, 2]


def test_predictive_pipeline_sends_a_lossless_warmup_then_coded_models():
    """resfed: round 1 is the model through f32 (exact), later rounds code
    ``model - first model`` after both ends observed the global model."""
    node = 4
    strategy = fedavg("resfed", 1)
    assert strategy.payload == "model"
    pipeline = gradcodec.pipeline("resfed")
    encoder, decoder = pipeline.encoder(), pipeline.decoder()
    contexts = {node: context(node)}
    global_model, first = model(7), None
    sizes = []
    for server_round in range(1, 4):
        change = step(server_round, scale=0.05)
        local = {n: global_model[n] + change[n] for n in SHAPES}
        aggregated, sent = run_round(
            strategy, server_round, global_model, contexts, {node: change}, {node: 1}, "resfed"
        )
        encoder.observe(global_model)
        decoder.observe(global_model)
        if server_round == 1:
            first = local
            assert strategy.records[-1]["payload"] == "warmup"
            assert strategy.records[-1]["pipeline"] == WARMUP_PIPELINE
            expected = local
        else:
            assert strategy.records[-1]["payload"] == "model"
            message = encoder.encode({n: local[n] - first[n] for n in SHAPES})
            assert sent[node] == message
            decoded = decoder.decode(message)
            expected = {n: decoded[n] + first[n] for n in SHAPES}
        for name in SHAPES:
            np.testing.assert_allclose(aggregated[name], expected[name], rtol=1e-6, atol=1e-6)
        sizes.append(len(sent[node]))
        global_model = aggregated
    assert max(sizes[1:]) < sizes[0]


def test_strategy_refuses_replies_of_another_pipeline():
    strategy = fedavg("f32", 1)
    with pytest.raises(ValueError, match=r"qsgd.*f32"):
        run_round(strategy, 1, model(8), {1: context(1)}, {1: step(8)}, {1: 1}, "qsgd")


def test_a_stream_out_of_step_is_dropped_and_the_others_averaged(caplog):
    """Node 2's round-1 reply never reached this (new) server: its round-2
    message cannot be decoded, so only node 1's reply is averaged."""
    nodes = [1, 2]
    contexts = {node: context(node) for node in nodes}
    global_model = model(9)
    # Round 1 of node 2 only, on a server that is then lost.
    pipeline = "topk-ef-1pct"
    lost = {2: contexts[2]}
    run_round(fedavg(pipeline, 1), 1, global_model, lost, {2: step(1)}, {2: 1}, pipeline)
    contexts[2] = lost[2]
    strategy = fedavg("topk-ef-1pct", 2)
    changes = {1: step(11), 2: step(12)}
    aggregated, _ = run_round(
        strategy, 2, global_model, contexts, changes, {1: 1, 2: 1}, "topk-ef-1pct"
    )
    assert [r["node_id"] for r in strategy.records] == [1]
    assert "dropping the reply of node 2" in caplog.text
    reference = gradcodec.pipeline("topk-ef-1pct").encoder()
    reference.encode({n: (global_model[n] + changes[1][n]) - global_model[n] for n in SHAPES})
    for name in SHAPES:
        expected = global_model[name] + reference.last_reconstruction[name]
        np.testing.assert_allclose(aggregated[name], expected, rtol=1e-6, atol=1e-6)


# -- the deployment engine on loopback ------------------------------------------------


def _load_flower_run():
    spec = importlib.util.spec_from_file_location("flower_run", EXAMPLES / "flower_run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["flower_run"] = module
    spec.loader.exec_module(module)
    return module


def _data_dir() -> str:
    """Fashion-MNIST where scripts/fetch-data caches it, if it is there, else the
    app's synthetic stand-in (the test checks the plumbing, not the accuracy;
    it downloads nothing)."""
    folder = ROOT / ".data" / "fashion-mnist"
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    names += ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    return str(folder) if all((folder / name).is_file() for name in names) else "synthetic"


def test_deployment_engine_three_rounds_with_a_stateful_pipeline(tmp_path):
    flower_run = _load_flower_run()
    result_file = tmp_path / "result.json"
    client_log = tmp_path / "clients.jsonl"
    rounds = 3
    federation = flower_run.LoopbackFederation(tmp_path / "federation", supernodes=2)
    with federation:  # stops every process on the way out, also when the run fails
        federation.run(
            flower_run.APP_DIR,
            {
                "pipeline": "topk-ef-1pct",
                "num-server-rounds": rounds,
                "num-nodes": 2,
                "data-dir": _data_dir(),
                "train-limit": 2000,
                "test-limit": 2000,
                "out-file": str(result_file),
                "client-log": str(client_log),
            },
            timeout=150,
            done=result_file,
        )
    assert federation.leftovers() == [], "processes of the federation still run"

    result = json.loads(result_file.read_text())
    records = result["records"]
    sent = [json.loads(line) for line in client_log.read_text().splitlines()]
    nodes = sorted({entry["node_id"] for entry in sent})
    assert len(nodes) == 2
    # Every reply of every round was decoded, and is exactly what a client sent.
    assert sorted((r["round"], r["node_id"]) for r in records) == [
        (rnd, node) for rnd in range(1, rounds + 1) for node in nodes
    ]
    by_key = {(e["server_round"], e["node_id"]): e for e in sent}
    assert len(by_key) == len(sent) == len(records)
    for record in records:
        entry = by_key[(record["round"], record["node_id"])]
        assert (record["bytes"], record["sha256"]) == (entry["bytes"], entry["sha256"])
        assert record["stream_round"] == entry["stream_round"] == record["round"] - 1
        assert record["bytes"] < 4 * record["entries"]  # 1% top-k is well under f32
    # A fresh ClientApp process every round: the stream state came through Context.
    for node in nodes:
        pids = [e["pid"] for e in sent if e["node_id"] == node]
        assert len(set(pids)) == rounds
    per_round = result["per_round"]
    assert [r["uplink_bytes"] for r in per_round] == [
        sum(r["bytes"] for r in records if r["round"] == rnd) for rnd in range(1, rounds + 1)
    ]
    # The model changed every round, and learned.
    norms = [result["initial"]["norm"]] + [r["norm"] for r in per_round]
    assert all(a != b for a, b in itertools.pairwise(norms))
    assert per_round[-1]["accuracy"] > result["initial"]["accuracy"]


@pytest.fixture(autouse=True)
def _flower_process(monkeypatch):
    """What a ServerApp process has set up before it builds Messages (the
    identity of its task), and no network from this process."""
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)
    monkeypatch.setenv("FLWR_TELEMETRY_ENABLED", "0")
    monkeypatch.setenv("FLWR_DISABLE_UPDATE_CHECK", "1")


def test_a_model_relative_to_a_lost_warmup_is_dropped(caplog):
    """resfed: a server that never got the node's warm-up cannot rebuild its
    model, and says so instead of averaging a wrong one."""
    node = 3
    contexts = {node: context(node)}
    global_model = model(10)
    run_round(fedavg("resfed", 1), 1, global_model, contexts, {node: step(1)}, {node: 1}, "resfed")
    strategy = fedavg("resfed", 1)
    aggregated, _ = run_round(
        strategy, 2, global_model, contexts, {node: step(2)}, {node: 1}, "resfed"
    )
    assert aggregated is None  # nothing left to average: the global model stays
    assert strategy.records == []
    assert "warm-up model this server never received" in caplog.text


def test_deployment_engine_failure_is_reported_and_every_process_stopped(tmp_path):
    """A ServerApp that fails (an unknown pipeline) makes the run raise with the
    ServerApp's error in the message; every process of the federation ends."""
    flower_run = _load_flower_run()
    result_file = tmp_path / "result.json"
    federation = flower_run.LoopbackFederation(tmp_path / "federation", supernodes=2)
    with pytest.raises(flower_run.FederationError, match="no shipped pipeline"), federation:
        federation.run(
            flower_run.APP_DIR,
            {"pipeline": "no-such-pipeline", "out-file": str(result_file)},
            timeout=90,
            done=result_file,
        )
    assert not result_file.exists()
    assert federation.leftovers() == [], "processes of the federation still run"
