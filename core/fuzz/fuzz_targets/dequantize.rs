//! Every quantizer's decoder side on arbitrary side info and symbols.
#![no_main]
use abi_stable::std_types::{RResult, RStr, RVec};
use gradcodec_abi::{CallContext, Quantized, StageKind, TensorSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let registry = gradcodec_fuzz::registry();
    let quantizers: Vec<_> = registry.stages().iter().filter(|s| s.descriptor.kind == StageKind::QUANTIZER).collect();
    let stage = quantizers[data[0] as usize % quantizers.len()];
    let shapes: [&[u64]; 4] = [&[37], &[16, 3, 3, 3], &[64, 40], &[1]];
    let shape = shapes[data[1] as usize % 4];
    let side_len = (data[2] as usize).min(data.len() - 3);
    let side_info = &data[3..3 + side_len];
    let rest = &data[3 + side_len..];
    let tensor = TensorSpec { name: "fuzz".into(), shape: RVec::from(shape.to_vec()) };
    let RResult::ROk(mut quantizer) = (stage.library.root.new_quantizer())(
        RStr::from(stage.descriptor.name.as_str()),
        RStr::from(stage.descriptor.example_params.as_str()),
        &tensor,
    ) else {
        return;
    };
    let ctx = CallContext::new(0, 0);
    let mut coded = Quantized { side_info: side_info.to_vec().into(), streams: RVec::new() };
    if quantizer.describe_streams(&ctx, &mut coded).is_err() {
        return;
    }
    // Fill the streams with symbols from the rest of the input, in range or not.
    let mut words = rest.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    let entries = tensor.len() as usize;
    for stream in coded.streams.iter_mut() {
        let wanted = if stream.role == gradcodec_abi::StreamRole::POSITIONS { entries / 4 } else { entries };
        for _ in 0..wanted {
            let Some(word) = words.next() else { break };
            let symbol = if stream.alphabet_size <= u64::from(u32::MAX) && word & 1 == 0 {
                (u64::from(word >> 1) % stream.alphabet_size) as u32
            } else {
                word
            };
            stream.symbols.push(symbol);
        }
    }
    let mut out = RVec::new();
    if let RResult::ROk(()) = quantizer.dequantize(&ctx, &coded, &mut out) {
        assert_eq!(out.len(), entries, "{}: wrong reconstruction length", stage.descriptor.name);
    }
});
