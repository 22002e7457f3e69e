//! Shared setup of the fuzz targets: every plugin linked in-process (so the
//! fuzzer's coverage instrumentation reaches plugin code), a registry built from
//! their root modules, and every pipeline in pipelines/.

use gradcodec::{LoadedLibrary, Pipeline, PipelineSpec, Registry};
use gradcodec_abi::PluginRootRef;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

fn roots() -> Vec<(&'static str, PluginRootRef)> {
    vec![
        ("quantizers", gradcodec_plugin_quantizers::plugin_root()),
        ("sparsifiers", gradcodec_plugin_sparsifiers::plugin_root()),
        ("entropy-coders", gradcodec_plugin_entropy_coders::plugin_root()),
        ("feedback", gradcodec_plugin_feedback::plugin_root()),
        ("predictors", gradcodec_plugin_predictors::plugin_root()),
        ("co3", gradcodec_plugin_co3::plugin_root()),
        ("lloyd-max", gradcodec_plugin_lloyd_max::plugin_root()),
    ]
}

/// The registry of every in-process plugin.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut registry = Registry::default();
        for (name, root) in roots() {
            registry.add_library(LoadedLibrary {
                path: PathBuf::from(format!("<in-process {name}>")),
                root,
                manifest: (root.manifest())(),
            });
        }
        registry
    })
}

/// Every pipeline in pipelines/, sorted by file name.
pub fn pipelines() -> &'static [Arc<Pipeline>] {
    static PIPELINES: OnceLock<Vec<Arc<Pipeline>>> = OnceLock::new();
    PIPELINES.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines");
        gradcodec::spec::spec_files(&dir)
            .expect("pipelines/")
            .iter()
            .map(|path| {
                let spec = PipelineSpec::from_file(path).expect("spec");
                registry().build(&spec).expect("pipeline")
            })
            .collect()
    })
}

/// Appends the CRC-32 a message ends with, so mutated bodies reach the decoders.
pub fn seal(body: &[u8]) -> Vec<u8> {
    let mut message = body.to_vec();
    let crc = crc32(body);
    message.extend_from_slice(&crc.to_le_bytes());
    message
}

fn crc32(bytes: &[u8]) -> u32 {
    // Same CRC-32 (IEEE) as the container; bitwise, fuzzing needs no speed here.
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A cheap hash of an input, for choosing per input (deterministically, so a
/// crash reproduces from its file alone) the inputs that also take a slower
/// path through the file system.
pub fn input_hash(bytes: &[u8]) -> u32 {
    let head = &bytes[..bytes.len().min(256)];
    let tail = &bytes[bytes.len().saturating_sub(256)..];
    head.iter().chain(tail).fold(bytes.len() as u32, |h, b| {
        h.wrapping_mul(0x0100_0193) ^ u32::from(*b)
    })
}

/// A per-process file name in the temporary folder (two fuzzers at once must
/// not share one).
pub fn temp_file(stem: &str, extension: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "gradcodec-fuzz-{stem}-{}.{extension}",
        std::process::id()
    ))
}

/// What the dynamic loader would map from `bytes`, read the way glibc reads it
/// (ELF64 little-endian x86_64 shared objects only; `None` for anything else,
/// which glibc refuses before mapping): the program header table at `e_phoff`
/// (whatever its value, 0 included) and the (offset, size) in the file of every
/// `PT_LOAD` segment with file bytes (one with none is mapped anonymously).
/// `None` also when the table is not in the file (glibc's read of it comes up
/// short and the load fails cleanly).
pub fn glibc_load_segments(bytes: &[u8]) -> Option<Vec<(u64, u64)>> {
    let u16_at = |at: usize| Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
    // e_ident: magic, ELFCLASS64, ELFDATA2LSB; e_type ET_DYN; e_machine EM_X86_64.
    if bytes.get(..6)? != b"\x7fELF\x02\x01" || u16_at(16)? != 3 || u16_at(18)? != 62 {
        return None;
    }
    let (phoff, phentsize, phnum) = (u64_at(32)?, u16_at(54)?, u16_at(56)?);
    if phentsize != 56 {
        return None;
    }
    let table_end = phoff.checked_add(u64::from(phnum) * 56)?;
    if table_end > bytes.len() as u64 {
        return None;
    }
    let mut loads = Vec::new();
    for index in 0..usize::from(phnum) {
        let at = phoff as usize + index * 56;
        let (offset, size) = (u64_at(at + 8)?, u64_at(at + 32)?);
        if u32_at(at)? == 1 && size > 0 {
            loads.push((offset, size));
        }
    }
    Some(loads)
}
