"""gradcodec: pluggable codecs for model updates (gradients, weight deltas,
residuals), from Python.

    import gradcodec
    pipeline = gradcodec.pipeline("co3-fp4")          # a shipped spec, by name
    enc, dec = pipeline.encoder(), pipeline.decoder() # one pair per stream
    message = enc.encode({"fc.weight": grad})         # bytes (numpy or torch)
    update = dec.decode(message)                      # name -> numpy array
    update = gradcodec.decode(message)                # no spec: self-describing

Every shipped stage is built into the extension; third-party plugin libraries
load with `gradcodec.load_plugins(path)` or from `GRADCODEC_PLUGIN_PATH`.
`gradcodec.torch` has the DDP communication hook, `gradcodec.flower` the
Flower integration.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from . import _native
from ._native import (
    ABI_VERSION,
    Error,
    FileError,
    MessageError,
    PluginError,
    SpecError,
    StageError,
    UnknownStageError,
    UpdateError,
    __version__,
)
from ._tensors import as_pairs

__all__ = [
    "ABI_VERSION",
    "Decoder",
    "Encoder",
    "Error",
    "FileError",
    "MessageError",
    "Pipeline",
    "PluginError",
    "SpecError",
    "StageError",
    "UnknownStageError",
    "UpdateError",
    "__version__",
    "decode",
    "decoder_for_message",
    "inspect",
    "load_plugins",
    "pipeline",
    "plugin_failures",
    "shipped_pipelines",
    "stages",
]

Tensors = Mapping[str, Any] | Iterable[tuple[str, Any]]
Layout = Mapping[str, Any] | Iterable[tuple[str, Any]]
#: What the decoding functions take as a message: ``bytes`` (read in place) or
#: any object with a byte buffer (copied once).
Message = bytes | bytearray | memoryview | np.ndarray


class _Stream:
    """What encoders and decoders share: the stream's pipeline and its state."""

    _native: Any

    @property
    def pipeline_name(self) -> str:
        return self._native.pipeline_name

    def reset(self) -> None:
        """Forgets all state (history, error memory); the next message is round 0."""
        self._native.reset()

    def save_state(self) -> bytes:
        """The stream's state (round and every stage's state) as bytes."""
        return self._native.save_state()

    def load_state(self, state: bytes) -> None:
        """Restores a state written by `save_state`; on error nothing changes."""
        self._native.load_state(state)


class Encoder(_Stream):
    """The encoder of one stream (one learner, one direction). Thread-safe;
    the GIL is released while it codes."""

    def __init__(self, native: _native.Encoder, cast: bool) -> None:
        self._native = native
        self._cast = cast

    def encode(self, tensors: Tensors, *, cast: bool | None = None) -> bytes:
        """Encodes one update (name -> float32 array: numpy of any shape and
        layout, or a torch tensor on any device) into one message. With
        ``cast=True``, other dtypes are converted instead of refused."""
        return self._native._encode(as_pairs(tensors, self._cast if cast is None else cast))

    def observe(self, tensors: Tensors, *, cast: bool | None = None) -> None:
        """Tells a predictive stream what the receiver now holds."""
        self._native._observe(as_pairs(tensors, self._cast if cast is None else cast))

    @property
    def last_reconstruction(self) -> dict[str, np.ndarray]:
        """What the receiver reconstructs from the last message (a copy)."""
        return dict(self._native._last_reconstruction())

    @property
    def last_stats(self) -> dict[str, Any]:
        """Sizes of the last message: bytes, overhead_bytes, entries,
        bits_per_entry, and per tensor (name, entries, raw, side_info_bytes,
        payload_bytes, streams as (role, symbols, bytes))."""
        return self._native._last_stats()

    @property
    def round(self) -> int:
        """The next message's round number."""
        return self._native.round


class Decoder(_Stream):
    """The decoder of one stream. Thread-safe; the GIL is released while it codes."""

    def __init__(self, native: _native.Decoder) -> None:
        self._native = native

    def decode(self, message: Message) -> dict[str, np.ndarray]:
        """Decodes one message into name -> float32 ndarray (the arrays own the
        decoded buffers: no copy). ``bytes`` are read where they lie; any other
        byte buffer (bytearray, memoryview, uint8 array) is copied once first.
        On error the stream's state is unchanged."""
        return dict(self._native._decode(message))

    def observe(self, tensors: Tensors, *, cast: bool = False) -> None:
        """Tells a predictive stream what it now holds."""
        self._native._observe(as_pairs(tensors, cast))

    @property
    def next_round(self) -> int | None:
        """The round the next message must carry (stateful pipelines), or None
        before the first message."""
        return self._native.next_round


