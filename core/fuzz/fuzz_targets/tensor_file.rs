//! The tensor-file readers (`.npy`, `.safetensors`) on arbitrary bytes: both
//! parsers on every input. Whatever parses must be backed by the bytes present
//! (4 bytes per f32 entry), and must survive `Update::write` + `Update::read`
//! unchanged (every 8th parsed input, chosen by a hash of the input, through a
//! per-process temporary file that is removed again).
#![no_main]
use gradcodec::{Error, Update};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(update) = Update::parse_npy(data, "fuzz".to_string()) {
        assert_eq!(update.tensors.len(), 1, ".npy: one tensor");
        check(&update, data, "npy");
    }
    if let Ok(update) = Update::parse_safetensors(data) {
        check(&update, data, "safetensors");
    }
});

fn check(update: &Update, data: &[u8], extension: &str) {
    let entries: u128 = update.tensors.iter().map(|t| t.data.len() as u128).sum();
    assert!(
        entries * 4 <= data.len() as u128,
        ".{extension}: {entries} entries parsed from {} bytes",
        data.len()
    );
    for tensor in &update.tensors {
        let product: u128 = tensor.data.shape().iter().map(|d| *d as u128).product();
        assert_eq!(
            product,
            tensor.data.len() as u128,
            ".{extension}: shape vs entries"
        );
    }
    if gradcodec_fuzz::input_hash(data) % 8 != 0 {
        return;
    }
    let path = gradcodec_fuzz::temp_file("tensor", extension);
    let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
    let mut written = update.clone();
    if extension == "npy" {
        // Update::read names an .npy tensor after the file.
        written.tensors[0].name = stem;
    }
    let result = written.write(&path);
    let back = result.and_then(|()| Update::read(&path));
    let _ = std::fs::remove_file(&path);
    match back {
        Ok(back) => assert_eq!(
            bits(&written),
            bits(&back),
            ".{extension}: write + read changed the update"
        ),
        // The machine's disk, not the code.
        Err(Error::Io { .. }) => {}
        Err(err) => panic!(".{extension}: a parsed update does not write and read back: {err}"),
    }
}

/// Names, shapes and value bits (NaN payloads included), sorted by name (a
/// `.safetensors` writer may order tensors its own way).
fn bits(update: &Update) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    let mut out: Vec<_> = update
        .tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.data.shape().to_vec(),
                t.data.iter().map(|v| v.to_bits()).collect(),
            )
        })
        .collect();
    out.sort();
    out
}
