"""The Python package against the CLI: every shipped pipeline makes the same
bytes from Python as `gradcodec encode`, and decodes to what `gradcodec decode`
writes; encoder state, stats, reconstruction, threads."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, ROOT, cli_path, read_safetensors

import gradcodec

SHIPPED = sorted(p.stem for p in (ROOT / "pipelines").glob("*.yaml"))
FIXTURE_FILES = ["lenet5-grad.safetensors", "resfed-cnn-grad-late.safetensors"]


def test_every_shipped_spec_is_in_the_package():
    assert gradcodec.shipped_pipelines() == SHIPPED
    for name in SHIPPED:
        assert (
            gradcodec.shipped_pipeline_yaml(name)
            == (ROOT / "pipelines" / f"{name}.yaml").read_text()
        )


@pytest.mark.parametrize("fixture", FIXTURE_FILES)
@pytest.mark.parametrize("name", SHIPPED)
def test_python_message_equals_cli_encode_and_decodes_like_cli(
    tmp_path: Path, name: str, fixture: str
):
    source = FIXTURES / fixture
    update = read_safetensors(source)
    pipeline = gradcodec.pipeline(name)
    assert (
        pipeline.fingerprint
        == gradcodec.Pipeline.from_file(ROOT / "pipelines" / f"{name}.yaml").fingerprint
    )
    message = pipeline.encoder().encode(update)

    cli_message = tmp_path / "cli.gcm"
    subprocess.run(
        [
            cli_path(),
            "encode",
            "--pipeline",
            ROOT / "pipelines" / f"{name}.yaml",
            "--input",
            source,
            "--output",
            cli_message,
        ],
        check=True,
        capture_output=True,
    )
    assert message == cli_message.read_bytes(), f"{name}: Python and CLI messages differ"

    cli_decoded = tmp_path / "cli.safetensors"
    subprocess.run(
        [cli_path(), "decode", "--input", cli_message, "--output", cli_decoded],
        check=True,
        capture_output=True,
    )
    expected = read_safetensors(cli_decoded)
    decoded = pipeline.decoder().decode(message)
    assert list(decoded) == list(expected)
    for tensor, values in expected.items():
        assert decoded[tensor].dtype == np.float32
        assert decoded[tensor].shape == values.shape
        assert decoded[tensor].tobytes() == values.tobytes(), (
            f"{name}: {tensor} differs from the CLI's"
        )
    # The self-describing path gives the same.
    for tensor, values in gradcodec.decode(message).items():
        assert values.tobytes() == expected[tensor].tobytes()


def test_layouts_and_views_code_like_their_contiguous_copy(lenet_grad):
    weight = next(v for v in lenet_grad.values() if v.ndim == 4)
    fortran = np.asfortranarray(weight)
    strided = np.repeat(weight, 2, axis=0)[::2]
    assert not fortran.flags.c_contiguous and not strided.flags.c_contiguous
    pipeline = gradcodec.pipeline("co3-fp4")
    reference = pipeline.encoder().encode({"w": np.ascontiguousarray(weight)})
    assert pipeline.encoder().encode({"w": fortran}) == reference
    assert pipeline.encoder().encode({"w": strided}) == reference


def test_torch_tensors_code_like_numpy(lenet_grad):
    torch = pytest.importorskip("torch")
    pipeline = gradcodec.pipeline("qsgd")
    from_numpy = pipeline.encoder().encode(lenet_grad)
    as_torch = {k: torch.from_numpy(v.copy()) for k, v in lenet_grad.items()}
    assert pipeline.encoder().encode(as_torch) == from_numpy
    # A non-contiguous torch view (a transpose) codes like its contiguous copy.
    w = next(v for v in as_torch.values() if v.ndim == 2)
    assert pipeline.encoder().encode({"w": w.t()}) == pipeline.encoder().encode(
        {"w": w.t().contiguous()}
    )


def test_decoded_arrays_own_their_buffers(lenet_grad):
    decoded = (
        gradcodec.pipeline("f32")
        .decoder()
        .decode(gradcodec.pipeline("f32").encoder().encode(lenet_grad))
    )
    for name, values in decoded.items():
        assert values.flags.writeable and values.flags.c_contiguous
        assert values.base is not None  # a view of the decoded buffer, not a fresh copy
        np.testing.assert_array_equal(values, lenet_grad[name])


def test_stateful_stream_stats_reconstruction_and_state(lenet_grad):
    pipeline = gradcodec.pipeline("topk-ef-1pct")
    assert pipeline.is_stateful and not pipeline.is_lossless
    encoder, decoder = pipeline.encoder(), pipeline.decoder()
    first = encoder.encode(lenet_grad)
    stats = encoder.last_stats
    assert stats["bytes"] == len(first)
    assert stats["entries"] == sum(v.size for v in lenet_grad.values())
    assert stats["bits_per_entry"] == pytest.approx(8 * len(first) / stats["entries"])
    assert [t["name"] for t in stats["tensors"]] == list(lenet_grad)
    decoded = decoder.decode(first)
    for name, values in encoder.last_reconstruction.items():
        assert values.tobytes() == decoded[name].tobytes()
    assert encoder.round == 1

    saved = encoder.save_state()
    second = encoder.encode(lenet_grad)
    restored = pipeline.encoder()
    restored.load_state(saved)
    assert restored.round == 1
    assert restored.encode(lenet_grad) == second  # same state, same bytes
    assert second != first  # the error memory changed the message
    decoder.decode(second)

    assert decoder.next_round == 2
    assert not pipeline.is_predictive and gradcodec.pipeline("resfed").is_predictive

    encoder.reset()
    assert encoder.round == 0
    assert encoder.encode(lenet_grad) == first


def test_decoder_state_round_trip(lenet_grad):
    pipeline = gradcodec.pipeline("resfed")
    encoder, decoder = pipeline.encoder(), pipeline.decoder()
    decoder.decode(encoder.encode(lenet_grad))
    saved = decoder.save_state()
    message = encoder.encode({k: v * 0.5 for k, v in lenet_grad.items()})
    fresh = pipeline.decoder()
    fresh.load_state(saved)
    a, b = decoder.decode(message), fresh.decode(message)
    for name in a:
        assert a[name].tobytes() == b[name].tobytes()


def test_threads_code_streams_at_once_with_the_same_bytes(lenet_grad):
    pipeline = gradcodec.pipeline("co3-fp4")
    expected = pipeline.encoder().encode(lenet_grad)
    results: list[bytes] = []
    errors: list[BaseException] = []

    def work():
        try:
            results.append(pipeline.encoder().encode(lenet_grad))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert results == [expected] * 4

    # One encoder shared by threads: calls are serialized, every message decodes in order.
    shared, _decoder = gradcodec.pipeline("topk-ef-1pct").encoder(), None
    messages: list[bytes] = []
    lock = threading.Lock()

    def shared_work():
        message = shared.encode(lenet_grad)
        with lock:
            messages.append(message)

    threads = [threading.Thread(target=shared_work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert shared.round == 3 and len(messages) == 3


def test_stages_describe_every_stage():
    stages = gradcodec.stages()
    kinds = {s["kind"] for s in stages}
    assert kinds == {"predictor", "error-correction", "quantizer", "entropy-coder"}
    names = {s["name"] for s in stages}
    assert {"float-convert", "qsgd", "topk", "huffman", "rans", "zstd", "error-feedback"} <= names
    for stage in stages:
        assert stage["path"] == "<built-in>"
        assert stage["doc"]
        assert isinstance(stage["params_schema"], dict)