class Pipeline:
    """A resolved pipeline (every stage found, its parameters validated): the
    factory of its encoders and decoders."""

    def __init__(self, native: _native.Pipeline) -> None:
        self._native = native

    @classmethod
    def shipped(cls, name: str) -> Pipeline:
        """A shipped pipeline by name (see `shipped_pipelines()`)."""
        return cls(_native.Pipeline.shipped(name))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Pipeline:
        """A pipeline from a YAML spec file."""
        return cls(_native.Pipeline.from_file(os.fspath(path)))

    @classmethod
    def from_yaml(cls, text: str, origin: str = "<yaml>") -> Pipeline:
        """A pipeline from YAML spec text."""
        return cls(_native.Pipeline.from_yaml(text, origin))

    name = property(lambda self: self._native.name, doc="Pipeline name.")
    about = property(lambda self: self._native.about, doc="Description.")
    canonical = property(
        lambda self: self._native.canonical, doc="Canonical pipeline JSON, as embedded in messages."
    )
    fingerprint = property(
        lambda self: self._native.fingerprint, doc="xxh3-64 of the canonical codec JSON."
    )
    fingerprint_hex = property(lambda self: self._native.fingerprint_hex)
    is_stateful = property(lambda self: self._native.is_stateful)
    is_lossless = property(lambda self: self._native.is_lossless)
    is_predictive = property(lambda self: self._native.is_predictive)
    uncompressed_below = property(lambda self: self._native.uncompressed_below)

    @property
    def stages(self) -> list[dict[str, Any]]:
        """The stages in order: kind, name, version, canonical config."""
        return [
            {"kind": kind, "name": name, "version": version, "config": json.loads(config)}
            for kind, name, version, config in self._native.stages
        ]

    def encoder(
        self,
        *,
        embed: str = "first",
        non_finite: str = "error",
        cast: bool = False,
        max_entries: int | None = None,
    ) -> Encoder:
        """A new encoder (one per stream). ``embed``: when the pipeline travels
        in messages ("first", "always", "never"); ``non_finite``: "error" or
        "zero"; ``cast``: convert non-float32 tensors instead of refusing them;
        ``max_entries``: the receiver's entry limit (default 2^26, as decoders)."""
        return Encoder(self._native.encoder(embed, non_finite, max_entries), cast)

    def decoder(self, *, expect: Layout | None = None, max_entries: int | None = None) -> Decoder:
        """A new decoder (one per stream). ``expect``: the receiver's model
        (name -> array, tensor or shape): any other tensor or shape is refused
        before anything is allocated; ``max_entries``: raise (or lower) the
        default limit of 2^26 entries per message."""
        return Decoder(self._native.decoder(_layout(expect), max_entries))

    def __repr__(self) -> str:
        return repr(self._native)


def pipeline(name_or_path: str | os.PathLike) -> Pipeline:
    """A shipped pipeline by name ("co3-fp4"), or a spec file by path."""
    text = os.fspath(name_or_path)
    if text in _native.shipped_pipelines():
        return Pipeline.shipped(text)
    if text.endswith((".yaml", ".yml")) or os.sep in text:
        return Pipeline.from_file(text)
    return Pipeline.shipped(text)  # raises SpecError listing the shipped names


def shipped_pipelines() -> list[str]:
    """The names of the shipped pipelines."""
    return list(_native.shipped_pipelines())


def shipped_pipeline_yaml(name: str) -> str:
    """The YAML text of a shipped pipeline."""
    return _native.shipped_pipeline_yaml(name)


def stages() -> list[dict[str, Any]]:
    """Every registered stage, in precedence order: kind, name, version,
    format_version, flags, library, library_version, path, doc, params_schema
    (a JSON Schema) and example_params."""
    out = []
    for stage in _native.stages():
        stage = dict(stage)
        stage["params_schema"] = json.loads(stage["params_schema"])
        stage["example_params"] = json.loads(stage["example_params"])
        out.append(stage)
    return out


def load_plugins(path: str | os.PathLike) -> list[str]:
    """Loads third-party plugin libraries (a file, or a folder of
    ``libgradcodec_plugin_*.so`` files); returns the library names added.
    All or nothing: a library that fails raises `PluginError`."""
    return list(_native.load_plugins(os.fspath(path)))


def plugin_failures() -> list[tuple[str, str]]:
    """Libraries named by GRADCODEC_PLUGIN_PATH that failed to load: (file, why)."""
    return list(_native.plugin_failures())


def decoder_for_message(
    message: Message, *, expect: Layout | None = None, max_entries: int | None = None
) -> Decoder:
    """The decoder of the stream a self-describing message (round 0, or any
    message of an encoder with ``embed="always"``) belongs to; ``expect`` and
    ``max_entries`` as for `Pipeline.decoder`."""
    return Decoder(_native.decoder_for_message(message, _layout(expect), max_entries))


def _layout(expect: Layout | None) -> list[tuple[str, list[int]]] | None:
    """(name, shape) pairs from a mapping of names to arrays, tensors or shapes."""
    if expect is None:
        return None
    items = expect.items() if isinstance(expect, Mapping) else expect
    layout = []
    for name, value in items:
        shape = getattr(value, "shape", value)
        layout.append((name, [int(d) for d in shape]))
    return layout


def decode(
    message: Message, *, expect: Layout | None = None, max_entries: int | None = None
) -> dict[str, np.ndarray]:
    """Decodes a self-describing message with no spec (a fresh decoder)."""
    return decoder_for_message(message, expect=expect, max_entries=max_entries).decode(message)


def inspect(message: Message) -> dict[str, Any]:
    """What ``gradcodec inspect --json`` reports of a message."""
    return json.loads(_native.inspect(message))


if _native.plugin_failures():
    import warnings

    for _file, _why in _native.plugin_failures():
        warnings.warn(f"gradcodec: cannot load plugin {_file}: {_why}", stacklevel=2)
