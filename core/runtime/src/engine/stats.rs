//! Sizes of the last message, per tensor and stream.

/// Sizes of one coded tensor in a message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TensorStats {
    /// Tensor name.
    pub name: String,
    /// Entries.
    pub entries: u64,
    /// True when sent raw under the `uncompressed` rule.
    pub raw: bool,
    /// Side info bytes (all blocks).
    pub side_info_bytes: u64,
    /// Per stream: (role name, symbols, bytes); a tensor cut into blocks lists
    /// each block's streams in turn.
    pub streams: Vec<(String, u64, u64)>,
}

/// Sizes of the last message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageStats {
    /// Whole message, bytes.
    pub bytes: u64,
    /// Header, tables and checksum (everything but the payload), bytes.
    pub overhead_bytes: u64,
    /// Per tensor.
    pub tensors: Vec<TensorStats>,
}

impl MessageStats {
    /// Bytes of all coded streams and raw tensors.
    pub fn payload_bytes(&self) -> u64 {
        self.tensors
            .iter()
            .flat_map(|t| t.streams.iter().map(|s| s.2))
            .sum()
    }

    /// Symbols in all streams.
    pub fn symbols(&self) -> u64 {
        self.tensors
            .iter()
            .flat_map(|t| t.streams.iter().map(|s| s.1))
            .sum()
    }
}
