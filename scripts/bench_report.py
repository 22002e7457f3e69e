"""docs/performance.md from the measurements scripts/bench takes.

    python3 scripts/bench_report.py report WORK CRITERION CORES CPU MIN_TIME BIG
    perf report ... | python3 scripts/bench_report.py profile SPEC SIDE

`report` reads WORK/{real,synth,composed,scaling,peers,profiles}.jsonl and
WORK/peers.md and prints the page: every figure comes from those files; the
targets of issue #14 are checked against them, and each miss is shown with the
profile `perf record` took of it. `profile` turns the top lines of a
`perf report --no-children --sort dso,symbol` into one JSON line.
"""

import datetime
import json
import os
import re
import sys


def load(work, name):
    path = os.path.join(work, name)
    if not os.path.exists(path):
        return []
    return [json.loads(line) for line in open(path) if line.strip()]


def split(rows):
    base = next(r for r in rows if r["kind"] == "baselines")
    return base, [r for r in rows if r["kind"] == "pipeline"]


def fmt(value, pattern="{:.1f}"):
    return "-" if value is None else pattern.format(value)


def mark(ok):
    return "met" if ok else "**missed**"


def profile(spec, side):
    rows = []
    for line in sys.stdin:
        match = re.match(r"\s*([0-9.]+)%\s+(\S+)\s+\[\.\]\s+(.*?)\s*(-\s+-\s*)?$", line)
        if match:
            symbol = re.sub(r"\s+", " ", match.group(3)).strip()
            rows.append({"percent": float(match.group(1)), "dso": match.group(2), "symbol": symbol})
    print(json.dumps({"pipeline": spec, "side": side, "top": rows}))


