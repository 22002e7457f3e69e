//! Whole-message decoding: the first byte picks a pipeline from pipelines/, the
//! rest is a message body that gets a valid checksum, so mutations reach the
//! entropy decoders and quantizers. Also the self-describing path.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let pipelines = gradcodec_fuzz::pipelines();
    let pipeline = &pipelines[selector as usize % pipelines.len()];
    let message = gradcodec_fuzz::seal(body);
    let mut decoder = pipeline.decoder();
    if decoder.decode(&message).is_ok() {
        // A stateful stream must go on decoding after an accepted message.
        let _ = decoder.decode(&message);
    }
    if let Ok(mut decoder) = gradcodec::decoder_for_message(gradcodec_fuzz::registry(), &message) {
        let _ = decoder.decode(&message);
    }
});
