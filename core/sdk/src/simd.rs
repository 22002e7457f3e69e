//! Runtime CPU dispatch for hot loops: one kernel, compiled twice.
//!
//! [`simd_dispatch!`](crate::simd_dispatch) defines a function that runs an
//! `#[inline(always)]` kernel compiled with AVX2 (and F16C) when the CPU has
//! them, detected once at run time, and the portable build of the same kernel
//! otherwise. The binaries stay portable (no `target-cpu`), and because both
//! builds run the same Rust code, with no fused multiply-add contraction, they
//! give bit-identical results: the bytes a stage writes never depend on the CPU.
//!
//! ```
//! #[inline(always)]
//! fn sum_kernel(values: &[f32]) -> f32 {
//!     let mut lanes = [0.0f32; 8];
//!     for chunk in values.chunks_exact(8) {
//!         for (lane, v) in lanes.iter_mut().zip(chunk) {
//!             *lane += v;
//!         }
//!     }
//!     lanes.iter().sum::<f32>() + values.chunks_exact(8).remainder().iter().sum::<f32>()
//! }
//! gradcodec_sdk::simd_dispatch! {
//!     /// The sum, 8 lanes at a time.
//!     pub fn lane_sum(values: &[f32]) -> f32 => sum_kernel
//! }
//! assert_eq!(lane_sum(&[1.0; 20]), 20.0);
//! ```

/// True when the CPU runs the AVX2 + F16C builds of [`crate::simd_dispatch!`] kernels.
#[inline]
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `fn name(args) -> ret` running `kernel(args)` compiled for AVX2 +
/// F16C when [`has_avx2`], else its portable build (see the module doc).
#[macro_export]
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $kernel:path) => {
        $(#[$meta])*
        #[inline]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,f16c")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    $kernel($($arg),*)
                }
                if $crate::simd::has_avx2() {
                    // SAFETY: `wide` only needs AVX2 and F16C, which the CPU
                    // has (`has_avx2` checked both just above).
                    return unsafe { wide($($arg),*) };
                }
            }
            $kernel($($arg),*)
        }
    };
}
