//! Exclusive use of libtorch's default generator.
//!
//! `tch::manual_seed` seeds one generator shared by the whole process, and
//! model initialisation, dropout and data shuffling draw from it. Two runs in
//! one process at once (the integration tests, a library user's threads)
//! would interleave their draws and neither would be repeatable. A run or a
//! capture holds this lock from before it seeds the generator to its end, so
//! concurrent callers take turns and each gets the trajectory it would get
//! alone.

use std::sync::{Mutex, MutexGuard};

static GENERATOR: Mutex<()> = Mutex::new(());

/// Waits for, then holds, the process's torch generator until the guard drops.
/// A run that panicked while holding it leaves nothing to repair (every run
/// seeds the generator itself), so a poisoned lock is taken as it is.
pub fn exclusive() -> MutexGuard<'static, ()> {
    GENERATOR
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
