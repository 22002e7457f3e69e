//! The checks a plugin library passes before `dlopen`, on arbitrary bytes:
//! `check_library_bytes` on every input and `check_candidate` on it as a file
//! (every 16th input, chosen by a hash of the input, through a per-process
//! temporary file that is removed again); both must agree. Nothing here is
//! ever loaded: loading a library runs its code. A library the checks accept
//! must not make the loader map bytes past the end of the file (SIGBUS): every
//! `PT_LOAD` segment, read the way glibc reads the program headers, is inside.
#![no_main]
use gradcodec::loader::{check_candidate, check_library_bytes};
use libfuzzer_sys::fuzz_target;
use std::sync::Once;

fuzz_target!(|data: &[u8]| {
    static NOT_FILES: Once = Once::new();
    NOT_FILES.call_once(|| {
        assert!(
            check_candidate(&std::env::temp_dir()).is_err(),
            "a folder passed"
        );
        assert!(
            check_candidate(&gradcodec_fuzz::temp_file("missing", "so")).is_err(),
            "a missing file passed"
        );
    });
    let verdict = check_library_bytes(data);
    if verdict.is_ok() {
        if let Some(loads) = gradcodec_fuzz::glibc_load_segments(data) {
            for (offset, size) in loads {
                assert!(
                    offset
                        .checked_add(size)
                        .is_some_and(|end| end <= data.len() as u64),
                    "accepted, but glibc would map bytes {offset}..+{size} of a {}-byte file",
                    data.len()
                );
            }
        }
    }
    if gradcodec_fuzz::input_hash(data) % 16 == 0 {
        let path = gradcodec_fuzz::temp_file("candidate", "so");
        if std::fs::write(&path, data).is_ok() {
            let from_file = check_candidate(&path);
            let _ = std::fs::remove_file(&path);
            assert_eq!(
                from_file.is_ok(),
                verdict.is_ok(),
                "check_candidate {from_file:?} but check_library_bytes {verdict:?}"
            );
        }
    }
});
