"""Turning the caller's tensors into float32 numpy arrays the extension codes.

numpy arrays of any shape and layout are passed as they are (float32) and
torch tensors on any device are moved to host memory first. Anything else is a
clear `UpdateError` naming the tensor, unless the caller asks for a cast.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ._native import UpdateError


def _torch_to_numpy(name: str, tensor: Any, cast: bool) -> np.ndarray:
    import torch

    if tensor.dtype != torch.float32:
        if not cast:
            raise UpdateError(
                f"invalid update: tensor `{name}` is {tensor.dtype}; gradcodec codes float32 "
                "(pass cast=True to convert)"
            )
        tensor = tensor.to(torch.float32)
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.to("cpu")
    return tensor.numpy()


def as_float32(name: str, value: Any, cast: bool = False) -> np.ndarray:
    """One tensor as a float32 ndarray (no copy when it already is one)."""
    if isinstance(value, np.ndarray):
        if value.dtype == np.float32:
            return value
        if not cast:
            raise UpdateError(
                f"invalid update: tensor `{name}` is {value.dtype}; gradcodec codes float32 "
                "(pass cast=True to convert)"
            )
        if value.dtype.kind not in "fiub":
            raise UpdateError(
                f"invalid update: tensor `{name}` of dtype {value.dtype} cannot be cast to float32"
            )
        return value.astype(np.float32)
    module = type(value).__module__
    if module.startswith("torch"):
        return _torch_to_numpy(name, value, cast)
    if not cast:
        raise UpdateError(
            f"invalid update: tensor `{name}` is a {type(value).__name__}, not a float32 "
            "numpy array or torch tensor (pass cast=True to convert)"
        )
    try:
        return np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise UpdateError(
            f"invalid update: tensor `{name}` cannot be cast to float32: {error}"
        ) from None


def as_pairs(tensors: Mapping[str, Any] | Iterable[tuple[str, Any]], cast: bool) -> list:
    """The update as (name, float32 ndarray) pairs, in the mapping's order."""
    items = tensors.items() if isinstance(tensors, Mapping) else tensors
    pairs = []
    for name, value in items:
        if not isinstance(name, str):
            raise UpdateError(f"invalid update: tensor names are strings, got {name!r}")
        pairs.append((name, as_float32(name, value, cast)))
    return pairs
