"""The torch-op peers of gradcodec's pipelines, written the way GRACE
(github.com/sands-lab/grace, grace_dl/torch/compressor/*.py and memory/*.py) and
torch's DDP hooks (torch.distributed.algorithms.ddp_comm_hooks.default_hooks)
write them: plain torch tensor ops on one tensor at a time.

A peer is a GRACE compressor and its memory, called as GRACE's
``Communicator.send_step`` calls them: ``compress`` = memory.compensate, then
compressor.compress, then memory.update (which for error feedback decompresses
to form the residual); ``decompress`` is the receiver's
compressor.decompress. The payload is the tuple of tensors GRACE would send;
its size is what torch sends for them (``numel × element_size``). The context
(shape, numel) is known to both sides and not counted.

The code is this project's own; each class names what it follows and where it
departs (only ever in the peer's favour: an equivalent op that is no slower).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

Payload = tuple[torch.Tensor, ...]


def payload_bits(payload: Payload) -> int:
    """Bits torch sends for these tensors."""
    return sum(8 * t.numel() * t.element_size() for t in payload)


# ---------------------------------------------------------------- memories
class NoMemory:
    """GRACE memory/none.py: the tensor as it is, no state."""

    def compensate(self, tensor: torch.Tensor, name: str) -> torch.Tensor:
        return tensor

    def update(self, tensor, name, compressor, payload, ctx) -> None:
        pass

    def reset(self) -> None:
        pass


class ResidualMemory:
    """GRACE memory/residual.py: ``beta·residual + gamma·tensor`` in, and the
    residual ``tensor − decompress(compress(tensor))`` kept (classic error
    feedback)."""

    def __init__(self, beta: float = 1.0, gamma: float = 1.0):
        self.beta, self.gamma = beta, gamma
        self.residuals: dict[str, torch.Tensor] = {}

    def compensate(self, tensor, name):
        residual = self.residuals.get(name)
        if residual is None:
            return tensor
        return self.beta * residual + self.gamma * tensor

    def update(self, tensor, name, compressor, payload, ctx):
        self.residuals[name] = tensor - compressor.decompress(payload, ctx)

    def reset(self):
        self.residuals.clear()


class EFSignSGDMemory(ResidualMemory):
    """GRACE memory/efsignsgd.py: ``residual + lr·tensor`` in, the residual of
    the scaled sign kept."""

    def __init__(self, lr: float):
        super().__init__()
        self.lr = lr

    def compensate(self, tensor, name):
        residual = self.residuals.get(name)
        if residual is None:
            return tensor
        return residual + self.lr * tensor


class DgcMemory:
    """GRACE memory/dgc.py: DGC's momentum correction, ``u ← m·u + g``,
    ``v ← v + u``, ``v`` compressed; after compressing both are cleared where
    an entry was sent (momentum factor masking). The optional gradient clipping
    clamps to the tensor's L2 norm (GRACE allreduces the squared sum; with one
    worker that is the tensor's own)."""

    def __init__(self, momentum: float, gradient_clipping: bool = False):
        self.momentum = momentum
        self.gradient_clipping = gradient_clipping
        self.residuals: dict[str, torch.Tensor] = {}  # u
        self.gradients: dict[str, torch.Tensor] = {}  # v

    def compensate(self, tensor, name):
        if self.gradient_clipping:
            bound = torch.sqrt(torch.sum(tensor * tensor)).item()
            tensor = tensor.clamp(-bound, bound)
        u = self.residuals.get(name)
        u = tensor if u is None else self.momentum * u + tensor
        self.residuals[name] = u
        v = self.gradients.get(name)
        if v is None:
            v = u
        else:
            v += u  # in place, as GRACE does
        self.gradients[name] = v
        return v

    def update(self, tensor, name, compressor, payload, ctx):
        mask = ctx[1]
        keep = ~mask.view(ctx[0])
        self.residuals[name] = self.residuals[name] * keep
        self.gradients[name] = self.gradients[name] * keep

    def reset(self):
        self.residuals.clear()
        self.gradients.clear()


