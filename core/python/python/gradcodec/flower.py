"""Flower integration: gradcodec on the uplink of a Flower (>= 1.42) federation.

Two pieces, one per side, that meet in Flower's Message API:

* `compression_mod` (client) builds a Mod for ``ClientApp(mods=[...])``. On a
  *train* message it lets the ClientApp train, then replaces the reply's
  ArrayRecord by one carrying a single gradcodec message: the model delta
  against the received model (``local - global``), or, for predictive
  pipelines (a ``predictor`` stage, e.g. ``resfed``), the model itself. The
  encoder's state (error-feedback memory, predictor history, round number) is
  kept in ``Context.state``, so it survives the fresh ClientApp process the
  SuperNode starts for every message.
* `GradcodecFedAvg` (server) is a FedAvg whose ``aggregate_train`` decodes every
  reply with one decoder per node (keyed by ``reply.metadata.src_node_id``),
  turns it back into weights (``global + delta``, or the decoded model) and then
  lets FedAvg average them. It records the bytes that really crossed the link:
  one record per round and node with the message size, entries and a SHA-256 of
  the message (`records`, `bytes_per_round`, `write_records`).

Mapping to the Message API
--------------------------
A coded train reply keeps its records and keys; only two things change:

* its ArrayRecord (same key, e.g. ``"arrays"``) holds ``MESSAGE_KEY`` ->
  ``Array(dtype="uint8", shape=(n,), stype="gradcodec", data=<message>)``: the
  data are the message bytes exactly (no .npy header). Arrays the codec does not
  code (not float32, or absent from the received model) stay beside it as they
  are and are counted as ``raw_bytes``.
* a ConfigRecord ``META_KEY`` (``"gradcodec"``) names the pipeline, its
  fingerprint, the payload (``delta``, ``model`` or ``warmup``), the stream round,
  whether a model is coded relative to the node's warm-up model, and the coded
  tensor names.

The MetricRecord (``num-examples`` ...) is untouched. Evaluate and query
messages, and replies that carry an error, pass through unchanged. Before
delegating to FedAvg the strategy puts the decoded weights back as a plain
ArrayRecord, so FedAvg's checks and weighting apply as usual.

Predictive pipelines. With ``payload="model"`` both ends feed the global model
of the round to their predictor (``Encoder.observe`` / ``Decoder.observe``)
before coding, and, with ``warmup=True`` (the default, as ResFed: "round 0 sends
full models"), a node's first reply carries its model losslessly through the
shipped ``f32`` pipeline; later replies code ``model - first model`` (the same
scheme as the training harness's ``Link``).

Limits. Only the uplink (train replies) is coded; the downlink stays Flower's
ArrayRecord. A stateful stream assumes every reply the client produced reaches
the server: a lost reply leaves the node's decoder one round behind, its later
replies fail to decode (`gradcodec.MessageError`) and are dropped with an error
in the log (FedAvg then averages the other replies).

Usage
-----
Client (``client_app.py``)::

    from flwr.clientapp import ClientApp
    from gradcodec.flower import compression_mod

    app = ClientApp(mods=[compression_mod("topk-ef-1pct")])
    # or per run: compression_mod(lambda context: context.run_config["pipeline"])

    @app.train()
    def train(msg, context):
        ...  # train as usual, reply with {"arrays": ArrayRecord, "metrics": MetricRecord}

Server (``server_app.py``)::

    from gradcodec.flower import GradcodecFedAvg

    strategy = GradcodecFedAvg("topk-ef-1pct", fraction_evaluate=0.0,
                               records_path="uplink.json")
    result = strategy.start(grid=grid, initial_arrays=arrays, num_rounds=10)
    strategy.total_bytes_per_round   # {round: bytes}, from the real messages
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from logging import ERROR, INFO
from pathlib import Path
from typing import Any

import numpy as np
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
from flwr.common.constant import SType
from flwr.serverapp.grid import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.supercore import log

from . import Decoder, Encoder, Error, MessageError, Pipeline
from . import decode as _decode_self_describing
from . import pipeline as _load_pipeline

__all__ = [
    "MESSAGE_KEY",
    "MESSAGE_STYPE",
    "META_KEY",
    "WARMUP_PIPELINE",
    "GradcodecFedAvg",
    "compression_mod",
    "is_predictive",
]

MESSAGE_KEY = "gradcodec.message"
"""Key of the message Array inside the reply's ArrayRecord."""
META_KEY = "gradcodec"
"""Key of the ConfigRecord that describes the message in a reply."""
MESSAGE_STYPE = "gradcodec"
"""``Array.stype`` of a message Array (its data are the message bytes)."""
WARMUP_PIPELINE = "f32"
"""The shipped pipeline that carries a predictive stream's first (raw) model."""
FORMAT_VERSION = 1

