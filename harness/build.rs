//! Link-time setup for libtorch.
//!
//! A downstream binary of tch gets no rpath to libtorch and, against a CUDA build,
//! the linker drops `libtorch_cuda.so` as unneeded (tch-rs issues 907 and 980). This
//! script reads the libtorch library folder that torch-sys reports
//! (`DEP_TCH_LIBTORCH_LIB`) and
//! - always emits an rpath to it, so the binary runs without `LD_LIBRARY_PATH`;
//! - only when `libtorch_cuda.so` is there, forces it in with `--no-as-needed -ltorch`
//!   (doing so against a CPU-only folder breaks start-up).

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!(
            "cargo:warning=torch-sys reported no libtorch folder: the binary gets no rpath; \
             run scripts/setup-libtorch and source scripts/env-libtorch"
        );
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath={lib}");
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
