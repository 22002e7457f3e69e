"""The learning task shared by the ServerApp and the ClientApps: Fashion-MNIST
(read from its IDX .gz files with numpy, or a synthetic stand-in), IID
partitions, the models (an MLP or LeNet-5) and their train and test loops."""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

FILES = {
    "train-images": "train-images-idx3-ubyte.gz",
    "train-labels": "train-labels-idx1-ubyte.gz",
    "test-images": "t10k-images-idx3-ubyte.gz",
    "test-labels": "t10k-labels-idx1-ubyte.gz",
}
SYNTHETIC = "synthetic"


def _read_idx(path: Path) -> np.ndarray:
    """One IDX file (gzip-compressed): magic, dimensions, then unsigned bytes."""
    raw = gzip.decompress(path.read_bytes())
    if raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: {data.size} values for shape {shape}")
    return data.reshape(shape)


def _synthetic(seed: int) -> dict[str, np.ndarray]:
    """A Fashion-MNIST-shaped stand-in: ten random 28x28 prototypes plus noise
    (6000 training and 1000 test images)."""
    rng = np.random.default_rng(seed)
    prototypes = rng.uniform(0, 255, size=(10, 28, 28))
    out = {}
    for split, count in (("train", 6000), ("test", 1000)):
        labels = rng.integers(0, 10, size=count)
        images = prototypes[labels] + rng.normal(0, 60, size=(count, 28, 28))
        out[f"{split}-images"] = np.clip(images, 0, 255).astype(np.uint8)
        out[f"{split}-labels"] = labels.astype(np.uint8)
    return out


def load_dataset(data_dir: str) -> dict[str, np.ndarray]:
    """The four arrays (train/test images and labels) of Fashion-MNIST in
    ``data_dir``, or of the synthetic stand-in for ``data_dir="synthetic"``."""
    if data_dir == SYNTHETIC:
        return _synthetic(seed=1)
    folder = Path(data_dir)
    missing = [name for name in FILES.values() if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST not found in {folder} (missing {', '.join(missing)}); "
            "scripts/fetch-data prints the folder, or use data-dir='synthetic'"
        )
    return {key: _read_idx(folder / name) for key, name in FILES.items()}


def to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Images scaled to [0, 1] as (N, 1, 28, 28) float32, labels as int64."""
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def partition(count: int, partition_id: int, num_partitions: int, seed: int) -> np.ndarray:
    """The indices of IID partition ``partition_id`` of ``num_partitions``
    (one fixed shuffle of all ``count`` indices, split evenly)."""
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"partition-id {partition_id} outside 0..{num_partitions - 1}")
    order = np.random.default_rng(seed).permutation(count)
    return np.array_split(order, num_partitions)[partition_id]


def limit(indices: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` indices (all of them when ``count`` is 0)."""
    return indices[:count] if count > 0 else indices


class Mlp(nn.Module):
    """784-200-10 with ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 200)
        self.fc2 = nn.Linear(200, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


class LeNet5(nn.Module):
    """LeNet-5 for 28x28 inputs (padding 2 on the first convolution)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc3(torch.relu(self.fc2(x)))


MODELS = {"mlp": Mlp, "lenet5": LeNet5}


def build_model(name: str, seed: int) -> nn.Module:
    """A freshly initialised model (the same weights for the same seed)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    torch.manual_seed(seed)
    return MODELS[name]()


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> float:
    """Plain SGD for ``epochs`` epochs of shuffled mini-batches; the mean loss."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    total, steps = 0.0, 0
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            total += float(loss)
            steps += 1
    return total / max(steps, 1)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) on ``x``, ``y``."""
    model.eval()
    logits = torch.cat([model(x[i : i + 1000]) for i in range(0, len(x), 1000)])
    loss = float(nn.functional.cross_entropy(logits, y))
    return loss, float((logits.argmax(1) == y).float().mean())


def setting(config: Mapping[str, Any], key: str) -> Any:
    """A run-config value, with a clear error naming a missing key."""
    if key not in config:
        raise KeyError(f"run config has no {key!r} (see the app's pyproject.toml)")
    return config[key]
