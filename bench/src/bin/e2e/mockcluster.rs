//! librdkafka's in-process mock cluster, through its C API (`rdkafka::bindings`): the crate's
//! `MockCluster` cannot set the group coordinator's initial rebalance delay, whose default
//! (3 s, Kafka's `group.initial.rebalance.delay.ms`) would be most of a short run.
//!
//! The mock cluster serves every broker from one thread of this process (`rdk:mock`). It
//! keeps at most 5 MB per partition (older record batches are dropped), so the harness feeds
//! its input while the contender reads instead of preloading it (see `mockrun`).

use std::ffi::{CStr, CString};

use anyhow::{Result, bail};
use rdkafka::ClientConfig;
use rdkafka::bindings as rd;
use rdkafka::producer::{BaseProducer, Producer};

pub struct MockCluster {
    ptr: *mut rd::rd_kafka_mock_cluster_t,
    bootstrap: String,
    /// The handle the cluster belongs to (dropped after it).
    _owner: BaseProducer,
}

impl MockCluster {
    /// One broker, groups joined with no initial rebalance delay.
    pub fn new() -> Result<Self> {
        let owner: BaseProducer = ClientConfig::new().create()?;
        // SAFETY: the handle is valid and outlives the cluster (dropped after it, see Drop).
        let ptr = unsafe { rd::rd_kafka_mock_cluster_new(owner.client().native_ptr(), 1) };
        if ptr.is_null() {
            bail!("librdkafka could not create a mock cluster");
        }
        // SAFETY: `ptr` is the live cluster; the bootstrap string is copied before it goes.
        let bootstrap = unsafe {
            rd::rd_kafka_mock_group_initial_rebalance_delay_ms(ptr, 0);
            CStr::from_ptr(rd::rd_kafka_mock_cluster_bootstraps(ptr)).to_string_lossy().into_owned()
        };
        Ok(Self { ptr, bootstrap, _owner: owner })
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        let c = CString::new(name)?;
        // SAFETY: the cluster is live; librdkafka copies the name.
        let err = unsafe { rd::rd_kafka_mock_topic_create(self.ptr, c.as_ptr(), partitions, 1) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            bail!("mock cluster: create topic {name}: {err:?}");
        }
        Ok(())
    }
}

impl Drop for MockCluster {
    fn drop(&mut self) {
        // SAFETY: destroyed once, before the owning handle.
        unsafe { rd::rd_kafka_mock_cluster_destroy(self.ptr) };
    }
}

/// The mock cluster's thread, as librdkafka names it.
pub const THREAD: &str = "rdk:mock";
