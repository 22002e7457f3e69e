//! Fast appends to the ABI's vectors.
//!
//! `abi_stable`'s `RVec::extend` and `extend_from_slice` push one element at a
//! time (a capacity check and a length store per element), which keeps the
//! compiler from vectorizing the loops that fill symbol streams and tensors; on a
//! million entries that costs several times the work itself. These helpers grow the
//! vector once (`resize`, a plain fill the compiler turns into `memset`) and then
//! write through a slice, so the per-entry loop is an ordinary slice loop. Capacity
//! is kept across calls, so buffers reused round after round never reallocate.
//!
//! ```
//! use gradcodec_sdk::{buffers::RVecExt, RVec};
//!
//! let mut symbols: RVec<u32> = RVec::new();
//! symbols.extend_mapped(&[1.5f32, -2.0], |v| v.to_bits());
//! symbols.extend_copied(&[7, 8]);
//! assert_eq!(symbols.as_slice(), &[1.5f32.to_bits(), (-2.0f32).to_bits(), 7, 8]);
//! ```

use abi_stable::std_types::RVec;
use std::mem::MaybeUninit;

/// Slots a writer initialized, read as values.
///
/// # Safety
///
/// Every slot of `slots` must be initialized.
pub unsafe fn assume_written<T>(slots: &[MaybeUninit<T>]) -> &[T] {
    // SAFETY: `MaybeUninit<T>` has the layout of `T`, and the caller promises
    // every slot is initialized.
    unsafe { std::slice::from_raw_parts(slots.as_ptr().cast::<T>(), slots.len()) }
}

/// Vectorizable appends to an [`RVec`].
pub trait RVecExt<T: Copy + Default> {
    /// Appends `f(x)` for every `x` of `input`.
    fn extend_mapped<S: Copy>(&mut self, input: &[S], f: impl FnMut(S) -> T);
    /// Appends `count` elements written by `fill` into a default-initialized slice.
    fn extend_filled(&mut self, count: usize, fill: impl FnOnce(&mut [T]));
    /// Appends a copy of `input` (one `memcpy`).
    fn extend_copied(&mut self, input: &[T]);
    /// Appends `f(a, b)` for every pair of `a` and `b` (as long as the shorter).
    fn extend_zipped<A: Copy, B: Copy>(&mut self, a: &[A], b: &[B], f: impl FnMut(A, B) -> T);
    /// Appends `count` elements that `fill` writes straight into the spare
    /// capacity: no default fill first, so a fresh buffer is written once.
    /// When `fill` fails, nothing is appended.
    ///
    /// # Safety
    ///
    /// When `fill` returns `Ok`, it must have written every one of the
    /// `count` slots it was given.
    unsafe fn extend_written<E>(
        &mut self,
        count: usize,
        fill: impl FnOnce(&mut [MaybeUninit<T>]) -> Result<(), E>,
    ) -> Result<(), E>;
}

impl<T: Copy + Default> RVecExt<T> for RVec<T> {
    #[inline]
    fn extend_mapped<S: Copy>(&mut self, input: &[S], mut f: impl FnMut(S) -> T) {
        self.extend_filled(input.len(), |out| {
            for (o, x) in out.iter_mut().zip(input) {
                *o = f(*x);
            }
        });
    }

    #[inline]
    fn extend_filled(&mut self, count: usize, fill: impl FnOnce(&mut [T])) {
        // Defaults copied in from a small block (memcpy): `RVec::resize`
        // writes one element at a time, a measurable share of fast decodes.
        const DEFAULTS: usize = 512;
        let start = self.len();
        self.reserve(count);
        let defaults = [T::default(); DEFAULTS];
        let mut left = count;
        while left > 0 {
            let here = left.min(DEFAULTS);
            self.extend_from_copy_slice(&defaults[..here]);
            left -= here;
        }
        fill(&mut self.as_mut_slice()[start..]);
    }

    #[inline]
    fn extend_copied(&mut self, input: &[T]) {
        self.extend_from_copy_slice(input);
    }

    #[inline]
    unsafe fn extend_written<E>(
        &mut self,
        count: usize,
        fill: impl FnOnce(&mut [MaybeUninit<T>]) -> Result<(), E>,
    ) -> Result<(), E> {
        let start = self.len();
        self.reserve(count);
        // SAFETY: `reserve` made room for `count` elements after the `start`
        // initialized ones; the slice covers exactly that room, which nothing
        // else references while it lives, and `MaybeUninit` needs no
        // initialization.
        let spare = unsafe {
            std::slice::from_raw_parts_mut(
                self.as_mut_ptr().add(start).cast::<MaybeUninit<T>>(),
                count,
            )
        };
        fill(spare)?;
        // SAFETY: `fill` succeeded, so it wrote all `count` slots (the
        // caller's promise).
        unsafe { self.set_len(start + count) };
        Ok(())
    }

    #[inline]
    fn extend_zipped<A: Copy, B: Copy>(&mut self, a: &[A], b: &[B], mut f: impl FnMut(A, B) -> T) {
        let count = a.len().min(b.len());
        self.extend_filled(count, |out| {
            for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
                *o = f(*x, *y);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_appends_keep_the_prefix_and_append_nothing_on_failure() {
        let mut out: RVec<u32> = vec![7, 8].into();
        // SAFETY: the fill writes every slot before returning Ok.
        unsafe {
            out.extend_written(3, |slots| {
                for (i, slot) in slots.iter_mut().enumerate() {
                    slot.write(i as u32);
                }
                Ok::<(), ()>(())
            })
        }
        .unwrap();
        assert_eq!(out.as_slice(), &[7, 8, 0, 1, 2]);
        // SAFETY: the fill fails, so nothing is appended.
        let failed = unsafe { out.extend_written(4, |_| Err(())) };
        assert!(failed.is_err());
        assert_eq!(out.as_slice(), &[7, 8, 0, 1, 2]);
    }

    #[test]
    fn appends_keep_what_was_there_and_reuse_capacity() {
        let mut v: RVec<f32> = RVec::new();
        v.push(1.0);
        v.extend_mapped(&[1u32, 2, 3], |x| x as f32 * 2.0);
        v.extend_filled(2, |out| out.copy_from_slice(&[9.0, 10.0]));
        v.extend_copied(&[11.0]);
        v.extend_zipped(&[1.0f32, 2.0, 3.0], &[0.5f32, 0.25], |a, b| a + b);
        assert_eq!(
            v.as_slice(),
            &[1.0, 2.0, 4.0, 6.0, 9.0, 10.0, 11.0, 1.5, 2.25]
        );
        let capacity = v.capacity();
        v.clear();
        v.extend_mapped(&[0u8; 7], f32::from);
        assert_eq!((v.len(), v.capacity()), (7, capacity));
    }

    #[test]
    fn long_fills_start_from_defaults_and_keep_the_prefix() {
        let mut v: RVec<u32> = RVec::new();
        v.push(7);
        // Not a multiple of the default block: the last copy is partial.
        v.extend_filled(1000, |out| {
            assert!(out.iter().all(|x| *x == 0));
            for (i, o) in out.iter_mut().enumerate().step_by(3) {
                *o = i as u32;
            }
        });
        assert_eq!(v.len(), 1001);
        assert_eq!(v[0], 7);
        assert!((1..1001).all(|i| v[i] == if (i - 1) % 3 == 0 { i as u32 - 1 } else { 0 }));
    }
}
