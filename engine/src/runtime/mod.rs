//! Runtimes: the task (shared by every mode), its asynchronous slots, the driver every
//! runtime feeds it through, and the local runner. The Kafka runtime joins them here.

pub mod driver;
pub mod executor;
pub mod inject;
pub mod local;
pub mod query;
pub mod slots;
pub mod state;
pub mod task;

pub use driver::{Driver, Patience, Tasks};
pub use local::{LocalOptions, RunError, RunSummary, run_local, run_local_on};
pub use state::{ChangelogWrite, TaskStore, memory_store};
pub use task::{Output, Spawn, Task, TaskOutput};
