//! Runs the independent pieces of one message (blocks, scan pieces) on the
//! current rayon pool, or on the calling thread when there is one piece or
//! one thread: handing a single job to a pool thread and waiting for it costs
//! a wake-up and a context switch per call, for nothing. Each piece is
//! computed the same way either way, so the bytes never depend on it.

use rayon::prelude::*;

/// `f` over every item, in order; in parallel when it can help.
pub(crate) fn map_all<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync + Send) -> Vec<R> {
    if items.len() <= 1 || rayon::current_num_threads() <= 1 {
        items.into_iter().map(f).collect()
    } else {
        items.into_par_iter().map(f).collect()
    }
}
