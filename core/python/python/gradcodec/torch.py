"""A PyTorch DDP communication hook that codes every gradient bucket with a
gradcodec pipeline.

What it computes
----------------
``DistributedDataParallel`` hands the hook one flat gradient bucket at a time.
After ``start_iter`` iterations of plain allreduce, every rank

1. splits the bucket into its parameters' gradients (named ``"0"``, ``"1"``,
   ... in ``bucket.parameters()`` order) and encodes them as one update with
   the bucket's own encoder (so error feedback, memory decay or prediction
   state is kept per bucket and per rank);
2. all-gathers the message sizes (int64), then the messages padded to the
   largest (uint8, asynchronous);
3. in the collective's ``.then`` callback, decodes every rank's message, its
   own included, with one decoder per (bucket, sending rank), sums the
   decoded gradients in rank order in float32, divides by the world size and
   writes the mean into the bucket.

Every rank decodes the same messages with decoders in the same state and adds
them in the same order, so every rank gets a bit-identical mean gradient and
the replicas stay identical, whatever the pipeline. With a lossless pipeline
(``f32``, ``zstd``) on two ranks the mean is bit-identical to DDP's own
allreduce (``a/2 + b/2 == (a + b)/2`` exactly in binary floating point).

Failures never hang a rank. A rank whose update cannot be encoded (say a NaN
gradient with ``non_finite="error"``) still takes part in both collectives: it
sends a negative size and the reason instead of a message, and every rank then
raises `HookError` (a `gradcodec.Error`) from ``loss.backward()``, naming the
failing ranks and their reasons. After that the DDP object itself cannot go on
(its reducer did not finish the iteration): rebuild it, or stop (drop the
model and run ``gc.collect()`` before ``dist.destroy_process_group()``, or
the process can abort at exit: see docs/python.md). A message
that cannot be decoded (which would be a bug: all ranks see the same bytes) is
not raised inside the callback (an exception in a DDP future callback aborts
the process at exit): the bucket is zeroed, a warning is issued, and the error
is reported through the next bucket's size exchange, so every rank raises it
from that bucket's hook (the same backward, or the next one); the replicas may
differ by that one bucket's step. After the last backward,
`GradcodecState.check` raises a pending one. Before raising, the hook waits
for the futures of the iteration's earlier buckets (raising while DDP holds
them unfinished can abort the process at exit with torch 2.13 and gloo).

Statistics
----------
`GradcodecState.step_stats` holds one dict per iteration (an iteration ends
with the bucket whose ``is_last()`` is true): ``bytes`` (this rank's messages,
summed over buckets; for allreduce iterations 4 bytes per float32 entry),
``wire_bytes`` (what this rank puts into the collectives: the padded messages
plus 8 bytes of size per bucket), ``rank_bytes`` (every rank's message bytes),
``entries``, ``bits_per_entry`` (``8 * bytes / entries``), ``encode_s``
(includes the device-to-host copy) and ``decode_s`` (decoding every rank's
message, averaging and the copy back) in seconds. `pop_step_stats` reads and
clears them, `summary` averages them.

CUDA cost
---------
The codecs run on the CPU. For a bucket on a GPU the hook copies it to host
memory (a synchronizing device-to-host copy on the autograd thread, which also
stalls the overlap of backward and communication), and the callback copies the
mean back (host-to-device): two PCIe transfers of the bucket per iteration, on
top of coding. With an NCCL process group the size and message tensors travel
on the bucket's device (NCCL only moves CUDA tensors): two more small copies.
Use a gloo group (or a ``"cpu:gloo,cuda:nccl"`` one) to keep them on the host.

Where the design comes from
---------------------------
The hook protocol and the plain allreduce (divide, then allreduce) follow
``torch.distributed.algorithms.ddp_comm_hooks.default_hooks``; the state
object, the ``start_iter`` warm-up (DDP rebuilds its buckets after the first
iteration, so per-bucket state must not start before iteration 2), the
per-bucket state keyed by ``bucket.index()`` and the iteration count on
``bucket.is_last()`` follow ``powerSGD_hook.PowerSGDState``. Unlike PowerSGD,
which all-reduces low-rank factors, a gradcodec message is not additive, so the
messages are all-gathered and every rank decodes them all.

Usage
-----
::

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from gradcodec.torch import GradcodecState, gradcodec_hook

    dist.init_process_group("gloo")
    model = DDP(net)
    state = GradcodecState("topk-ef-1pct")        # a shipped name, a path, or a Pipeline
    model.register_comm_hook(state, gradcodec_hook)
    for x, y in batches:
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
    print(state.summary())                        # mean bytes/step, bits/entry, codec seconds
"""

