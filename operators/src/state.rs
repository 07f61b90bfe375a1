//! What a stateful operator sees of state: tables of the task's partition, read through the
//! open epoch, written into it (and, in Kafka mode, to the table's changelog).

/// State of one task (one partition), by table.
pub trait StateAccess {
    /// Reads a key.
    fn get(&mut self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, String>;
    /// Writes a key.
    fn put(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<(), String>;
    /// Deletes a key.
    fn delete(&mut self, table: &str, key: &[u8]) -> Result<(), String>;
}

/// The state of a stateless context: every access is an error.
#[derive(Debug, Default)]
pub struct NoState;

impl StateAccess for NoState {
    fn get(&mut self, table: &str, _: &[u8]) -> Result<Option<Vec<u8>>, String> {
        Err(format!("no state table `{table}` here"))
    }

    fn put(&mut self, table: &str, _: &[u8], _: &[u8]) -> Result<(), String> {
        Err(format!("no state table `{table}` here"))
    }

    fn delete(&mut self, table: &str, _: &[u8]) -> Result<(), String> {
        Err(format!("no state table `{table}` here"))
    }
}