PipelineLike = Pipeline | str | os.PathLike
PipelineArg = PipelineLike | Callable[[Context], PipelineLike]
ClientAppCallable = Callable[[Message, Context], Message]
PathArg = str | os.PathLike | Callable[[Context], "str | os.PathLike | None"] | None

_PAYLOADS = ("auto", "delta", "model")


def _as_pipeline(value: PipelineLike, cache: dict[str, Pipeline] | None = None) -> Pipeline:
    """A Pipeline from a Pipeline, a shipped name or a spec path (cached by text)."""
    if isinstance(value, Pipeline):
        return value
    text = os.fspath(value)
    if cache is None:
        return _load_pipeline(text)
    if text not in cache:
        cache[text] = _load_pipeline(text)
    return cache[text]


def is_predictive(pipeline: Pipeline) -> bool:
    """Whether the pipeline has a predictor stage (it then codes models, not deltas)."""
    return any(stage["kind"] == "predictor" for stage in pipeline.stages)


def _resolve_payload(pipeline: Pipeline, payload: str) -> str:
    if payload not in _PAYLOADS:
        raise ValueError(f"payload must be one of {', '.join(_PAYLOADS)}, not {payload!r}")
    if payload == "auto":
        return "model" if is_predictive(pipeline) else "delta"
    return payload


def _is_train(message: Message) -> bool:
    kind = message.metadata.message_type
    return kind == MessageType.TRAIN or kind.startswith(MessageType.TRAIN + ".")


def _find_arrayrecord(content: RecordDict, key: str | None) -> tuple[str, ArrayRecord] | None:
    """The ArrayRecord of a message: under ``key``, else the only one; None if absent."""
    records = content.array_records
    if key is not None:
        return (key, records[key]) if key in records else None
    if len(records) == 1:
        return next(iter(records.items()))
    if len(records) > 1:
        raise ValueError(
            f"the message holds {len(records)} ArrayRecords ({', '.join(records)}); "
            "pass arrayrecord_key to say which one carries the model"
        )
    return None


def _split(record: ArrayRecord) -> tuple[dict[str, np.ndarray], dict[str, Array]]:
    """The float32 numpy arrays of a record (coded) and every other Array (passed raw)."""
    floats: dict[str, np.ndarray] = {}
    others: dict[str, Array] = {}
    for name, array in record.items():
        if array.stype == SType.NUMPY and array.dtype == "float32":
            floats[name] = array.numpy()
        else:
            others[name] = array
    return floats, others


def _message_array(message: bytes) -> Array:
    return Array(dtype="uint8", shape=(len(message),), stype=MESSAGE_STYPE, data=message)


def _resolve_path(value: PathArg, context: Context) -> Path | None:
    if callable(value):
        value = value(context)
    if value is None or os.fspath(value) == "":
        return None
    return Path(value)