# ------------------------------------------------------------- compressors
class QSGDCompressor:
    """GRACE dist/compressor/qsgd.py (the bucketed QSGD; grace_dl/torch's has one
    norm per tensor): per bucket of ``bucket_size`` entries its L2 norm, levels
    ``floor(s·|x|/norm)`` rounded up with probability equal to the remainder
    (unbiased), sent as int8 signed levels (s < 128) plus the f32 bucket norms.
    Departures: the norms are spread over their buckets with ``expand``, not
    GRACE's matmul with a row of ones (same values, no GEMM); a zero norm is
    raised to the smallest normal f32 (GRACE gives 0/0 = NaN there)."""

    def __init__(self, quantum_num: int, bucket_size: int):
        assert 0 < quantum_num < 128, "int8 levels need quantum_num < 128"
        self.s, self.bucket = quantum_num, bucket_size

    def _spread(self, norms: torch.Tensor, numel: int) -> torch.Tensor:
        return norms.view(-1, 1).expand(-1, self.bucket).reshape(-1)[:numel]

    def compress(self, tensor, name):
        shape = tensor.size()
        flat = tensor.flatten()
        numel = flat.numel()
        pad = -numel % self.bucket
        padded = torch.cat([flat, flat.new_zeros(pad)]) if pad else flat
        norms = torch.sqrt(torch.sum(padded.view(-1, self.bucket) ** 2, dim=1))
        norms.clamp_(min=torch.finfo(torch.float32).tiny)
        level_float = self.s / self._spread(norms, numel) * flat.abs()
        level = level_float.floor()
        level += torch.empty_like(flat).uniform_() < (level_float - level)
        levels = (level * flat.sign()).to(torch.int8)
        return (levels, norms), shape

    def decompress(self, payload, shape):
        levels, norms = payload
        scale = self._spread(norms / self.s, levels.numel())
        return (scale * levels.to(torch.float32)).view(shape)


class TernGradCompressor:
    """GRACE torch/compressor/terngrad.py: clip at 2.5 standard deviations,
    scalar = max |clipped|, each entry sent as sign with probability
    |x|/scalar (else 0), int8 ternary levels plus the f32 scalar. Departure:
    the ternary level is ``sign · (u < |x|)`` in one pass, where GRACE
    multiplies by the scalar, zeroes by a boolean index and takes the sign
    again (same levels)."""

    def __init__(self, clip_sigma: float = 2.5):
        self.clip_sigma = clip_sigma

    def compress(self, tensor, name):
        shape = tensor.size()
        flat = tensor.flatten()
        std = torch.sqrt(torch.mean((flat - torch.mean(flat)) ** 2))
        bound = self.clip_sigma * std.item()
        clipped = torch.clamp(flat, -bound, bound)
        magnitude = clipped.abs()
        scalar = magnitude.max()
        draw = torch.empty_like(flat).uniform_(0, scalar.item())
        levels = (clipped.sign() * (draw < magnitude)).to(torch.int8)
        return (levels, scalar.flatten()), shape

    def decompress(self, payload, shape):
        levels, scalar = payload
        return (levels.to(torch.float32) * scalar).view(shape)


class EFSignSGDCompressor:
    """GRACE torch/compressor/efsignsgd.py: the sign (``x >= 0``) as one uint8
    per entry, scaled on decoding by the mean |x| (one f32)."""

    def compress(self, tensor, name):
        shape = tensor.size()
        flat = tensor.flatten()
        mean = flat.abs().mean()
        return (mean, (flat >= 0).to(torch.uint8)), shape

    def decompress(self, payload, shape):
        mean, signs = payload
        return (mean * (signs.to(torch.float32) * 2 - 1)).view(shape)


class TopKCompressor:
    """GRACE torch/compressor/topk.py: the k = max(1, ⌊ratio·n⌋) largest |x| by
    ``torch.topk``, sent as f32 values and int64 indices; decoded by scattering
    into zeros."""

    def __init__(self, compress_ratio: float):
        self.ratio = compress_ratio

    def compress(self, tensor, name):
        flat = tensor.flatten()
        k = max(1, int(flat.numel() * self.ratio))
        _, indices = torch.topk(flat.abs(), k)
        return (flat[indices], indices), (flat.numel(), tensor.size())

    def decompress(self, payload, ctx):
        values, indices = payload
        numel, shape = ctx
        out = torch.zeros(numel, dtype=values.dtype)
        out.scatter_(0, indices, values)
        return out.view(shape)


class DgcCompressor:
    """GRACE torch/compressor/dgc.py: DGC's sampled threshold — the k-th
    largest |x| of a 1% random sample (k = ratio × the sample), then up to ten
    corrections (×1.3 when over 1.3·ratio·n are selected, ×0.7 when under
    0.7·ratio·n) — and every entry at or above it sent as f32 values and int64
    indices (``torch.where``). The context carries the mask for DgcMemory."""

    def __init__(self, compress_ratio: float):
        self.ratio = compress_ratio

    def compress(self, tensor, name):
        shape = tensor.size()
        flat = tensor.flatten()
        numel = flat.numel()
        sample_size = max(1, int(numel * 0.01))
        sample = flat[torch.empty(sample_size).uniform_(0, numel).long()]
        k = max(1, int(numel * self.ratio * 0.01))
        threshold = torch.topk(sample.abs(), k)[0].min()
        magnitude = flat.abs()
        mask = magnitude >= threshold
        selected = mask.sum()
        target = numel * self.ratio
        for _ in range(10):
            if selected > 1.3 * target:
                threshold = 1.3 * threshold
            elif selected < 0.7 * target:
                threshold = 0.7 * threshold
            else:
                break
            mask = magnitude >= threshold
            selected = mask.sum()
        (indices,) = torch.where(mask)
        return (flat[indices], indices), (shape, mask, numel)

    def decompress(self, payload, ctx):
        values, indices = payload
        shape, _, numel = ctx
        out = torch.zeros(numel, dtype=values.dtype)
        out.scatter_(0, indices, values)
        return out.view(shape)


