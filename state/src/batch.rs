//! A batch of writes and changelog checkpoints that a backend applies atomically: the seal of
//! one committed epoch (docs/ARCHITECTURE.md, "State layout").

/// One write: a value, or a delete (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// Table.
    pub table: String,
    /// Partition.
    pub partition: u32,
    /// Key.
    pub key: Vec<u8>,
    /// New value, or `None` to delete.
    pub value: Option<Vec<u8>>,
}

/// Writes and checkpoints applied together, or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Writes, in order (a later write to the same key wins).
    pub writes: Vec<Write>,
    /// `(table, partition, next changelog offset)`: how far the table's changelog partition
    /// is reflected in the store once the batch is applied.
    pub checkpoints: Vec<(String, u32, i64)>,
}

impl Batch {
    /// Whether the batch does nothing.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.checkpoints.is_empty()
    }
}
