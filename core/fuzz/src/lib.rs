//! Shared setup of the fuzz targets: every plugin linked in-process (so the
//! fuzzer's coverage instrumentation reaches plugin code), a registry built from
//! their root modules, and every pipeline in pipelines/.

use gradcodec::{LoadedLibrary, Pipeline, PipelineSpec, Registry};
use gradcodec_abi::PluginRootRef;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

fn roots() -> Vec<(&'static str, PluginRootRef)> {
    vec![
        ("basic", gradcodec_plugin_basic::plugin_root()),
        ("co3", gradcodec_plugin_co3::plugin_root()),
        ("lloyd-max", gradcodec_plugin_lloyd_max::plugin_root()),
        ("quant", gradcodec_plugin_quant::plugin_root()),
        ("feedback", gradcodec_plugin_feedback::plugin_root()),
        ("entropy", gradcodec_plugin_entropy::plugin_root()),
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