def _append_json_line(path: Path, entry: Mapping[str, Any]) -> None:
    """Appends one JSON line with a single O_APPEND write (safe with concurrent writers)."""
    line = (json.dumps(entry, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def compression_mod(
    pipeline: PipelineArg,
    *,
    state_key: str = "gradcodec",
    payload: str = "auto",
    warmup: bool = True,
    arrayrecord_key: str | None = None,
    log_file: PathArg = None,
    encoder_options: Mapping[str, Any] | None = None,
) -> Callable[[Message, Context, ClientAppCallable], Message]:
    """A client Mod that codes the ArrayRecord of every train reply with gradcodec.

    Parameters
    ----------
    pipeline
        A `gradcodec.Pipeline`, a shipped pipeline name, a spec path, or a callable
        ``context -> one of those`` (e.g. ``lambda c: c.run_config["pipeline"]``).
    state_key
        Where the stream state lives in ``Context.state``: a ConfigRecord under
        ``state_key`` (pipeline, fingerprint, payload, the encoder's ``save_state``
        bytes) and, for a warmed-up predictive stream, an ArrayRecord under
        ``state_key + ".offset"`` (the first model).
    payload
        ``"delta"`` (``local - received``), ``"model"`` (the local model; the
        received model is observed by the predictor), or ``"auto"``: ``model`` for
        pipelines with a predictor stage, else ``delta``. Must match the strategy's.
    warmup
        With ``payload="model"``: send the first model losslessly (``f32``) and code
        later models as differences to it. Must match the strategy's.
    arrayrecord_key
        The ArrayRecord holding the model, in the received message and the reply;
        by default the only ArrayRecord of each.
    log_file
        A path (or ``context -> path``) to which one JSON line per coded reply is
        appended: node_id, run_id, server_round, pipeline, payload, stream_round,
        bytes, raw_bytes, entries, sha256 and pid.
    encoder_options
        Keyword arguments of `Pipeline.encoder` (``embed``, ``non_finite``).

    The Mod raises `gradcodec.Error` subclasses when coding fails and `ValueError`
    when the state in the Context belongs to another pipeline; Flower turns either
    into an error reply.
    """
    mode_request = payload
    if mode_request not in _PAYLOADS:
        raise ValueError(f"payload must be one of {', '.join(_PAYLOADS)}, not {payload!r}")
    if not callable(pipeline):
        fixed = _as_pipeline(pipeline)
        _resolve_payload(fixed, mode_request)  # fail early on a bad payload
    cache: dict[str, Pipeline] = {}
    options = dict(encoder_options or {})
    offset_key = f"{state_key}.offset"

    def resolve(context: Context) -> Pipeline:
        return _as_pipeline(pipeline(context) if callable(pipeline) else pipeline, cache)

    def load_encoder(context: Context, pipe: Pipeline, mode: str) -> Encoder:
        encoder = pipe.encoder(**options)
        saved = context.state.config_records.get(state_key)
        if saved is not None:
            if saved.get("fingerprint") != pipe.fingerprint_hex or saved.get("payload") != mode:
                raise ValueError(
                    f"gradcodec state in Context.state[{state_key!r}] belongs to pipeline "
                    f"{saved.get('pipeline')!r} ({saved.get('fingerprint')}, payload "
                    f"{saved.get('payload')!r}), not {pipe.name!r} ({pipe.fingerprint_hex}, "
                    f"payload {mode!r}); use another state_key"
                )
            encoder.load_state(saved["encoder"])
        return encoder

    def mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
        if not _is_train(msg) or not msg.has_content():
            return call_next(msg, ctxt)
        found = _find_arrayrecord(msg.content, arrayrecord_key)
        received = _split(found[1])[0] if found is not None else {}
        reply = call_next(msg, ctxt)
        if reply.has_error() or not reply.has_content():
            return reply
        found_reply = _find_arrayrecord(reply.content, arrayrecord_key)
        if found_reply is None:
            return reply
        reply_key, local_record = found_reply

        pipe = resolve(ctxt)
        mode = _resolve_payload(pipe, mode_request)
        local, others = _split(local_record)
        # Coded: float32 tensors the received model also has, with the same shape.
        names = [
            name
            for name, value in local.items()
            if name in received and received[name].shape == value.shape
        ]
        for name in local:
            if name not in names:
                others[name] = local_record[name]
        encoder = load_encoder(ctxt, pipe, mode)

        new_offset: dict[str, np.ndarray] | None = None
        relative = False
        if mode == "model":
            encoder.observe({name: received[name] for name in names})
            offset_record = ctxt.state.array_records.get(offset_key) if warmup else None
            if warmup and offset_record is None:
                kind = "warmup"
                sent_pipe = _as_pipeline(WARMUP_PIPELINE, cache)
                new_offset = {name: local[name] for name in names}
                message = sent_pipe.encoder(embed="first").encode(new_offset)
                stream_round = 0
            else:
                kind = "model"
                sent_pipe = pipe
                offset = _split(offset_record)[0] if offset_record is not None else {}
                relative = bool(offset)
                update = {
                    name: local[name] - offset[name] if name in offset else local[name]
                    for name in names
                }
                stream_round = encoder.round
                message = encoder.encode(update)
        else:
            kind = "delta"
            sent_pipe = pipe
            stream_round = encoder.round
            message = encoder.encode({name: local[name] - received[name] for name in names})

        meta = ConfigRecord(
            {
                "format": FORMAT_VERSION,
                "pipeline": sent_pipe.name,
                "fingerprint": sent_pipe.fingerprint_hex,
                "payload": kind,
                "stream-round": stream_round,
                "relative": relative,
                "tensors": list(names),
            }
        )
        path = _resolve_path(log_file, ctxt)
        if path is not None:
            config = next(iter(msg.content.config_records.values()), ConfigRecord())
            _append_json_line(
                path,
                {
                    "node_id": ctxt.node_id,
                    "run_id": ctxt.run_id,
                    "server_round": config.get("server-round"),
                    "pipeline": sent_pipe.name,
                    "payload": kind,
                    "stream_round": stream_round,
                    "bytes": len(message),
                    "raw_bytes": sum(len(array.data) for array in others.values()),
                    "entries": int(sum(local[name].size for name in names)),
                    "sha256": hashlib.sha256(message).hexdigest(),
                    "pid": os.getpid(),
                },
            )
        # The state changes last, once nothing can fail any more.
        coded = ArrayRecord({MESSAGE_KEY: _message_array(message), **others})
        records = {key: coded if key == reply_key else rec for key, rec in reply.content.items()}
        reply.content = RecordDict({**records, META_KEY: meta})
        if new_offset is not None:
            ctxt.state[offset_key] = ArrayRecord(
                {name: Array(value) for name, value in new_offset.items()}
            )
        ctxt.state[state_key] = ConfigRecord(
            {
                "pipeline": pipe.name,
                "fingerprint": pipe.fingerprint_hex,
                "payload": mode,
                "encoder": encoder.save_state(),
            }
        )
        return reply

    return mod


class GradcodecFedAvg(FedAvg):
    """FedAvg over gradcodec-coded train replies (see the module doc).

    ``pipeline`` and ``payload`` must match the clients' `compression_mod`
    (whether a predictive stream was warmed up, the messages say).
    ``records_path`` (``.json`` or ``.csv``), if given, is rewritten after every
    round with `records`. Every other keyword argument goes to
    `flwr.serverapp.strategy.FedAvg`.

    Replies are decoded in place: after ``aggregate_train`` their content holds
    the decoded weights as a plain ArrayRecord.
    """

    def __init__(
        self,
        pipeline: PipelineLike,
        *,
        payload: str = "auto",
        records_path: str | os.PathLike | None = None,
        **fedavg_kwargs: Any,
    ) -> None:
        super().__init__(**fedavg_kwargs)
        self.pipeline = _as_pipeline(pipeline)
        self.payload = _resolve_payload(self.pipeline, payload)
        self.records_path = Path(records_path) if records_path is not None else None
        self.records: list[dict[str, Any]] = []
        """One dict per decoded reply: round, node_id, pipeline, payload, stream_round,
        bytes (the message), raw_bytes (uncoded arrays beside it), entries, sha256."""
        self._warmup_pipeline = _as_pipeline(WARMUP_PIPELINE)
        self._decoders: dict[int, Decoder] = {}
        self._offsets: dict[int, dict[str, np.ndarray]] = {}
        self._sent: tuple[int, ArrayRecord] | None = None

    def summary(self) -> None:
        """Log the FedAvg summary and the codec."""
        super().summary()
        log(
            INFO,
            "\t└──> gradcodec uplink: pipeline %s (%s), payload %s",
            self.pipeline.name,
            self.pipeline.fingerprint_hex,
            self.payload,
        )

    @property
    def bytes_per_round(self) -> dict[int, dict[int, int]]:
        """Message bytes per round and node: ``{round: {node_id: bytes}}``."""
        out: dict[int, dict[int, int]] = {}
        for record in self.records:
            out.setdefault(record["round"], {})[record["node_id"]] = record["bytes"]
        return out

    @property
    def total_bytes_per_round(self) -> dict[int, int]:
        """Message bytes of all nodes per round: ``{round: bytes}``."""
        return {rnd: sum(nodes.values()) for rnd, nodes in self.bytes_per_round.items()}

    def write_records(self, path: str | os.PathLike) -> None:
        """Writes `records` to ``path``: JSON (``.json``: pipeline, payload, records) or CSV."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".csv":
            fields = [
                "round",
                "node_id",
                "pipeline",
                "payload",
                "stream_round",
                "bytes",
                "raw_bytes",
                "entries",
                "sha256",
            ]
            with path.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(self.records)
        else:
            document = {
                "pipeline": self.pipeline.name,
                "fingerprint": self.pipeline.fingerprint_hex,
                "payload": self.payload,
                "records": self.records,
            }
            path.write_text(json.dumps(document, indent=2) + "\n")

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """FedAvg's configure_train, remembering the global model the deltas refer to."""
        self._sent = (server_round, arrays)
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Decodes every reply (dropping those that fail to decode), then FedAvg."""
        replies = list(replies)
        if self._sent is None or self._sent[0] != server_round:
            raise RuntimeError(
                f"aggregate_train for round {server_round}, but configure_train did not "
                "configure that round: the strategy needs the global model it sent"
            )
        global_floats, _ = _split(self._sent[1])
        kept = []
        for reply in replies:
            if reply.has_error() or not reply.has_content():
                kept.append(reply)
                continue
            try:
                self._decode_reply(server_round, reply, global_floats)
            except Error as error:  # e.g. a stream out of step; configuration errors raise
                log(
                    ERROR,
                    "gradcodec: dropping the reply of node %d in round %d: %s",
                    reply.metadata.src_node_id,
                    server_round,
                    error,
                )
                continue
            kept.append(reply)
        result = super().aggregate_train(server_round, kept)
        if self.records_path is not None:
            self.write_records(self.records_path)
        return result

    def _decoder(self, node: int) -> Decoder:
        if node not in self._decoders:
            self._decoders[node] = self.pipeline.decoder()
        return self._decoders[node]

    def _decode_reply(
        self, server_round: int, reply: Message, global_floats: dict[str, np.ndarray]
    ) -> None:
        node = reply.metadata.src_node_id
        content = reply.content
        meta = content.config_records.get(META_KEY)
        if meta is None:
            raise ValueError(
                f"the train reply of node {node} carries no gradcodec message (no "
                f"ConfigRecord {META_KEY!r}): is compression_mod in the ClientApp's mods?"
            )
        kind = meta["payload"]
        expected = self._warmup_pipeline if kind == "warmup" else self.pipeline
        expected_kind = ("warmup", "model") if self.payload == "model" else ("delta",)
        if kind not in expected_kind or meta["fingerprint"] != expected.fingerprint_hex:
            raise ValueError(
                f"node {node} sent a {kind!r} message of pipeline {meta['pipeline']!r} "
                f"({meta['fingerprint']}); this strategy decodes {self.payload!r} payloads of "
                f"{self.pipeline.name!r} ({self.pipeline.fingerprint_hex})"
            )
        found = _find_arrayrecord(content, None)
        if found is None or MESSAGE_KEY not in found[1]:
            raise ValueError(f"the train reply of node {node} has no {MESSAGE_KEY!r} Array")
        record_key, record = found
        message = record[MESSAGE_KEY].data
        others = {name: array for name, array in record.items() if name != MESSAGE_KEY}
        names = list(meta["tensors"])
        missing = [name for name in names if name not in global_floats]
        if missing:
            raise ValueError(f"node {node} coded tensors the global model lacks: {missing}")

        if kind == "delta":
            delta = self._decoder(node).decode(message)
            weights = {name: global_floats[name] + delta[name] for name in names}
        else:
            decoder = self._decoder(node)
            decoder.observe({name: global_floats[name] for name in names})
            if kind == "warmup":
                weights = _decode_self_describing(message)
                self._offsets[node] = {name: weights[name].copy() for name in names}
            else:
                if meta.get("relative", False) and node not in self._offsets:
                    raise MessageError(
                        f"node {node} codes its model relative to a warm-up model this "
                        "server never received"
                    )
                decoded = decoder.decode(message)
                offset = self._offsets.get(node, {}) if meta.get("relative", False) else {}
                weights = {
                    name: decoded[name] + offset[name] if name in offset else decoded[name]
                    for name in names
                }
        if sorted(weights) != sorted(names):
            raise ValueError(
                f"node {node}'s message holds tensors {sorted(weights)}, its metadata "
                f"names {sorted(names)}"
            )

        order = [name for name in self._sent[1] if name in weights or name in others]
        order += [name for name in others if name not in order]
        arrays = ArrayRecord(
            {
                name: Array(np.ascontiguousarray(weights[name], dtype=np.float32))
                if name in weights
                else others[name]
                for name in order
            }
        )
        reply.content = RecordDict(
            {
                key: arrays if key == record_key else value
                for key, value in content.items()
                if key != META_KEY
            }
        )
        self.records.append(
            {
                "round": server_round,
                "node_id": node,
                "pipeline": meta["pipeline"],
                "payload": kind,
                "stream_round": meta["stream-round"],
                "bytes": len(message),
                "raw_bytes": sum(len(array.data) for array in others.values()),
                "entries": int(sum(weights[name].size for name in names)),
                "sha256": hashlib.sha256(message).hexdigest(),
            }
        )
