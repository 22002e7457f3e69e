//! The `gradcodec` command end to end, with plugins loaded from the build
//! directory (run `cargo build --workspace` first; the test script does).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn gradcodec(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_gradcodec"))
        .args(args)
        .current_dir(workspace())
        .env_remove("GRADCODEC_PLUGIN_PATH")
        .output()
        .unwrap();
    output
}

fn ok(args: &[&str]) -> String {
    let output = gradcodec(args);
    assert!(
        output.status.success(),
        "gradcodec {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn write_input(dir: &Path) -> PathBuf {
    let values: Vec<f32> = (0..20_000)
        .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-4)
        .collect();
    let array = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[100, 200]), values).unwrap();
    let path = dir.join("grad.npy");
    let update = gradcodec_test_update(array);
    update.write(&path).unwrap();
    path
}

fn gradcodec_test_update(array: ndarray::ArrayD<f32>) -> gradcodec::Update {
    gradcodec::Update::new(vec![gradcodec::NamedTensor::new("grad", array)])
}

#[test]
fn plugins_verbose_lists_the_fused_pairs_and_the_switch_turns_them_off() {
    let out = ok(&["plugins", "--verbose"]);
    assert!(
        out.contains("fused-pair        float-convert + huffman  (by gradcodec-plugin-co3)"),
        "{out}"
    );
    let out = ok(&["plugins", "--verbose", "--json"]);
    let pair = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["kind"] == "fused-pair" && v["quantizer"] == "float-convert")
        .expect("the co3 fused pair is listed");
    assert_eq!(pair["coder"], "huffman");
    assert_eq!(pair["coder_library"], "gradcodec-plugin-entropy-coders");
    assert_eq!(pair["enabled"], true);
    let output = Command::new(env!("CARGO_BIN_EXE_gradcodec"))
        .args(["plugins", "--verbose"])
        .current_dir(workspace())
        .env_remove("GRADCODEC_PLUGIN_PATH")
        .env("GRADCODEC_FUSED", "off")
        .output()
        .unwrap();
    let out = String::from_utf8(output.stdout).unwrap();
    assert!(
        out.contains("float-convert + huffman  (by gradcodec-plugin-co3)  [off: GRADCODEC_FUSED]"),
        "{out}"
    );
    // Not without --verbose.
    assert!(!ok(&["plugins"]).contains("fused-pair"));
}

#[test]
fn plugins_json_lists_stages_with_the_library_of_their_family() {
    let out = ok(&["plugins", "--json"]);
    let stages: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (kind, name, library) in [
        ("quantizer", "raw", "quantizers"),
        ("quantizer", "uniform", "quantizers"),
        ("quantizer", "topk", "sparsifiers"),
        ("quantizer", "float-convert", "co3"),
        ("error-correction", "memory-decay", "feedback"),
        ("error-correction", "error-feedback", "feedback"),
        ("predictor", "last-sent", "predictors"),
        ("entropy-coder", "bitpack", "entropy_coders"),
        ("entropy-coder", "huffman", "entropy_coders"),
    ] {
        let stage = stages
            .iter()
            .find(|s| s["kind"] == kind && s["name"] == name)
            .unwrap_or_else(|| panic!("{kind} {name} not listed"));
        assert!(stage["version"].as_u64().is_some());
        let path = stage["path"].as_str().unwrap();
        assert!(
            path.ends_with(&format!("libgradcodec_plugin_{library}.so")),
            "{kind} {name}: {path}"
        );
    }
}

