//! The YAML spec parser and resolution against the registry, on arbitrary text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(spec) = gradcodec::PipelineSpec::parse(text, "fuzz.yaml") {
        let _ = gradcodec_fuzz::registry().build(&spec);
    }
});
