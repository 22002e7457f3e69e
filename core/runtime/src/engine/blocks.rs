//! How a tensor is cut into independently coded blocks.
//!
//! A tensor of more than `block_entries` entries (a pipeline setting, default
//! [`DEFAULT_BLOCK_ENTRIES`]) is coded as blocks of whole rows along its first
//! axis: `block_rows = max(1, block_entries / row_entries)` rows each, the last
//! one shorter. Each block has its own stage instances (so its own fit, side
//! info and error memory), and the blocks of one tensor code in parallel. The
//! cut depends only on the shape and the pipeline, never on the thread count,
//! so the bytes are the same on any machine. A tensor that fits in one block is
//! coded exactly as before blocks existed.
//!
//! ```yaml
//! blocks: { entries: 1048576 }   # in a pipeline spec; the default
//! ```

use std::ops::Range;

/// Block size used when a pipeline does not set one: 2^20 entries.
pub const DEFAULT_BLOCK_ENTRIES: u64 = 1 << 20;

/// Smallest block size a pipeline may set.
pub const MIN_BLOCK_ENTRIES: u64 = 4096;

/// The cut of one tensor shape into blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BlockLayout {
    shape: Vec<u64>,
    /// Rows per block; `None` when the tensor is one block.
    block_rows: Option<u64>,
}

impl BlockLayout {
    /// The layout the pipeline's rule gives `shape`.
    pub fn for_shape(shape: &[u64], block_entries: u64) -> Self {
        let unblocked = Self {
            shape: shape.to_vec(),
            block_rows: None,
        };
        let Some((&rows, rest)) = shape.split_first() else {
            return unblocked;
        };
        let row_entries = rest.iter().product::<u64>();
        if rows == 0 || row_entries == 0 || rows.saturating_mul(row_entries) <= block_entries {
            return unblocked;
        }
        let block_rows = (block_entries / row_entries).max(1);
        if block_rows >= rows {
            return unblocked;
        }
        Self {
            shape: shape.to_vec(),
            block_rows: Some(block_rows),
        }
    }

    /// A single-block layout (messages of format version 1 never cut tensors).
    pub fn whole(shape: &[u64]) -> Self {
        Self {
            shape: shape.to_vec(),
            block_rows: None,
        }
    }

    /// Rows per block, when the tensor is cut.
    pub fn block_rows(&self) -> Option<u64> {
        self.block_rows
    }

    /// Number of blocks (at least 1).
    pub fn count(&self) -> usize {
        match self.block_rows {
            Some(block_rows) => self.shape[0].div_ceil(block_rows) as usize,
            None => 1,
        }
    }

    fn row_entries(&self) -> u64 {
        self.shape.iter().skip(1).product()
    }

    /// The shape of block `index`.
    pub fn block_shape(&self, index: usize) -> Vec<u64> {
        match self.block_rows {
            Some(block_rows) => {
                let start = index as u64 * block_rows;
                let rows = block_rows.min(self.shape[0] - start);
                let mut shape = self.shape.clone();
                shape[0] = rows;
                shape
            }
            None => self.shape.clone(),
        }
    }

    /// Entries of block `index` within the tensor's row-major values.
    pub fn block_range(&self, index: usize) -> Range<usize> {
        match self.block_rows {
            Some(block_rows) => {
                let row = self.row_entries();
                let start = index as u64 * block_rows;
                let end = (start + block_rows).min(self.shape[0]);
                (start * row) as usize..(end * row) as usize
            }
            None => 0..self.shape.iter().product::<u64>() as usize,
        }
    }

    /// Entries per block, in order (for splitting an output buffer).
    pub fn block_lengths(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.count()).map(|index| self.block_range(index).len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_tensors_and_scalars_are_one_block() {
        for shape in [vec![], vec![0], vec![10], vec![1 << 20], vec![4, 0, 9]] {
            let layout = BlockLayout::for_shape(&shape, DEFAULT_BLOCK_ENTRIES);
            assert_eq!(layout.count(), 1, "{shape:?}");
            assert_eq!(layout.block_rows(), None);
        }
    }

    #[test]
    fn big_tensors_are_cut_into_whole_rows() {
        let layout = BlockLayout::for_shape(&[25_000_000], DEFAULT_BLOCK_ENTRIES);
        assert_eq!(layout.count(), 24);
        assert_eq!(layout.block_range(23), 23 << 20..25_000_000);
        let layout = BlockLayout::for_shape(&[1000, 3000], 1 << 20);
        assert_eq!(layout.block_rows(), Some(349));
        assert_eq!(layout.count(), 3);
        assert_eq!(layout.block_shape(2), vec![302, 3000]);
        assert_eq!(layout.block_lengths().sum::<usize>(), 3_000_000);
        // Rows longer than a block: one row per block.
        let layout = BlockLayout::for_shape(&[3, 2_000_000], 1 << 20);
        assert_eq!((layout.block_rows(), layout.count()), (Some(1), 3));
        // A single row longer than a block cannot be cut along rows.
        assert_eq!(BlockLayout::for_shape(&[1, 5_000_000], 1 << 20).count(), 1);
    }

    #[test]
    fn blocks_tile_the_tensor_exactly() {
        let layout = BlockLayout::for_shape(&[10_007, 300], 65_536);
        let mut next = 0;
        for index in 0..layout.count() {
            let range = layout.block_range(index);
            assert_eq!(range.start, next);
            assert_eq!(
                range.len() as u64,
                layout.block_shape(index).iter().product::<u64>()
            );
            next = range.end;
        }
        assert_eq!(next, 10_007 * 300);
    }
}
