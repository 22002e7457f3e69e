"""Bad inputs from Python: each raises the right `gradcodec.Error` subclass with
the runtime's (the CLI's) message, and no corrupt message crashes the
interpreter."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, cli_path

import gradcodec

UPDATE = {"w": np.linspace(-1.0, 1.0, 4096, dtype=np.float32).reshape(64, 64)}


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.float16])
def test_wrong_numpy_dtype_names_the_tensor_unless_cast(dtype):
    encoder = gradcodec.pipeline("uniform8").encoder()
    bad = {"layer.weight": UPDATE["w"].astype(dtype)}
    with pytest.raises(gradcodec.UpdateError, match=r"tensor `layer\.weight` is .*float32"):
        encoder.encode(bad)
    message = encoder.encode(bad, cast=True)
    assert message == gradcodec.pipeline("uniform8").encoder().encode(
        {"layer.weight": bad["layer.weight"].astype(np.float32)}
    )


def test_wrong_torch_dtype_and_non_arrays():
    torch = pytest.importorskip("torch")
    encoder = gradcodec.pipeline("f32").encoder()
    with pytest.raises(gradcodec.UpdateError, match=r"tensor `b` is torch\.bfloat16"):
        encoder.encode({"b": torch.ones(8, dtype=torch.bfloat16)})
    with pytest.raises(gradcodec.UpdateError, match=r"tensor `l` is a list"):
        encoder.encode({"l": [1.0, 2.0]})
    assert gradcodec.decode(encoder.encode({"l": [1.0, 2.0]}, cast=True))["l"].tolist() == [
        1.0,
        2.0,
    ]
    with pytest.raises(gradcodec.UpdateError, match="names are strings"):
        encoder.encode({3: UPDATE["w"]})
    with pytest.raises(gradcodec.UpdateError, match="appears twice"):
        encoder.encode([("a", UPDATE["w"]), ("a", UPDATE["w"])])


def test_non_finite_values_refused_or_zeroed():
    bad = {"w": UPDATE["w"].copy()}
    bad["w"][3, 5] = np.nan
    with pytest.raises(gradcodec.UpdateError, match="`w`"):
        gradcodec.pipeline("co3-fp4").encoder().encode(bad)
    zeroed = gradcodec.pipeline("f32").encoder(non_finite="zero").encode(bad)
    assert gradcodec.decode(zeroed)["w"][3, 5] == 0.0
    with pytest.raises(ValueError, match="non_finite"):
        gradcodec.pipeline("f32").encoder(non_finite="drop")


def test_shape_change_within_a_stream():
    encoder = gradcodec.pipeline("topk-ef-1pct").encoder()
    encoder.encode(UPDATE)
    with pytest.raises(gradcodec.UpdateError, match="changed shape"):
        encoder.encode({"w": UPDATE["w"].reshape(32, 128)})


def message_of(name: str = "co3-fp4") -> bytes:
    return gradcodec.pipeline(name).encoder().encode(UPDATE)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda m: m[: len(m) // 2],
        lambda m: m[:-1],
        lambda m: m + b"\0",
        lambda m: b"",
        lambda m: b"GCDC",
        lambda m: bytes(len(m)),
        lambda m: m[:40] + bytes([m[40] ^ 0xFF]) + m[41:],
    ],
    ids=["half", "minus-one", "trailing", "empty", "magic-only", "zeros", "flipped"],
)
def test_corrupt_and_truncated_messages(mangle):
    bad = mangle(message_of())
    with pytest.raises(gradcodec.MessageError):
        gradcodec.pipeline("co3-fp4").decoder().decode(bad)
    with pytest.raises(gradcodec.MessageError):
        gradcodec.decode(bad)


def test_foreign_and_out_of_order_messages():
    with pytest.raises(gradcodec.MessageError, match="another pipeline"):
        gradcodec.pipeline("qsgd").decoder().decode(message_of("co3-fp4"))
    with pytest.raises(gradcodec.MessageError, match="bytes"):
        gradcodec.decode("not bytes")
    encoder = gradcodec.pipeline("topk-ef-1pct").encoder()
    encoder.encode(UPDATE)
    second = encoder.encode(UPDATE)
    with pytest.raises(gradcodec.MessageError):
        gradcodec.pipeline("topk-ef-1pct").decoder().decode(second)  # round 1 first
    # A message without its embedded pipeline needs the spec.
    never = gradcodec.pipeline("f32").encoder(embed="never").encode(UPDATE)
    with pytest.raises(gradcodec.MessageError, match="does not embed"):
        gradcodec.decode(never)
    assert gradcodec.pipeline("f32").decoder().decode(never)["w"].tobytes() == UPDATE["w"].tobytes()


def test_error_text_is_the_clis(tmp_path: Path):
    bad = message_of()[:-3]
    path = tmp_path / "bad.gcm"
    path.write_bytes(bad)
    run = subprocess.run(
        [cli_path(), "decode", "--input", path, "--output", tmp_path / "out.safetensors"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    with pytest.raises(gradcodec.MessageError) as caught:
        gradcodec.decode(bad)
    assert run.stderr.strip().splitlines()[-1] == f"error: {caught.value}"


def test_messages_are_read_from_bytes_or_any_byte_sequence():
    """`bytes` is read in place; bytearray, memoryview and uint8 arrays (also
    strided ones) are copied first through the buffer protocol (they could
    change while the GIL is released); all decode the same, and a decoder
    reading a bytes object leaves it as it was."""
    pipeline = gradcodec.pipeline("fp16")
    message = pipeline.encoder().encode(UPDATE)
    expected = pipeline.decoder().decode(message)["w"]
    for form in (
        message,
        bytearray(message),
        memoryview(message),
        np.frombuffer(message, dtype=np.uint8),
        np.repeat(np.frombuffer(message, dtype=np.uint8), 2)[::2],  # strided
    ):
        decoded = pipeline.decoder().decode(form)["w"]
        assert decoded.tobytes() == expected.tobytes(), type(form).__name__
        info = gradcodec.inspect(form)
        assert [t["name"] for t in info["tensors"]] == ["w"], type(form).__name__
    assert message == pipeline.encoder().encode(UPDATE)
    for bad in ("not bytes", 3.5, [1.5, 2.5]):
        with pytest.raises(gradcodec.MessageError, match="expected bytes"):
            pipeline.decoder().decode(bad)


def test_mutated_messages_never_crash():
    """2,000 seeded mutations of real messages of three pipelines: each decodes
    or raises gradcodec.Error (a crash would take the test process down)."""
    rng = random.Random(7)
    outcomes = {"decoded": 0, "refused": 0}
    for name in ["co3-fp4", "qsgd", "topk-ef-1pct", "resfed"]:
        original = bytearray(message_of(name))
        for _ in range(500):
            mutated = bytearray(original)
            for _ in range(rng.randint(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            if rng.random() < 0.3:
                del mutated[rng.randrange(len(mutated)) :]
            try:
                gradcodec.pipeline(name).decoder().decode(bytes(mutated))
                outcomes["decoded"] += 1
            except gradcodec.Error:
                outcomes["refused"] += 1
    assert outcomes["refused"] > 1500  # the CRC catches nearly every mutation


def test_bad_specs():
    with pytest.raises(gradcodec.UnknownStageError, match="no-such-stage"):
        gradcodec.Pipeline.from_yaml(
            "name: x\nstages:\n  - quantizer: { use: no-such-stage }\n"
            "  - entropy-coder: { use: bitpack }\n"
        )
    assert issubclass(gradcodec.UnknownStageError, gradcodec.SpecError)
    with pytest.raises(gradcodec.SpecError):
        gradcodec.Pipeline.from_yaml("name: x\nstages: [")
    with pytest.raises(gradcodec.SpecError, match="bits"):
        gradcodec.Pipeline.from_yaml(
            "name: x\nstages:\n  - quantizer: { use: uniform, params: { bits: 99 } }\n"
            "  - entropy-coder: { use: bitpack }\n"
        )
    with pytest.raises(gradcodec.SpecError, match="no shipped pipeline `nope`"):
        gradcodec.pipeline("nope")
    with pytest.raises(gradcodec.FileError):
        gradcodec.Pipeline.from_file("/nonexistent/spec.yaml")


def test_bad_state_changes_nothing():
    encoder = gradcodec.pipeline("topk-ef-1pct").encoder()
    first = encoder.encode(UPDATE)
    with pytest.raises(gradcodec.Error):
        encoder.load_state(b"garbage")
    assert encoder.round == 1
    state = encoder.save_state()
    with pytest.raises(gradcodec.Error):
        gradcodec.pipeline("co3-fp4").encoder().load_state(state)  # another pipeline's state
    assert first


def test_third_party_plugins_load_from_a_file_a_folder_or_the_environment(tmp_path: Path):
    library = ROOT / "target" / "debug" / "libgradcodec_plugin_example.so"
    if not library.is_file():
        pytest.fail(f"{library} not built (./scripts/test builds the workspace first)")
    spec = (
        "name: fixed-step-example\nstages:\n"
        "  - quantizer: { use: fixed-step, params: { step: 0.0005, max_level: 255 } }\n"
        "  - entropy-coder: { use: bitpack }\n"
    )
    # In a fresh interpreter each, so the process registry starts empty of it.
    script = (
        "import sys, numpy as np, gradcodec\n"
        "LOAD\n"
        f"p = gradcodec.Pipeline.from_yaml({spec!r})\n"
        "x = {'w': np.linspace(-0.05, 0.05, 1000, dtype=np.float32)}\n"
        "y = gradcodec.decode(p.encoder().encode(x))['w']\n"
        "assert np.abs(y - x['w']).max() <= 0.00025 + 1e-7\n"
        "print([s['path'] for s in gradcodec.stages() if s['name'] == 'fixed-step'])\n"
    )
    python = [sys.executable]
    unknown = subprocess.run(
        [*python, "-c", script.replace("LOAD", "")], capture_output=True, text=True
    )
    assert unknown.returncode != 0 and "UnknownStageError" in unknown.stderr
    for load, env in [
        (f"print(gradcodec.load_plugins({str(library)!r}))", {}),
        (f"print(gradcodec.load_plugins({str(library.parent)!r}))", {}),
        ("", {"GRADCODEC_PLUGIN_PATH": str(library)}),
    ]:
        run = subprocess.run(
            [*python, "-c", script.replace("LOAD", load)],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
        )
        assert run.returncode == 0, run.stderr
        assert str(library) in run.stdout

    not_a_plugin = tmp_path / "libgradcodec_plugin_fake.so"
    not_a_plugin.write_text("not a library")
    with pytest.raises(gradcodec.PluginError, match="libgradcodec_plugin_fake"):
        gradcodec.load_plugins(not_a_plugin)
    with pytest.raises(gradcodec.PluginError, match="no such"):
        gradcodec.load_plugins(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(gradcodec.PluginError, match="no plugin library"):
        gradcodec.load_plugins(tmp_path / "empty")


def test_receivers_expect_a_layout_and_limits_are_explicit():
    model = {"fc.weight": np.zeros((64, 64), np.float32), "fc.bias": np.zeros(64, np.float32)}
    message = gradcodec.pipeline("f32").encoder().encode({"fc.weight": UPDATE["w"]})
    decoded = gradcodec.decode(message, expect=model)
    assert decoded["fc.weight"].tobytes() == UPDATE["w"].tobytes()
    with pytest.raises(gradcodec.MessageError, match="this receiver expects"):
        gradcodec.decode(message, expect={"fc.weight": (32, 128)})
    with pytest.raises(gradcodec.MessageError, match="not one of the 1 tensors"):
        gradcodec.pipeline("f32").decoder(expect={"other": (4096,)}).decode(message)
    with pytest.raises(gradcodec.MessageError, match="more than the limit of 100"):
        gradcodec.decode(message, max_entries=100)
    with pytest.raises(gradcodec.UpdateError, match="more than the limit of 100"):
        gradcodec.pipeline("f32").encoder(max_entries=100).encode(UPDATE)


def test_a_small_message_cannot_demand_more_than_the_default_limit():
    """A 2^27-entry update of zeros through zstd is a message of about 32 KB:
    the default encoder refuses to write it and the default decoder to read a
    hand-raised copy of it; raising the limits on both ends is explicit."""
    zeros = {"w": np.zeros(1 << 27, np.float32)}
    with pytest.raises(gradcodec.UpdateError, match="more than the limit of 67108864"):
        gradcodec.pipeline("zstd").encoder().encode(zeros)
    message = gradcodec.pipeline("zstd").encoder(max_entries=1 << 27).encode(zeros)
    del zeros
    assert len(message) < 64 * 1024
    with pytest.raises(gradcodec.MessageError, match="more than the limit of 67108864"):
        gradcodec.decode(message)
    assert gradcodec.decode(message, max_entries=1 << 27)["w"].size == 1 << 27
