//! Every entropy decoder on arbitrary bytes, counts, alphabets, roles and models.
#![no_main]
use abi_stable::std_types::{RResult, RStr, RVec};
use gradcodec_abi::{StageKind, StreamRole, SymbolStream, TensorSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let registry = gradcodec_fuzz::registry();
    let coders: Vec<_> = registry.stages().iter().filter(|s| s.descriptor.kind == StageKind::ENTROPY_CODER).collect();
    let stage = coders[data[0] as usize % coders.len()];
    let roles = [StreamRole::VALUES, StreamRole::POSITIONS, StreamRole::RAW_WORDS];
    let role = roles[data[1] as usize % 3];
    let alphabet: u64 = match data[2] % 6 {
        0 => 1,
        1 => 2,
        2 => 11,
        3 => 247,
        4 => 65_536,
        _ => 1 << 32,
    };
    let count = u64::from(u16::from_le_bytes([data[3], data[4]]));
    let with_model = data[5] & 1 == 1 && alphabet <= 65_536;
    let bytes = &data[6..];
    let tensor = TensorSpec { name: "fuzz".into(), shape: RVec::from(vec![4096u64]) };
    let params = stage.descriptor.example_params.as_str();
    let RResult::ROk(mut coder) = (stage.library.root.new_entropy_coder())(
        RStr::from(stage.descriptor.name.as_str()),
        RStr::from(params),
        &tensor,
    ) else {
        return;
    };
    let mut stream = SymbolStream::new(role, alphabet);
    if with_model {
        stream.model = (0..alphabet).map(|i| 1.0 / (1.0 + i as f32)).collect();
    }
    if let RResult::ROk(()) = coder.decode(bytes.into(), count, &mut stream) {
        assert_eq!(stream.symbols.len() as u64, count, "{}: wrong count", stage.descriptor.name);
        assert!(
            stream.symbols.iter().all(|s| u64::from(*s) < alphabet),
            "{}: symbol outside the alphabet",
            stage.descriptor.name
        );
    }
});