#[test]
fn encode_decode_inspect_and_bench_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path());
    let message = dir.path().join("grad.gcm");
    let output = dir.path().join("back.npy");
    let spec = "pipelines/uniform4-ef-res0.yaml";
    ok(&[
        "encode",
        "--pipeline",
        spec,
        "--input",
        input.to_str().unwrap(),
        "--output",
        message.to_str().unwrap(),
    ]);
    ok(&[
        "decode",
        "--input",
        message.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    let original = gradcodec::Update::read(&input).unwrap();
    let decoded = gradcodec::Update::read(&output).unwrap();
    let error = gradcodec::metrics::relative_mse(&original, &decoded);
    assert!(error > 0.0 && error < 0.02, "relative MSE {error}");
    let bytes = std::fs::metadata(&message).unwrap().len();
    let bits = 8.0 * bytes as f64 / 20_000.0;
    assert!((4.0..4.5).contains(&bits), "{bits} bits per entry");

    let report: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", message.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(report["bytes"], bytes);
    assert_eq!(report["tensors"][0]["name"], "grad");
    assert!(report["tensors"][0]["side_info"]["scale"].as_f64().unwrap() > 0.0);
    assert_eq!(report["pipeline"]["name"], "uniform4-ef-res0");

    let line = ok(&[
        "bench",
        "--pipeline",
        spec,
        "--input",
        input.to_str().unwrap(),
        "--json",
        "--min-time",
        "0.05",
    ]);
    let bench: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(bench["bytes"], bytes);
    for field in [
        "bits_per_entry",
        "relative_mse",
        "encode_mentries_per_s",
        "decode_mentries_per_s",
    ] {
        assert!(bench[field].as_f64().unwrap() > 0.0, "{field}: {bench}");
    }
}

#[test]
fn check_reports_bad_specs_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "name: bad\nstages:\n  - quantizer: { use: uniform, params: { bitz: 3 } }\n  - entropy-coder: { use: bitpack }\n").unwrap();
    let output = gradcodec(&["check", bad.to_str().unwrap()]);
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("bad.yaml:3") && text.contains("bitz"),
        "{text}"
    );
    ok(&[
        "check",
        "pipelines/uniform8.yaml",
        "pipelines/uniform4-ef-res0.yaml",
    ]);
}

