//! The message container parser on arbitrary bytes (checksum included).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = gradcodec::container::Limits::default();
    let _ = gradcodec::container::parse(data, &limits);
    // Past the checksum: the same bytes, sealed with a valid CRC.
    let _ = gradcodec::container::parse(&gradcodec_fuzz::seal(data), &limits);
});
