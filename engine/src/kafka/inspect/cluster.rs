//! The metadata handshake and topic descriptions.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::{CALL_TIMEOUT, Capture, ClientSettings, InspectError, block_on};

/// What a metadata request answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterInfo {
    /// The brokers: id and `host:port`.
    pub brokers: Vec<(i32, String)>,
    /// The topics and their partition counts (topics with an error left out).
    pub topics: BTreeMap<String, usize>,
}

/// The outcome of connecting with the runtime's settings: the metadata, or why not, with
/// everything librdkafka reported meanwhile (TLS and SASL failures show only there).
#[derive(Debug, Clone)]
pub struct Handshake {
    /// The metadata, or the error of the client's creation or of the request.
    pub result: Result<ClusterInfo, String>,
    /// librdkafka's errors and warnings, oldest first.
    pub reasons: Vec<String>,
}

/// How [`Handshake::result`] starts when librdkafka refused the settings (no connection tried).
pub const REFUSED: &str = "librdkafka refused the settings";

/// Connects with `settings` (exactly the runtime's properties) and asks for the cluster's
/// metadata, waiting at most `timeout`.
pub fn handshake(settings: &ClientSettings, timeout: Duration) -> Handshake {
    let capture = Capture::default();
    // A connection setup (TCP, TLS, SASL) that stalls is reported, with the state it stalled
    // in, before the metadata request gives up (a user's own value wins).
    let setup_ms = (timeout.as_millis() * 4 / 5).max(1000).to_string();
    let config = settings.client_config_with(&[("socket.connection.setup.timeout.ms", setup_ms.as_str())], &[]);
    let consumer: BaseConsumer<Capture> = match config.create_with_context(capture.clone()) {
        Ok(c) => c,
        Err(e) => return Handshake { result: Err(format!("{REFUSED}: {e}")), reasons: Vec::new() },
    };
    let result = consumer.fetch_metadata(None, timeout).map_err(|e| e.to_string()).map(|md| ClusterInfo {
        brokers: md.brokers().iter().map(|b| (b.id(), format!("{}:{}", b.host(), b.port()))).collect(),
        topics: md
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| (t.name().to_owned(), t.partitions().len()))
            .collect(),
    });
    // librdkafka hands its logs and errors over as events of the consumer's queue: poll it
    // so the context sees them (a failed handshake's reasons are there).
    let drain_until = std::time::Instant::now() + Duration::from_millis(if result.is_ok() { 0 } else { 500 });
    loop {
        let _ = consumer.poll(Duration::from_millis(50));
        if std::time::Instant::now() >= drain_until {
            break;
        }
    }
    Handshake { result, reasons: capture.reasons() }
}

/// The partition count of each of `topics` (`None`: missing), from one metadata request.
pub fn partition_counts(settings: &ClientSettings, topics: &[&str]) -> Result<Vec<Option<usize>>, InspectError> {
    crate::kafka::topics::partition_counts(settings, topics, CALL_TIMEOUT)
        .map_err(|e| InspectError::Failed(e.to_string()))
}

/// The `cleanup.policy` of each topic as DescribeConfigs reports it: `Ok(policy)` per topic
/// (`None` when the broker lists no such entry), `Err` per topic the broker refused, or one
/// `Err` for the whole request (a broker without DescribeConfigs).
pub fn cleanup_policies(
    settings: &ClientSettings,
    topics: &[&str],
) -> Result<Vec<Result<Option<String>, String>>, InspectError> {
    if topics.is_empty() {
        return Ok(Vec::new());
    }
    let admin: AdminClient<Capture> = settings.client_config(&[]).create_with_context(Capture::default())?;
    let specs: Vec<ResourceSpecifier<'_>> = topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let opts = AdminOptions::new().request_timeout(Some(CALL_TIMEOUT));
    let results = block_on(admin.describe_configs(&specs, &opts))??;
    Ok(results
        .into_iter()
        .map(|r| match r {
            Ok(resource) => Ok(resource.get("cleanup.policy").and_then(|e| e.value.clone())),
            Err(code) => Err(code.to_string()),
        })
        .collect())
}

/// The values of `keys` in `topic`'s configuration as DescribeConfigs reports it (`None`: the
/// broker lists no such entry).
pub fn topic_configs(
    settings: &ClientSettings,
    topic: &str,
    keys: &[&str],
) -> Result<Vec<Option<String>>, InspectError> {
    let admin: AdminClient<Capture> = settings.client_config(&[]).create_with_context(Capture::default())?;
    let opts = AdminOptions::new().request_timeout(Some(CALL_TIMEOUT));
    let results = block_on(admin.describe_configs(&[ResourceSpecifier::Topic(topic)], &opts))??;
    match results.into_iter().next() {
        Some(Ok(resource)) => Ok(keys.iter().map(|k| resource.get(k).and_then(|e| e.value.clone())).collect()),
        Some(Err(code)) => Err(InspectError::Failed(format!("describing `{topic}`: {code}"))),
        None => Err(InspectError::Failed(format!("describing `{topic}`: no answer"))),
    }
}