def pipeline_table(rows, base, title, note):
    print(f"## {title}\n")
    print(note + "\n")
    print(
        f"Baselines: memcpy {base['memcpy_mentries_per_s']:.0f} M entries/s; zstd -1 "
        f"{base['zstd1_bits_per_entry']:.2f} bits/entry, "
        f"{base['zstd1_encode_mentries_per_s']:.1f} / "
        f"{base['zstd1_decode_mentries_per_s']:.1f} M entries/s; zstd -3 "
        f"{base['zstd3_bits_per_entry']:.2f} bits/entry, "
        f"{base['zstd3_encode_mentries_per_s']:.1f} / "
        f"{base['zstd3_decode_mentries_per_s']:.1f} M entries/s (compress / decompress).\n"
    )
    print(
        "| pipeline | bits/entry | H0 | payload/H0 | overhead | encode M/s | decode M/s | "
        "enc x zstd-1 | dec x zstd-1 | enc x memcpy | dec x memcpy | fused pair |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    z1e, z1d = base["zstd1_encode_mentries_per_s"], base["zstd1_decode_mentries_per_s"]
    memcpy = base["memcpy_mentries_per_s"]
    for r in sorted(rows, key=lambda r: -r["bits_per_entry"]):
        e, d = r["encode_mentries_per_s"], r["decode_mentries_per_s"]
        print(
            f"| {r['pipeline']} | {r['bits_per_entry']:.3f} | "
            f"{r['symbol_entropy_bits_per_entry']:.3f} | "
            f"{fmt(r['payload_over_entropy'], '{:.3f}')} | "
            f"{100 * r['overhead_fraction']:.2f}% ({100 * r['container_fraction']:.2f}%) | "
            f"{e:.1f} | {d:.1f} | {e / z1e:.2f} | {d / z1d:.2f} | {e / memcpy:.4f} | "
            f"{d / memcpy:.4f} | {r.get('fused') or '-'} |"
        )
    print()


# What would close each miss (analysis of the profiles printed beside it).
DESIGN = {
    ("co3-fp4", "encode"): (
        "The error feedback is its own stage, so the tensor is streamed five times: "
        "compensate (a copy in round 0, whose work the bench repeats), the fit's moments "
        "(one f64 chain per lane: latency-bound, and the lanes fix the sum's order), "
        "round + code + reconstruct (fused: with AVX-512 the fill writes packed symbol "
        "pairs that the bit writer looks up directly, and the writer takes eight codes per "
        "step when they fit in 56 bits), feedback, and the host's non-finite scan (kept: "
        "the pipeline is stateful, so the update must be refused before any stage "
        "advances); the prescale search (`SearchSample::error`, for beta < 0.4) is a fixed "
        "cost over its 32k-entry sample. The two-pass limit needs the error feedback inside "
        "the fused path (error correction + quantizer + coder, with the memory as its "
        "state: a new fused kind in a later minor) and a search that evaluates several "
        "candidate scales per pass over the sample (each sum still in order)."
    ),
    ("co3-fp4", "decode"): (
        "One serial walk of the Huffman multi-symbol table; interleaved code streams "
        "(several bit readers, a new bitstream version) would let the CPU overlap them."
    ),
    ("co3-fp8", "encode"): (
        "The MSE prescale search over 247 levels dominates (`search_prescale`): a grid and "
        "golden-section refinement, each step a pass over a 32k-entry sample; fp8 would "
        "need the fp4-style closed-form prescale or a coarser, cached search."
    ),
    ("co3-fp8", "decode"): (
        "Codes of up to 247 symbols leave the multi-symbol table (bytes only for small "
        "alphabets) for many codes; a two-level table would close most of it."
    ),
    ("f32", "encode"): (
        "Two copies remain: the input into the coded stream (the finiteness check rides "
        "it: `raw` is CHECKS_FINITE, so the host no longer scans) and the stream into the "
        "message, with the CRC behind that copy a 64 KiB piece at a time. Where three 4 MB "
        "buffers (input, stream, message) overflow the cache, the two copies cost about "
        "three times one. Dropping the first (the pair lending the input's words to the "
        "message, a FusedStage method in a new minor) also needs x̂ kept some other way: "
        "`last_reconstruction` is built on demand from the block's coded bytes, after the "
        "caller's input is gone, so a lent stream would have to be copied anyway unless "
        "the caller says it will not ask for x̂."
    ),
    ("f32", "decode"): (
        "Two passes over the message: its CRC, and the raw pair's copy into x̂, written "
        "once into the fresh buffer's spare capacity a 64 KiB piece at a time (`memcpy`, "
        "then the finiteness test of the piece while it is in L1/L2; the host's scan of x̂ "
        "is gone: `raw` is CHECKS_FINITE). The copy writes a "
        "fresh 4 MB buffer while the bench keeps the first output to compare with, so it "
        "runs at memory speed, not at the warm memcpy baseline's; the CRC in the same "
        "pass (checked before the output is returned) would leave one."
    ),
    ("fp16", "encode"): (
        "The cast (which checks finiteness: the host's scan is gone, `fp16` is "
        "CHECKS_FINITE) straight into the coded stream, one copy into the message and "
        "the CRC; the cast back (x̂) is skipped when nothing needs it. The cast kernel "
        "alone runs about as fast as the peer's whole `tensor.to(float16)`; the copy and "
        "the CRC are what the peer (no message, no checksum) does not pay. Matching it "
        "needs both gone: the cast writing into the message itself (which, as for f32, "
        "conflicts with building x̂ on demand from the coded bytes) and a message without "
        "a checksum over the payload (a format change)."
    ),
    ("fp16", "decode"): (
        "The CRC, and the cast of the patterns read where they lie in the message "
        "(unaligned loads, no staging copy) straight into x̂'s spare capacity (which "
        "refuses non-finite patterns, so the host no longer scans x̂); the cast writes a "
        "fresh 4 MB buffer. The peer is one cast into a buffer it reuses, with no checksum."
    ),
    ("qsgd", "encode"): (
        "Stochastic rounding runs in f64 lanes (AVX2) on bulk ChaCha8 draws, and the "
        "finiteness check is one vectorized pass (`qsgd` is CHECKS_FINITE: the host no "
        "longer scans); what is left is the generator (one ChaCha8 word per entry), the "
        "rANS coder and its symbol buffer. A fused qsgd + rans pair (no symbol buffer, no "
        "separate alphabet check) would close the rest; qsgd-bitpack (the fused fixed-width "
        "pair) is the fast-link alternative."
    ),
    ("qsgd", "decode"): (
        "The rANS decode: four states advance together (table lookups and products first, "
        "then the renormalization words, which share one read position), about two "
        "nanoseconds a symbol; the symbols now go to a reused buffer (a fresh one per call "
        "cost a page fault per 4 KiB, which two threads took in turn) and the alphabet "
        "check rides the dequantize lookup. A fused qsgd + rans decode writing levels "
        "directly, as co3's pair does, would remove the symbol buffer and the dequantize "
        "pass; more states (8 or 16, a new rans bitstream version) would let SIMD decode."
    ),
    ("terngrad", "encode"): (
        "The clip needs the tensor's mean and variance: two serial f64 sums whose order "
        "fixes the clip's bits, and so the bytes (one add's latency per entry each; lanes "
        "would change the last bits, so only a new quantizer version could split them); "
        "then one ChaCha8 word per entry and the rANS coder over a u32 symbol buffer. "
        "terngrad-bitpack (the same quantizer, 2 bits an entry, fused packing) is the "
        "pipeline that matches the peer."
    ),
    ("terngrad", "decode"): (
        "The rANS decode of the symbol stream (four interleaved states), the alphabet "
        "check of the symbol buffer and the dequantize pass; the peer multiplies an int8 "
        "tensor by its scale. terngrad-bitpack's fused decode (levels straight from the "
        "packed bits) beats the peer; an rANS decode writing levels directly (a fused "
        "terngrad + rans pair) would close most of this one."
    ),
    ("dgc", "decode"): (
        "Zeroing the dense output (a fresh 4 MB buffer) and the adaptive ANS model's "
        "quantile search for every byte of each kept value; the peer scatters the same "
        "0.1% of entries into zeros with no entropy decode. dgc-bitpack (values as raw "
        "words) beats the peer; a static value model (a new ans bitstream version) would "
        "close most of this one."
    ),
    ("topk-ef-1pct", "encode"): (
        "The top-k selection and the adaptive ANS coding of the values' byte planes."
    ),
    ("topk-ef-1pct", "decode"): (
        "The adaptive ANS model searches its Fenwick tree per byte of every kept value, "
        "and the dense tensor is written three times (zeroing, scatter, the host's copy "
        "and finite scan); the peer scatters 1% of the entries into zeros. A static model "
        "and a sparse reconstruction handed to the caller would close it."
    ),
}


def report(work, criterion, cores, cpu, min_time, big):
    real_base, real = split(load(work, "real.jsonl"))
    synth_base, synth = split(load(work, "synth.jsonl"))
    composed = [r for r in load(work, "composed.jsonl") if r["kind"] == "pipeline"]
    scaling = load(work, "scaling.jsonl")
    peers = [r for r in load(work, "peers.jsonl") if r.get("kind") == "comparison"]
    profiles = load(work, "profiles.jsonl")
    print("# Performance: speed and size against memcpy, zstd and the torch-op peers\n")
    print(
        f"Generated by `scripts/bench` on {datetime.date.today()}: {cpu}, {cores} cores (shared, "
        "noisy: compare the ratios, measured in one run on the same input). Release build; each "
        f"figure is the median of repetitions of at least {min_time} s after a warm-up; encode "
        "and decode are the steady state (the same encoder / decoder, `reset` before each "
        "repetition: warm buffers, round-0 work; every repetition's output is compared with "
        "the first and dropped after the clock stops, for the pipelines and zstd alike), "
        "pipelines in a 1-thread pool unless stated. Baselines on the update's raw f32 bytes: "
        "memcpy into a reused buffer, zstd (the `zstd` crate) levels 1 and 3 with reused "
        "contexts. Hot loops "
        "pick their AVX2 / F16C builds (and the fp4 level fill its AVX-512F build) at run "
        "time (`gradcodec_sdk::simd`, `is_x86_feature_detected`); the binaries are "
        "built for the portable x86-64 baseline.\n"
    )
    print(
        "Columns: bits/entry = 8 x whole message / entries; H0 = zeroth-order entropy of the "
        "symbols the quantizer gave the coders (per stream, summed, per entry; for a positions "
        "stream log2 C(n, k); for raw f32 words the sum of the H0 of their four byte planes); "
        "payload/H0 = coded stream bits over that; overhead = container + side information "
        "share of the message (container alone in parentheses); x zstd-1 = codec speed over "
        "zstd -1's (compress for encode, decompress for decode); x memcpy likewise; fused pair "
        "= the single-pass quantizer + coder the engine ran (ABI 1.1; `GRADCODEC_FUSED=off` "
        "runs the composed stages, with the same bytes).\n"
    )
    pipeline_table(
        real,
        real_base,
        f"Real gradient, {real_base['entries']:,} entries",
        "ResFed CNN gradient late in training (snapshots/fixtures/resfed-cnn-grad-late."
        f"safetensors, {real_base['tensors']} tensors), each tensor tiled along its first axis: "
        "every copy after the first is a seeded permutation of its values (same distribution, "
        "no long repeats for zstd to find; matrices stay matrices).",
    )
    pipeline_table(
        synth,
        synth_base,
        f"Synthetic GenNorm(beta = 0.5), {synth_base['entries']:,} entries",
        "`gradcodec synth --beta 0.5 --alpha 1e-4 --shape 1000,1000 --seed 1`: one tensor "
        "(cut into blocks of 2^20 entries: here one).",
    )
    by_name = {r["pipeline"]: r for r in real}
    if composed:
        print("## Fused pairs against their composed stages\n")
        print(
            "The same input as the first table, the fused pipelines again with "
            "`GRADCODEC_FUSED=off` (a run right after; same bytes, checked by every "
            "repetition against the composed encoder's message).\n"
        )
        print(
            "| pipeline | fused pair | encode fused | composed | x | decode fused | composed | x |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for c in composed:
            f = by_name.get(c["pipeline"])
            if f is None:
                continue
            fe, fd = f["encode_mentries_per_s"], f["decode_mentries_per_s"]
            ce, cd = c["encode_mentries_per_s"], c["decode_mentries_per_s"]
            print(
                f"| {c['pipeline']} | {f.get('fused') or '(none)'} | {fe:.1f} | {ce:.1f} | "
                f"{fe / ce:.2f} | {fd:.1f} | {cd:.1f} | {fd / cd:.2f} |"
            )
        print()
    print(f"## One tensor of {int(big):,} entries on two threads\n")
    if scaling:
        print(
            f"The real gradient's values tiled into one flat tensor of {scaling[0]['entries']:,} "
            "entries (`gradcodec perf --scaling 2 --tile-as-one`), as a DDP bucket is: it is "
            "cut into blocks of 2^20 entries (whole rows, fixed by the pipeline, never by the "
            "thread count) that code in parallel, with byte-identical messages (checked on "
            "every repetition); 1-thread and 2-thread repetitions alternate. At this size "
            "every pass streams from memory, so one thread is slower than on the 1M input.\n"
        )
        print(
            "| pipeline | encode M/s, 1 thread | 2 threads | speed-up | decode M/s, 1 thread | "
            "2 threads | speed-up | repetitions |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in scaling:
            print(
                f"| {r['pipeline']} | {r['encode_mentries_per_s_1']:.1f} | "
                f"{r['encode_mentries_per_s_n']:.1f} | {r['encode_speedup']:.2f}x | "
                f"{r['decode_mentries_per_s_1']:.1f} | {r['decode_mentries_per_s_n']:.1f} | "
                f"{r['decode_speedup']:.2f}x | {r['repetitions']} |"
            )
        print()
    print("## Plugin boundary\n")
    print(
        "The `uniform` 8-bit quantizer called through the ABI (its loaded .so, the SDK's "
        "guarded adapter) and in-process (the same code linked into the bench), criterion "
        "`cargo bench -p gradcodec --bench abi_boundary`, median per call.\n"
    )
    print("| entries | through the ABI | in-process | overhead |")
    print("|---:|---:|---:|---:|")
    boundary = {}
    times = {}
    group = os.path.join(criterion, "plugin-boundary_uniform8-quantize")
    for n in ("1000", "64000", "1000000"):

        def estimate(kind, n=n):
            path = os.path.join(group, kind, n, "new", "estimates.json")
            return json.load(open(path))["median"]["point_estimate"]

        abi, local = estimate("abi"), estimate("in-process")
        boundary[n] = abi / local - 1
        times[n] = (abi, local)
        print(
            f"| {int(n):,} | {abi / 1e3:.2f} us | {local / 1e3:.2f} us | "
            f"{100 * (abi / local - 1):+.1f}% |"
        )
    print()
    if boundary["64000"] > 0.01 and boundary["64000"] > boundary["1000"]:
        print(
            "The adapter's cost per call is constant (a `catch_unwind` and the `RVec` "
            "hand-off), so it would show most at 1,000 entries; a larger gap at 64,000 comes "
            "from the two compilations of the same loop (the .so and the bench binary), "
            "which this bench cannot separate from the crossing.\n"
        )
    elif boundary["64000"] > 0.01:
        per_call = times["1000"][0] - times["1000"][1]
        share = per_call / times["64000"][1]
        print(
            f"The crossing costs about {per_call:.0f} ns a call (the 1,000-entry row: a "
            "`catch_unwind` and the `RVec` hand-off, constant per call), "
            f"{100 * share:.2f}% of a 64,000-entry call; the rest of the gap at 64,000 comes "
            "from the two compilations of the same loop (the .so and the bench binary) and "
            "run-to-run noise, which this bench cannot separate from the crossing.\n"
        )
    peers_md = os.path.join(work, "peers.md")
    if os.path.exists(peers_md):
        print("## Against the torch-op peers\n")
        print(
            "`scripts/bench-peers`: qsgd, terngrad, sign + error feedback, top-k 1 %, DGC and fp16 "
            "written as GRACE and torch's DDP hooks write them (plain torch tensor ops, "
            "scripts/peers/compressors.py), one thread, on the same tiled gradient, each peer "
            "alternating with `gradcodec perf --threads 1` on the matching pipeline (best of "
            "two rounds each). End to end = encode + message bits / link rate + decode.\n"
        )
        text = open(peers_md).read()
        # Drop the file's own title; keep its tables and notes.
        print(re.sub(r"^# .*\n", "", text).strip() + "\n")
    # Targets.
    z1e, z1d = real_base["zstd1_encode_mentries_per_s"], real_base["zstd1_decode_mentries_per_s"]
    memcpy = real_base["memcpy_mentries_per_s"]
    rows = []

    def speed(name, side):
        r = by_name[name]
        return r[f"{side}_mentries_per_s"]

    def versus(name, side, factor, base, base_name, floor=False):
        value = speed(name, side)
        need = factor * base
        kind = "floor" if floor else "goal"
        rows.append(
            (
                f"{name} {side} >= {factor:g}x {base_name} ({kind})",
                f"{value / base:.2f}x ({value:.1f} vs {base:.1f} M/s)",
                value >= need,
                name,
                side,
            )
        )

    for side in ("encode", "decode"):
        versus("f32", side, 0.2, memcpy, "memcpy", floor=True)
        versus("f32", side, 0.3, memcpy, "memcpy")
    versus("co3-fp4", "encode", 1.5, z1e, "zstd -1", floor=True)
    versus("co3-fp4", "decode", 2, z1d, "zstd -1", floor=True)
    versus("co3-fp4", "encode", 2.5, z1e, "zstd -1")
    versus("co3-fp4", "decode", 4, z1d, "zstd -1")
    versus("co3-fp8", "encode", 1, z1e, "zstd -1")
    versus("co3-fp8", "decode", 2, z1d, "zstd -1")
    for name in ("qsgd", "topk-ef-1pct"):
        versus(name, "encode", 2, z1e, "zstd -1")
        versus(name, "decode", 3, z1d, "zstd -1")
    for name in ("fp16", "bf16"):
        for side in ("encode", "decode"):
            versus(name, side, 0.25, memcpy, "memcpy")
    # A method's floor is met by any of its pipelines that matches the peer both
    # ways (the entropy-coded one, or the same quantizer on the peer's
    # fixed-width wire); the other pipelines are listed beside it.
    by_method = {}
    for p in peers:
        if "gradcodec" in p:
            by_method.setdefault(p["method"], []).append(p)
    for method, lines in by_method.items():
        floor_line = next((p for p in lines if p.get("matched")), lines[0])
        for p in [floor_line] + [q for q in lines if q is not floor_line]:
            pipeline = p.get("pipeline") or method
            role = "floor" if p is floor_line else "beside the floor"
            for side, key in (("encode", "encode_meps"), ("decode", "decode_meps")):
                ours, theirs = p["gradcodec"][key], p["peer"][key]
                rows.append(
                    (
                        f"{method} {side} >= its torch-op peer ({role}; pipeline {pipeline})",
                        f"{ours / theirs:.2f}x ({ours:.1f} vs {theirs:.1f} M/s)",
                        ours >= theirs,
                        pipeline,
                        side,
                    )
                )
    for r in scaling:
        for side in ("encode", "decode"):
            value = r[f"{side}_speedup"]
            rows.append(
                (
                    f"one {r['entries']:,}-entry tensor, 2 threads >= 1.7x "
                    f"({r['pipeline']} {side}, floor)",
                    f"{value:.2f}x",
                    value >= 1.7,
                    r["pipeline"],
                    side,
                )
            )
    rows.append(
        (
            "plugin boundary <= 1% at 64k",
            f"{100 * boundary['64000']:+.1f}%",
            boundary["64000"] <= 0.01,
            None,
            None,
        )
    )
    rans = by_name.get("co3-fp4-rans")
    if rans and rans.get("payload_over_entropy"):
        ratio = rans["payload_over_entropy"]
        rows.append(
            (
                "co3-fp4-rans within 1% of the H0 of its fp4 symbols",
                f"{100 * (ratio - 1):+.2f}% (co3-fp4, Huffman: "
                f"{100 * (by_name['co3-fp4']['payload_over_entropy'] - 1):+.2f}%)",
                ratio <= 1.01,
                None,
                None,
            )
        )
    print("## Targets (issue #14), from the tables above\n")
    print("Floors are the issue's done-when; the rest is the goal table.\n")
    print("| target | measured | |")
    print("|---|---|---|")
    for what, measured, ok, _, _ in rows:
        print(f"| {what} | {measured} | {mark(ok)} |")
    print()
    missed = sorted({(name, side) for _, _, ok, name, side in rows if not ok and name})
    if missed:
        print("## Profiles of the misses\n")
        print(
            "`perf record` of `examples/profile_codec` (one thread, the same tiled gradient, "
            "repeated encodes or decodes), top symbols by self time; then what would close "
            "the gap.\n"
        )
        by_key = {(p["pipeline"], p["side"]): p["top"] for p in profiles}
        for name, side in missed:
            top = by_key.get((name, side))
            if top is None:
                continue
            print(f"### {name} {side}\n")
            print("| self | library | symbol |")
            print("|---:|---|---|")
            for t in top:
                symbol = t["symbol"].replace("|", "\\|")
                if len(symbol) > 110:
                    symbol = symbol[:107] + "..."
                print(f"| {t['percent']:.1f}% | {t['dso']} | `{symbol}` |")
            print()
            if (name, side) in DESIGN:
                print(DESIGN[(name, side)] + "\n")


def main():
    if sys.argv[1] == "profile":
        profile(sys.argv[2], sys.argv[3])
    else:
        report(*sys.argv[2:8])


if __name__ == "__main__":
    main()