import itertools
import math
import os
import threading
import time
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

import gradcodec

__all__ = ["GradcodecState", "HookError", "gradcodec_hook"]


class HookError(gradcodec.Error):
    """One or more ranks could not code a bucket. Raised on every rank.

    ``failures`` maps each failing rank to its reason; ``iteration`` and
    ``bucket`` say where."""

    def __init__(self, iteration: int, bucket: int, failures: Mapping[int, str]) -> None:
        self.iteration = iteration
        self.bucket = bucket
        self.failures = dict(failures)
        text = "; ".join(f"rank {rank}: {why}" for rank, why in sorted(self.failures.items()))
        super().__init__(
            f"gradcodec DDP hook, iteration {iteration}, bucket {bucket}: "
            f"{len(self.failures)} rank(s) failed: {text}"
        )

    def __reduce__(self):
        return (type(self), (self.iteration, self.bucket, self.failures))


class _BucketStreams:
    """The streams of one bucket: this rank's encoder and one decoder per
    sending rank, for one parameter layout (shapes and offsets in the flat
    bucket, in ``bucket.parameters()`` order)."""

    def __init__(
        self,
        state: "GradcodecState",
        signature: tuple,
        shapes: list[tuple[int, ...]],
        offsets: list[int],
    ) -> None:
        self.signature = signature
        self.shapes = shapes
        self.numels = [math.prod(shape) for shape in shapes]
        self.offsets = offsets
        self.entries = sum(self.numels)
        self.encoder = state.pipeline.encoder(embed=state.embed, non_finite=state.non_finite)
        self.decoders = [state.pipeline.decoder() for _ in range(state.world_size)]

    def split(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Views of the flat bucket, one per parameter (no copies)."""
        return {
            str(i): flat[start : start + numel].reshape(shape)
            for i, (start, numel, shape) in enumerate(
                zip(self.offsets, self.numels, self.shapes, strict=True)
            )
        }


class GradcodecState:
    """The state of `gradcodec_hook`: the pipeline, the streams of every
    bucket, the iteration count and the per-iteration statistics.

    ``pipeline``: a `gradcodec.Pipeline`, a shipped pipeline's name or a spec
    path. ``process_group``: the group to reduce over (default: the world).
    ``start_iter``: iterations of plain allreduce before coding starts (2 lets
    DDP rebuild its buckets first). ``cast``: code float16/bfloat16 buckets
    by converting them to float32 (otherwise they are refused).
    ``non_finite``: ``"error"`` (a NaN or infinite gradient fails the
    iteration on every rank) or ``"zero"``. ``embed``: whether messages carry
    the pipeline (``"never"`` by default: every rank built the same one, and
    every message still carries its fingerprint, which the decoders check).
    """

    def __init__(
        self,
        pipeline: gradcodec.Pipeline | str | os.PathLike,
        process_group: dist.ProcessGroup | None = None,
        start_iter: int = 2,
        cast: bool = False,
        *,
        non_finite: str = "error",
        embed: str = "never",
    ) -> None:
        if not isinstance(pipeline, gradcodec.Pipeline):
            pipeline = gradcodec.pipeline(pipeline)
        if start_iter < 0:
            raise ValueError(f"start_iter must be >= 0, not {start_iter}")
        if non_finite not in ("error", "zero"):
            raise ValueError(f'non_finite must be "error" or "zero", not {non_finite!r}')
        if embed not in ("first", "always", "never"):
            raise ValueError(f'embed must be "first", "always" or "never", not {embed!r}')
        self.pipeline = pipeline
        self.process_group = process_group
        self.start_iter = start_iter
        self.cast = cast
        self.non_finite = non_finite
        self.embed = embed
        self.iter = 0
        self.step_stats: list[dict[str, Any]] = []
        self._buckets: dict[int, _BucketStreams] = {}
        self._current: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._pending_error: str | None = None
        self._futures: list[torch.futures.Future] = []  # this iteration's, returned to DDP

    @property
    def group(self) -> dist.ProcessGroup:
        return self.process_group if self.process_group is not None else dist.group.WORLD

    @property
    def world_size(self) -> int:
        return dist.get_world_size(self.group)

    @property
    def rank(self) -> int:
        return dist.get_rank(self.group)

    def pop_step_stats(self) -> list[dict[str, Any]]:
        """The statistics of the finished iterations; clears them."""
        with self._lock:
            stats, self.step_stats = self.step_stats, []
        return stats

    def reset_stats(self) -> None:
        """Forgets the statistics (the streams keep their state)."""
        self.pop_step_stats()

    def reset_streams(self) -> None:
        """Forgets every bucket's streams (error memory, history); the next
        coded iteration starts them afresh. Call it on every rank at once."""
        self._buckets.clear()

    def summary(self) -> dict[str, Any]:
        """Means over the recorded iterations of bytes, wire bytes, encode and
        decode seconds, and bits per entry: over all of them (``steps``) and
        over the coded ones only (``coded_*``)."""
        stats = list(self.step_stats)
        coded = [s for s in stats if s["mode"] == "gradcodec"]

        def mean(rows: list[dict[str, Any]], key: str) -> float:
            return float(np.mean([row[key] for row in rows])) if rows else float("nan")

        out: dict[str, Any] = {"pipeline": self.pipeline.name, "steps": len(stats)}
        out["coded_steps"] = len(coded)
        for key in ("bytes", "wire_bytes", "encode_s", "decode_s"):
            out[f"{key}_per_step"] = mean(stats, key)
            out[f"coded_{key}_per_step"] = mean(coded, key)
        entries = sum(row["entries"] for row in coded)
        out["coded_bits_per_entry"] = (
            8.0 * sum(row["bytes"] for row in coded) / entries if entries else float("nan")
        )
        return out

    def check(self) -> None:
        """Raises a pending decoding failure (see the module's doc) now,
        instead of at the next backward."""
        if self._pending_error is not None:
            why, self._pending_error = self._pending_error, None
            raise HookError(self.iter, -1, {self.rank: why})

    # -- internals, called from the hook --------------------------------------------------

    def _record(self) -> dict[str, Any]:
        if self._current is None:
            self._current = {
                "iteration": self.iter,
                "mode": "allreduce" if self.iter < self.start_iter else "gradcodec",
                "buckets": 0,
                "entries": 0,
                "bytes": 0,
                "wire_bytes": 0,
                "rank_bytes": [0] * self.world_size,
                "encode_s": 0.0,
                "decode_s": 0.0,
            }
        return self._current

    def _returned(
        self, bucket: dist.GradBucket, future: torch.futures.Future
    ) -> torch.futures.Future:
        """Notes the future handed to DDP; ends the iteration after its last bucket."""
        self._futures.append(future)
        if not bucket.is_last():
            return future
        self._futures = []
        record, self._current = self._current, None
        if record is not None:
            with self._lock:
                record["bits_per_entry"] = (
                    8.0 * record["bytes"] / record["entries"] if record["entries"] else 0.0
                )
                self.step_stats.append(record)
        self.iter += 1
        return future

    def _streams(self, bucket: dist.GradBucket, buffer: torch.Tensor) -> _BucketStreams:
        """The bucket's streams; new ones when its parameters changed (DDP
        rebuilt its buckets). The layout is read off the reducer's own
        per-parameter views of the bucket, which must tile it exactly."""
        params = bucket.parameters()
        signature = (bucket.index(), tuple(p.data_ptr() for p in params))
        streams = self._buckets.get(bucket.index())
        if streams is not None and streams.signature == signature:
            return streams
        views = bucket.gradients()
        base, width = buffer.data_ptr(), buffer.element_size()
        offsets = [(view.data_ptr() - base) // width for view in views]
        shapes = [tuple(param.shape) for param in params]
        expected = list(itertools.accumulate((math.prod(s) for s in shapes[:-1]), initial=0))
        if (
            len(views) != len(params)
            or offsets != expected
            or sum(math.prod(s) for s in shapes) != buffer.numel()
        ):
            raise gradcodec.UpdateError(
                f"bucket {bucket.index()}: its {len(params)} parameters do not tile its "
                f"{buffer.numel()} entries in order (unsupported bucket layout)"
            )
        streams = _BucketStreams(self, signature, shapes, offsets)
        self._buckets[bucket.index()] = streams
        return streams


def _to_host_f32(buffer: torch.Tensor, cast: bool) -> torch.Tensor:
    """The bucket as a contiguous CPU float32 tensor: the buffer itself when
    it already is one, else a copy."""
    if buffer.dtype != torch.float32 and not cast:
        raise gradcodec.UpdateError(
            f"the gradient bucket is {buffer.dtype}; gradcodec codes float32 "
            "(pass cast=True to GradcodecState to convert)"
        )
    host = buffer.detach().to(device="cpu", dtype=torch.float32)
    return host.contiguous()


def _allreduce(
    group: dist.ProcessGroup, buffer: torch.Tensor
) -> torch.futures.Future[torch.Tensor]:
    """DDP's own reduction: divide by the world size, then sum (async)."""
    buffer.div_(dist.get_world_size(group))
    work = dist.all_reduce(buffer, group=group, async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


def gradcodec_hook(
    state: GradcodecState, bucket: dist.GradBucket
) -> torch.futures.Future[torch.Tensor]:
    """The DDP communication hook: ``model.register_comm_hook(state, gradcodec_hook)``.

    Returns a future of the bucket holding the mean decoded gradient (see the
    module's doc). Every collective is issued on the calling thread, in the
    same order on every rank; the callback only decodes and averages."""
    group = state.group
    buffer = bucket.buffer()
    record = state._record()
    record["buckets"] += 1
    record["entries"] += buffer.numel()

    if state.iter < state.start_iter:
        size = buffer.numel() * buffer.element_size()
        record["bytes"] += size
        record["wire_bytes"] += size
        record["rank_bytes"] = [n + size for n in record["rank_bytes"]]
        return state._returned(bucket, _allreduce(group, buffer))

    world = state.world_size
    index = bucket.index()
    iteration = state.iter
    started = time.perf_counter()
    streams = host = None
    try:
        if state._pending_error is not None:  # a failure to decode, reported now
            reason, state._pending_error = state._pending_error, None
        else:
            streams = state._streams(bucket, buffer)
            host = _to_host_f32(buffer, state.cast)
            message = streams.encoder.encode(streams.split(host.numpy()))
            reason = None
    except Exception as error:  # every rank must still join the collectives
        reason = f"{type(error).__name__}: {error}"
    if reason is None:
        size, payload = len(message), message
    else:
        payload = reason.encode() or b"?"
        size = -len(payload)
    encode_s = time.perf_counter() - started

    comm = buffer.device if dist.get_backend(group) == "nccl" else torch.device("cpu")
    sizes = [torch.zeros(1, dtype=torch.int64, device=comm) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([size], dtype=torch.int64, device=comm), group=group)
    sizes = [int(s.item()) for s in sizes]
    width = max(1, *(abs(s) for s in sizes))
    padded = torch.zeros(width, dtype=torch.uint8)
    padded.numpy()[: len(payload)] = np.frombuffer(payload, dtype=np.uint8)
    padded = padded.to(comm)
    gathered = [torch.empty(width, dtype=torch.uint8, device=comm) for _ in range(world)]

    if any(s < 0 for s in sizes):
        dist.all_gather(gathered, padded, group=group)
        failures = {
            rank: bytes(gathered[rank][:-s].cpu().numpy()).decode(errors="replace")
            for rank, s in enumerate(sizes)
            if s < 0
        }
        # Let this iteration's earlier buckets finish first: raising while DDP still
        # holds their futures can abort the process at exit (seen with torch 2.13, gloo).
        for future in state._futures:
            future.wait()
        state._futures.clear()
        state.reset_streams()
        state._current = None
        raise HookError(iteration, index, failures)

    work = dist.all_gather(gathered, padded, group=group, async_op=True)
    record["encode_s"] += encode_s
    record["bytes"] += size
    record["wire_bytes"] += width + 8
    record["rank_bytes"] = [n + s for n, s in zip(record["rank_bytes"], sizes, strict=True)]
    in_place = host.data_ptr() == buffer.data_ptr()

    def decode_and_average(fut: torch.futures.Future[Any]) -> torch.Tensor:
        started = time.perf_counter()
        try:
            fut.wait()
            mean = host.numpy()
            for rank, (message, n) in enumerate(zip(gathered, sizes, strict=True)):
                decoded = streams.decoders[rank].decode(bytes(message[:n].cpu().numpy()))
                for i, (start, numel) in enumerate(
                    zip(streams.offsets, streams.numels, strict=False)
                ):
                    part = decoded[str(i)].reshape(-1)
                    if part.size != numel:
                        raise gradcodec.MessageError(
                            f"rank {rank}'s tensor {i} has {part.size} entries, not {numel}"
                        )
                    target = mean[start : start + numel]
                    if rank == 0:
                        np.copyto(target, part)
                    else:
                        np.add(target, part, out=target)
            np.divide(mean, np.float32(world), out=mean)
            if not in_place:
                buffer.copy_(host)
        except Exception as error:  # raising here would abort the process at exit
            why = (
                f"iteration {iteration}, bucket {index}: decoding failed: "
                f"{type(error).__name__}: {error}"
            )
            state._pending_error = why
            buffer.zero_()
            warnings.warn(f"gradcodec DDP hook: {why}; the bucket was zeroed", stacklevel=1)
        with state._lock:
            record["decode_s"] += time.perf_counter() - started
        return buffer

    return state._returned(bucket, work.get_future().then(decode_and_average))