class FP16Compressor:
    """torch's ``fp16_compress_hook`` (ddp_comm_hooks/default_hooks.py) and GRACE
    torch/compressor/fp16.py: ``tensor.to(torch.float16)`` sent; decoded by
    ``copy_`` into the receiver's f32 buffer, in place, as the hook's
    ``decompress`` does (the buffer is allocated once per tensor). The hook's
    ``div_(world_size)`` is left out (one worker)."""

    def __init__(self):
        self.buffers: dict[str, torch.Tensor] = {}

    def compress(self, tensor, name):
        return (tensor.to(torch.float16),), name

    def decompress(self, payload, name):
        (half,) = payload
        buffer = self.buffers.get(name)
        if buffer is None or buffer.shape != half.shape:
            buffer = self.buffers[name] = torch.empty(half.shape, dtype=torch.float32)
        return buffer.copy_(half)


# ------------------------------------------------------------------ peers
@dataclass
class Peer:
    """A compressor and its memory, called as GRACE's send_step / receive_step."""

    method: str  # the gradcodec pipeline it is set against (pipelines/<method>.yaml)
    follows: str  # what the code follows
    settings: str  # its parameters, and how they relate to the pipeline's
    compressor: object
    memory: object = field(default_factory=NoMemory)

    def compress(self, tensor: torch.Tensor, name: str) -> tuple[Payload, object]:
        tensor = self.memory.compensate(tensor, name)
        payload, ctx = self.compressor.compress(tensor, name)
        self.memory.update(tensor, name, self.compressor, payload, ctx)
        return payload, ctx

    def decompress(self, payload: Payload, ctx) -> torch.Tensor:
        return self.compressor.decompress(payload, ctx)

    def reset(self) -> None:
        self.memory.reset()


def make_peers(qsgd_levels: int = 16, qsgd_bucket: int = 512) -> dict[str, Peer]:
    """The peers by gradcodec pipeline name, set as the pipelines are."""
    peers = [
        Peer(
            "qsgd",
            "GRACE dist/compressor/qsgd.py (bucketed QSGD)",
            f"s = {qsgd_levels}, {qsgd_bucket}-entry buckets, L2 norms, int8 levels "
            "(pipeline: the same quantizer, levels rANS-coded)",
            QSGDCompressor(qsgd_levels, qsgd_bucket),
        ),
        Peer(
            "terngrad",
            "GRACE torch/compressor/terngrad.py",
            "clip 2.5σ, int8 ternary levels + max (pipeline: the same, levels rANS-coded)",
            TernGradCompressor(2.5),
        ),
        Peer(
            "signsgd-ef",
            "GRACE torch/compressor/efsignsgd.py + dist/memory/efsignsgd.py",
            "lr = 1 (the pipeline's γ = 1; GRACE's default 0.3 costs the same), "
            "uint8 signs + mean |x| (pipeline: 1 bit per sign)",
            EFSignSGDCompressor(),
            EFSignSGDMemory(lr=1.0),
        ),
        Peer(
            "topk-ef-1pct",
            "GRACE torch/compressor/topk.py + memory/residual.py",
            "ratio 0.01, f32 values + int64 indices, residual memory "
            "(pipeline: the same selection, Golomb-Rice positions, ANS values)",
            TopKCompressor(0.01),
            ResidualMemory(),
        ),
        Peer(
            "dgc",
            "GRACE torch/compressor/dgc.py + memory/dgc.py",
            "ratio 0.001, momentum 0.9, no clipping (as the pipeline), sampled "
            "threshold (pipeline: exact top-k 0.1%, Golomb-Rice positions, ANS values)",
            DgcCompressor(0.001),
            DgcMemory(momentum=0.9, gradient_clipping=False),
        ),
        Peer(
            "fp16",
            "torch ddp_comm_hooks fp16_compress_hook / GRACE torch/compressor/fp16.py",
            "to(float16), decoded by copy_ into the f32 buffer (pipeline: fp16 bitpacked)",
            FP16Compressor(),
        ),
    ]
    return {p.method: p for p in peers}
