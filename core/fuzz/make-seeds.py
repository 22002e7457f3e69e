#!/usr/bin/env python3
"""Seeds of the tensor_file and plugin_candidate fuzz targets (run by scripts/fuzz
when core/fuzz/seeds/<target>/ is missing; the output is committed, < 40 KB).

    core/fuzz/make-seeds.py GRADCODEC_BINARY PLUGIN_LIBRARY SEEDS_DIR

tensor_file: small .npy / .safetensors files written by `gradcodec synth` (the
real writers), a slice of a real fixture (snapshots/fixtures), and truncated,
header-only and odd-but-valid variants (version 2, Fortran order, big-endian,
0-d, empty, wrong dtypes). plugin_candidate: a real tiny shared library (cc), a
prefix of a real plugin library, a hand-made minimal one, and variants refused
for one reason each (architecture, kind, class, truncation, segment past end).
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

GC, PLUGIN, SEEDS = sys.argv[1], sys.argv[2], sys.argv[3]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def put(target, name, data):
    folder = os.path.join(SEEDS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def npy(header, data=b"", version=1):
    head = header.encode()
    prefix = 10 if version == 1 else 12
    head += b" " * ((-(prefix + len(head) + 1)) % 64) + b"\n"
    size = len(head).to_bytes(2 if version == 1 else 4, "little")
    return b"\x93NUMPY" + bytes([version, 0]) + size + head + data


def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape, bytes)] in data order."""
    header, data = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((-len(text)) % 8)
    return struct.pack("<Q", len(text)) + text + data


def f32(values, endian="<"):
    return struct.pack(f"{endian}{len(values)}f", *values)


def tensor_file(tmp):
    t = "tensor_file"
    synth = [GC, "synth", "--beta", "0.7", "--alpha", "1e-3", "--zeros", "0.1", "--seed", "5"]
    subprocess.run(synth + ["--shape", "8,8", "--output", f"{tmp}/a.npy"], check=True, capture_output=True)
    subprocess.run(synth + ["--shape", "3,4,5", "--output", f"{tmp}/b.safetensors"], check=True, capture_output=True)
    real_npy = open(f"{tmp}/a.npy", "rb").read()
    real_st = open(f"{tmp}/b.safetensors", "rb").read()
    put(t, "synth-8x8.npy", real_npy)
    put(t, "synth-3x4x5.safetensors", real_st)
    data_start = real_npy.index(b"\n") + 1
    put(t, "npy-header-only", real_npy[:data_start])
    put(t, "npy-truncated", real_npy[: data_start + 100])
    six = f32([0.5, -1.25, 3.0, 0.0, -0.0, 1e-30])
    put(t, "npy-v2", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", six, version=2))
    put(t, "npy-fortran", npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", six))
    put(t, "npy-big-endian", npy("{'descr': '>f4', 'fortran_order': False, 'shape': (6,), }", f32([1, 2, 3, 4, 5, 6], ">")))
    put(t, "npy-scalar", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", f32([2.5])))
    put(t, "npy-empty", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 5), }"))
    put(t, "npy-f8", npy("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", struct.pack("<3d", 1, 2, 3)))
    put(t, "st-multi", safetensors(
        [("w", "F32", [2, 3], six), ("scalar", "F32", [], f32([7.0])), ("empty", "F32", [0, 4], b""), ("b", "F32", [2], f32([1, -1]))],
        metadata={"format": "pt"},
    ))
    put(t, "st-f16", safetensors([("h", "F16", [2], b"\x00\x3c\x00\xc0")]))
    put(t, "st-truncated", real_st[: len(real_st) - 100])
    # The real LeNet-5 gradient's header, and its first two tensors with their data.
    fixture = open(os.path.join(ROOT, "snapshots/fixtures/lenet5-grad.safetensors"), "rb").read()
    n = struct.unpack("<Q", fixture[:8])[0]
    put(t, "st-lenet5-header-only", fixture[: 8 + n])
    header = json.loads(fixture[8 : 8 + n])
    first = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])[:2]
    put(t, "st-lenet5-conv1", safetensors([
        (k, "F32", header[k]["shape"], fixture[8 + n + header[k]["data_offsets"][0] : 8 + n + header[k]["data_offsets"][1]])
        for k in first
    ]))


def elf_header(e_type=3, machine=62, phoff=64, phnum=1, shoff=0, shnum=0, shentsize=0):
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
    return ident + struct.pack("<HHIQQQIHHHHHH", e_type, machine, 1, 0, phoff, shoff, 0, 64, 56, phnum, shentsize, shnum, 0)


def plugin_candidate(tmp):
    t = "plugin_candidate"
    source = f"{tmp}/tiny.c"
    with open(source, "w") as f:
        f.write("int gc_tiny_value = 7;\nint gc_tiny(int x) { return x + gc_tiny_value; }\n")
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc:
        subprocess.run([cc, "-shared", "-fPIC", "-Os", "-nostdlib", "-s", "-Wl,-z,max-page-size=4096",
                        "-Wl,-z,noseparate-code", "-Wl,--build-id=none", "-o", f"{tmp}/tiny.so", source], check=True)
        tiny = open(f"{tmp}/tiny.so", "rb").read()
        put(t, "tiny.so", tiny)
        put(t, "tiny-aarch64", tiny[:18] + struct.pack("<H", 183) + tiny[20:])
        put(t, "tiny-executable", tiny[:16] + struct.pack("<H", 2) + tiny[18:])
        put(t, "tiny-truncated", tiny[: len(tiny) // 2])
        # The last PT_LOAD's p_filesz made to reach past the end of the file.
        phoff, phnum = struct.unpack_from("<Q", tiny, 32)[0], struct.unpack_from("<H", tiny, 56)[0]
        loads = [phoff + 56 * i for i in range(phnum) if struct.unpack_from("<I", tiny, phoff + 56 * i)[0] == 1]
        past = bytearray(tiny)
        struct.pack_into("<Q", past, loads[-1] + 32, len(tiny))
        put(t, "tiny-segment-past-end", bytes(past))
    with open(PLUGIN, "rb") as f:
        put(t, "plugin-prefix", f.read(8192))
    # 120 bytes: an ELF header and one PT_LOAD covering the file.
    minimal = elf_header() + struct.pack("<IIQQQQQQ", 1, 5, 0, 0, 0, 120, 120, 0x1000)
    put(t, "minimal.so", minimal)
    # ELF32 i386 shared object header, Mach-O and PE starts.
    elf32 = b"\x7fELF" + bytes([1, 1, 1, 0]) + b"\0" * 8 + struct.pack("<HHIIIIIHHHHHH", 3, 3, 1, 0, 52, 0, 0, 52, 32, 0, 40, 0, 0)
    put(t, "elf32-i386", elf32)
    put(t, "macho64", struct.pack("<IiiIIII", 0xFEEDFACF, 0x01000007, 3, 6, 0, 0, 0) + b"\0" * 4)
    put(t, "pe-stub", b"MZ" + b"\0" * 58 + struct.pack("<I", 64) + b"PE\0\0" + struct.pack("<HH", 0x8664, 0) + b"\0" * 16)


tmp = tempfile.mkdtemp()
try:
    tensor_file(tmp)
    plugin_candidate(tmp)
finally:
    shutil.rmtree(tmp)