#[test]
fn corrupt_and_foreign_files_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path());
    let message = dir.path().join("m.gcm");
    ok(&[
        "encode",
        "--pipeline",
        "pipelines/uniform8.yaml",
        "--input",
        input.to_str().unwrap(),
        "--output",
        message.to_str().unwrap(),
    ]);
    let mut bytes = std::fs::read(&message).unwrap();
    bytes.truncate(bytes.len() - 10);
    std::fs::write(&message, &bytes).unwrap();
    let output = gradcodec(&[
        "decode",
        "--input",
        message.to_str().unwrap(),
        "--output",
        dir.path().join("x.npy").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(
        text.contains("checksum") || text.contains("truncated"),
        "{text}"
    );
    let output = gradcodec(&[
        "decode",
        "--input",
        input.to_str().unwrap(),
        "--output",
        dir.path().join("y.npy").to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("bad magic"));
    let nan = dir.path().join("nan.npy");
    let mut values = vec![0.5f32; 300];
    values[17] = f32::INFINITY;
    gradcodec_test_update(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[300]), values).unwrap())
        .write(&nan)
        .unwrap();
    let output = gradcodec(&[
        "encode",
        "--pipeline",
        "pipelines/uniform8.yaml",
        "--input",
        nan.to_str().unwrap(),
        "--output",
        message.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("tensor `nan`"));
}

#[test]
fn bound_reports_the_ceo_sum_rate_of_real_worker_gradients() {
    let workers: Vec<String> = (0..5)
        .flat_map(|r| {
            [
                "--worker".to_string(),
                format!("snapshots/fixtures/lenet5-steps/round-{r}.safetensors"),
            ]
        })
        .collect();
    let mut args: Vec<&str> = vec!["bound"];
    args.extend(workers.iter().map(String::as_str));
    let mut at = args.clone();
    at.extend(["--relative-distortion", "0.8", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&ok(&at)).unwrap();
    assert_eq!(report["layers"].as_array().unwrap().len(), 9);
    let bits = report["bits_per_entry"].as_f64().unwrap();
    assert!(bits > 0.0 && bits < 32.0, "{bits}");
    // Less distortion costs more bits; the averaging estimator never beats the CEO limit.
    let mut tighter = args.clone();
    tighter.extend(["--relative-distortion", "0.65", "--json"]);
    let tighter: serde_json::Value = serde_json::from_str(&ok(&tighter)).unwrap();
    assert!(tighter["bits_per_entry"].as_f64().unwrap() > bits);
    // (The averaging estimator's floor, sigma_N^2 / K, is higher: compare near sigma_X^2.)
    let mut ceo = args.clone();
    ceo.extend(["--relative-distortion", "0.98", "--json"]);
    let ceo: serde_json::Value = serde_json::from_str(&ok(&ceo)).unwrap();
    let mut averaging = args.clone();
    averaging.extend(["--relative-distortion", "0.98", "--averaging", "--json"]);
    let averaging: serde_json::Value = serde_json::from_str(&ok(&averaging)).unwrap();
    assert!(
        averaging["bits_per_entry"].as_f64().unwrap() >= ceo["bits_per_entry"].as_f64().unwrap()
    );
    // Bad input: one worker, mismatched updates, unreachable distortion.
    let output = gradcodec(&[
        "bound",
        "--worker",
        "snapshots/fixtures/lenet5-grad.safetensors",
    ]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("at least 2 workers"));
    let output = gradcodec(&[
        "bound",
        "--worker",
        "snapshots/fixtures/lenet5-grad.safetensors",
        "--worker",
        "snapshots/fixtures/lenet5-steps/round-0.safetensors",
    ]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("tensors"));
    let mut unreachable = args.clone();
    unreachable.extend(["--relative-distortion", "0.01"]);
    let output = gradcodec(&unreachable);
    assert!(String::from_utf8_lossy(&output.stderr).contains("not reachable"));
}

#[test]
fn bench_bound_sets_real_bits_beside_the_limit_at_the_achieved_distortion() {
    let line = |pipeline: &str| -> serde_json::Value {
        let path = format!("pipelines/{pipeline}.yaml");
        let out = ok(&[
            "bench",
            "--bound",
            "--json",
            "--input",
            "snapshots/fixtures/lenet5-grad.safetensors",
            "--pipeline",
            &path,
        ]);
        serde_json::from_str(out.lines().next().unwrap()).unwrap()
    };
    let float = |v: &serde_json::Value, key: &str| v[key].as_f64().unwrap();
    // Lossy pipelines: the real message is never below the limit at its own distortion.
    let mut gaps = Vec::new();
    for pipeline in ["uniform8", "qsgd", "co3-fp4", "m20"] {
        let c = line(pipeline);
        let (bits, limit) = (
            float(&c, "bits_per_entry"),
            float(&c, "limit_bits_per_entry"),
        );
        let slb = float(&c, "shannon_lower_bound_bits_per_entry");
        assert!(limit > 0.0 && limit < bits, "{pipeline}: {limit} vs {bits}");
        assert!(
            slb <= limit + 1e-3,
            "{pipeline}: SLB {slb} above limit {limit}"
        );
        assert!((float(&c, "gap_bits_per_entry") - (bits - limit)).abs() < 1e-9);
        assert_eq!(c["tensors"].as_array().unwrap().len(), 10);
        gaps.push((pipeline, bits, limit));
    }
    // Less distortion, higher limit: uniform8 (8 bits) is far finer than m20 (2 bits).
    assert!(gaps[0].2 > gaps[3].2, "{gaps:?}");
    // Lossless: every tensor exact, no limit and no gap.
    let c = line("f32");
    assert_eq!(c["exact_tensors"].as_u64(), Some(10));
    assert!(c["limit_bits_per_entry"].is_null() && c["gap_bits_per_entry"].is_null());
    // The M-weighted distortion and the Markdown form.
    let out = ok(&[
        "bench",
        "--bound",
        "--markdown",
        "--weight-m",
        "2",
        "--input",
        "snapshots/fixtures/lenet5-grad.safetensors",
        "--pipeline",
        "pipelines/m22.yaml",
    ]);
    let row = out.lines().nth(2).unwrap();
    assert!(
        row.starts_with("| m22 |") && !row.contains("| - | - |"),
        "{out}"
    );
    // Bad settings get a clear error.
    let output = gradcodec(&[
        "bench",
        "--bound",
        "--weight-m",
        "-1",
        "--input",
        "snapshots/fixtures/lenet5-grad.safetensors",
        "--pipeline",
        "pipelines/m22.yaml",
    ]);
    assert!(!output.status.success());
}

#[test]
fn perf_reports_pipelines_against_memcpy_and_zstd_on_the_same_tiled_input() {
    let fixture = "snapshots/fixtures/lenet5-grad.safetensors";
    let out = ok(&[
        "perf",
        "--input",
        fixture,
        "--tile",
        "200000",
        "--min-time",
        "0",
        "--pipeline",
        "pipelines/f32.yaml",
        "--pipeline",
        "pipelines/topk-ef-1pct.yaml",
    ]);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{out}");
    let base = &lines[0];
    assert_eq!(base["kind"], "baselines");
    // 61,706 entries tiled 4x (copies permuted, so zstd cannot shrink the repeats).
    assert_eq!(base["entries"].as_u64(), Some(4 * 61_706));
    assert_eq!(base["tensors"].as_u64(), Some(10));
    assert!(
        base["zstd1_bits_per_entry"].as_f64().unwrap() > 16.0,
        "{base}"
    );
    assert!(base["memcpy_mentries_per_s"].as_f64().unwrap() > 0.0);
    let f32_line = &lines[1];
    assert_eq!(f32_line["pipeline"], "f32");
    let bits = f32_line["bits_per_entry"].as_f64().unwrap();
    assert!((32.0..32.2).contains(&bits), "{bits}");
    assert!(f32_line["encode_mentries_per_s"].as_f64().unwrap() > 0.0);
    // Top-k: positions measured against log2 C(n, k), the coded payload close to it.
    let topk = &lines[2];
    let positions = &topk["streams"]["positions"];
    let (coded, information) = (
        positions[0].as_f64().unwrap(),
        positions[1].as_f64().unwrap(),
    );
    assert!(coded >= information && coded < 1.1 * information, "{topk}");
    assert!(topk["overhead_fraction"].as_f64().unwrap() > 0.0);
    // Its values are raw f32 words, measured against their byte planes' H0:
    // far below 32 bits a value, and the adaptive byte coder not far above it.
    let values = &topk["streams"]["raw-words"];
    let (coded, information) = (values[0].as_f64().unwrap(), values[1].as_f64().unwrap());
    // About 1% of the entries are kept (each tensor rounds its own count).
    let entries = topk["entries"].as_f64().unwrap();
    let (fewest, most) = (0.009 * entries, 0.012 * entries);
    assert!(
        information < 32.0 * most && information > 8.0 * fewest,
        "{topk}"
    );
    assert!(
        coded >= 0.95 * information && coded < 1.3 * information,
        "{topk}"
    );
    // Scaling: the same bytes with 1 and 2 threads (checked inside), both rates.
    let out = ok(&[
        "perf",
        "--input",
        fixture,
        "--tile",
        "100000",
        "--tile-as-tensors",
        "--scaling",
        "2",
        "--min-time",
        "0",
        "--pipeline",
        "pipelines/co3-fp4.yaml",
    ]);
    let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(line["kind"], "scaling");
    assert_eq!(line["tensors"].as_u64(), Some(20));
    assert!(line["encode_speedup"].as_f64().unwrap() > 0.0);
    // Bad settings.
    for args in [
        vec![
            "perf",
            "--input",
            fixture,
            "--threads",
            "0",
            "--pipeline",
            "pipelines/f32.yaml",
        ],
        vec![
            "perf",
            "--input",
            fixture,
            "--scaling",
            "1",
            "--pipeline",
            "pipelines/f32.yaml",
        ],
    ] {
        assert!(!gradcodec(&args).status.success(), "{args:?}");
    }
}

/// `gradcodec` with a timeout: a command that hangs (a FIFO opened as a plugin)
/// fails the test instead of blocking it.
fn gradcodec_within(args: &[&str], seconds: u64) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gradcodec"))
        .args(args)
        .current_dir(workspace())
        .env_remove("GRADCODEC_PLUGIN_PATH")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("gradcodec {args:?} did not finish within {seconds} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Issue 15, cases 7 and 8: a half-copied plugin (SIGBUS before) and a FIFO
/// (blocked forever before) in a plugin folder; every command still works and
/// `plugins --verbose` says why each was refused.
#[test]
fn broken_files_in_a_plugin_folder_do_not_take_the_commands_down() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let real = workspace().join("target/debug/libgradcodec_plugin_co3.so");
    let bytes = std::fs::read(&real).unwrap();
    std::fs::write(
        plugins.join("libgradcodec_plugin_half.so"),
        &bytes[..bytes.len() / 3],
    )
    .unwrap();
    assert!(Command::new("mkfifo")
        .arg(plugins.join("libgradcodec_plugin_pipe.so"))
        .status()
        .unwrap()
        .success());
    let dir_arg = plugins.to_str().unwrap();
    let output = gradcodec_within(&["--plugin-dir", dir_arg, "plugins", "--verbose"], 60);
    assert!(output.status.success(), "{output:?}");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("libgradcodec_plugin_half.so") && text.contains("truncated"),
        "{text}"
    );
    assert!(
        text.contains("libgradcodec_plugin_pipe.so") && text.contains("not a regular file"),
        "{text}"
    );
    // Encoding and decoding with the shipped plugins still work.
    let input = write_input(dir.path());
    let message = dir.path().join("m.gcm");
    let message_arg = message.to_str().unwrap();
    let output = gradcodec_within(
        &[
            "--plugin-dir",
            dir_arg,
            "encode",
            "--pipeline",
            "pipelines/uniform8.yaml",
            "--input",
            input.to_str().unwrap(),
            "--output",
            message_arg,
        ],
        60,
    );
    assert!(output.status.success(), "{output:?}");
    let out = dir.path().join("back.npy");
    let output = gradcodec_within(
        &[
            "--plugin-dir",
            dir_arg,
            "decode",
            "--input",
            message_arg,
            "--output",
            out.to_str().unwrap(),
        ],
        60,
    );
    assert!(output.status.success(), "{output:?}");
}

/// Issue 15: control characters in names are escaped on the terminal; `check`
/// gives its reasons on stderr; the decoder takes an expected layout and
/// explicit limits.
#[test]
fn names_are_escaped_reasons_go_to_stderr_and_receivers_can_expect_a_layout() {
    let dir = tempfile::tempdir().unwrap();
    let evil = gradcodec::Update::new(vec![gradcodec::NamedTensor::from_vec(
        "w\u{1b}]0;pwned\u{7}\u{1b}[2J",
        &[4, 8],
        (0..32).map(|i| i as f32 * 0.01).collect(),
    )
    .unwrap()]);
    let input = dir.path().join("evil.safetensors");
    evil.write(&input).unwrap();
    let message = dir.path().join("evil.gcm");
    ok(&[
        "encode",
        "--pipeline",
        "pipelines/uniform8.yaml",
        "--input",
        input.to_str().unwrap(),
        "--output",
        message.to_str().unwrap(),
    ]);
    let shown = ok(&["inspect", message.to_str().unwrap()]);
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown:?}"
    );
    assert!(
        shown.contains("w\\u{1b}]0;pwned\\u{7}\\u{1b}[2J"),
        "{shown}"
    );

    // A receiver that expects another layout refuses the message; the error is escaped too.
    let model = dir.path().join("model.safetensors");
    gradcodec::Update::new(vec![gradcodec::NamedTensor::from_vec(
        "w",
        &[4, 8],
        vec![0.0; 32],
    )
    .unwrap()])
    .write(&model)
    .unwrap();
    let out = dir.path().join("out.safetensors");
    let output = gradcodec(&[
        "decode",
        "--input",
        message.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--expect",
        model.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is not one of the 1 tensors this receiver expects"),
        "{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
    let output = gradcodec(&[
        "decode",
        "--input",
        message.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--max-entries",
        "16",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("more than the limit of 16"), "{stderr}");
    ok(&[
        "decode",
        "--input",
        message.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--max-entries",
        "32",
    ]);

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "name: bad\nstages:\n  - quantizer: { use: raw }\n").unwrap();
    let output = gradcodec(&["check", bad.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("FAIL") && stderr.contains("entropy-coder"),
        "{stderr}"
    );
    assert!(stderr.contains("1 of 1 specs failed"), "{stderr}");
}

/// `bench --rounds N` codes a stream, so error feedback warms up; the default
/// says that it ran one round.
#[test]
fn bench_rounds_codes_a_stream_and_says_what_it_ran() {
    let bench = |extra: &[&str]| {
        let mut args = vec![
            "bench",
            "--pipeline",
            "pipelines/topk-ef-1pct.yaml",
            "--min-time",
            "0",
        ];
        args.extend_from_slice(extra);
        ok(&args)
    };
    let one: serde_json::Value = serde_json::from_str(
        bench(&[
            "--input",
            "snapshots/fixtures/lenet5-steps/round-0.safetensors",
            "--json",
        ])
        .trim(),
    )
    .unwrap();
    assert_eq!(one["rounds"], 1);
    let stream: serde_json::Value = serde_json::from_str(
        bench(&[
            "--input",
            "snapshots/fixtures/lenet5-steps",
            "--rounds",
            "5",
            "--json",
        ])
        .trim(),
    )
    .unwrap();
    assert_eq!(stream["rounds"], 5);
    // Later rounds carry the remembered error: their bits differ from round 0's.
    assert_ne!(stream["bits_per_entry_last"], one["bits_per_entry"]);
    assert!(stream["bytes"].as_u64().unwrap() > one["bytes"].as_u64().unwrap());
    let table = bench(&[
        "--input",
        "snapshots/fixtures/lenet5-steps",
        "--rounds",
        "3",
    ]);
    assert!(table.contains("a stream of 3 rounds"), "{table}");
    let table = bench(&["--input", "snapshots/fixtures/lenet5-grad.safetensors"]);
    assert!(table.contains("one round per pipeline"), "{table}");
    let folder_without_rounds = gradcodec(&[
        "bench",
        "--pipeline",
        "pipelines/f32.yaml",
        "--input",
        "snapshots/fixtures/lenet5-steps",
    ]);
    assert!(!folder_without_rounds.status.success());
    assert!(String::from_utf8_lossy(&folder_without_rounds.stderr).contains("--rounds"));
}
