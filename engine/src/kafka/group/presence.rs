//! An agent instance's presence in its group (`[agent]`): an `announce` (join) when it
//! starts, a `heartbeat` every interval, an `announce` (leave) when it stops, all on
//! `group.<g>.announce`, keyed by the agent id. A thread of its own sends them, so a busy or
//! restoring stream thread never looks dead; an instance killed outright stops heartbeating
//! and the roster expires it.

use std::sync::{Arc, Condvar, Mutex};

use kafclaw_agent::resources::AgentResources;
use kafclaw_operators::api::record::{format_time_ms, now_ms};
use kafclaw_operators::envelope::{AgentIdentity, AnnouncePayload, Envelope, EnvelopeType};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use crate::compiler::Compiled;
use crate::compiler::agent::Agent;
use crate::kafka::producer::{CALL_TIMEOUT, Logged};
use crate::kafka::settings::ClientSettings;
use crate::kafka::topics::ensure_topic;

/// The running presence; dropping it announces the leave and waits for it to be sent.
pub struct Presence {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Who `agent` is, as instance `instance`.
pub fn identity(agent: &Agent, instance: &str, model: &str, joined_at: &str) -> AgentIdentity {
    AgentIdentity {
        agent_id: format!("{}.{instance}", agent.name),
        agent_name: agent.name.clone(),
        soul_summary: agent.summary.clone(),
        capabilities: agent.skills.clone(),
        model: model.to_owned(),
        joined_at: joined_at.to_owned(),
        status: "active".into(),
        zone_id: agent.zone.clone().unwrap_or_default(),
        role: agent.role.clone(),
        ..AgentIdentity::default()
    }
}

/// Joins the group of `compiled` as instance `instance`, when it has an `[agent]` table.
pub(in crate::kafka) fn join(
    compiled: &Compiled,
    settings: &ClientSettings,
    instance: &str,
) -> Result<Option<Presence>, String> {
    let Some(agent) = &compiled.spec.agent else { return Ok(None) };
    let model = compiled.resources.models().first().map_or(String::new(), |m| m.config.model.clone());
    let who = identity(agent, instance, &model, &format_time_ms(now_ms()));
    let t = &compiled.spec.topology;
    Presence::start(settings, agent, who, t.partitions, t.replication).map(Some)
}

impl Presence {
    /// Creates the announce topic when missing, announces the join, and starts heartbeating.
    pub fn start(
        settings: &ClientSettings,
        agent: &Agent,
        identity: AgentIdentity,
        partitions: i32,
        replication: i32,
    ) -> Result<Self, String> {
        let topic = agent.announce_topic();
        ensure_topic(settings, &topic, partitions, replication, CALL_TIMEOUT).map_err(|e| e.to_string())?;
        let producer: ThreadedProducer<Logged> = settings
            .client_config(&[("enable.idempotence", "true"), ("client.id", &format!("{}-presence", identity.agent_id))])
            .create_with_context(Logged("presence"))
            .map_err(|e| format!("presence producer: {e}"))?;
        let send = move |kind: EnvelopeType, action: &str| {
            let payload = AnnouncePayload { action: action.into(), identity: identity.clone(), ..Default::default() };
            let envelope = Envelope::new(
                kind,
                identity.agent_id.clone(),
                identity.agent_id.clone(),
                format_time_ms(now_ms()),
                serde_json::to_value(payload).unwrap_or_default(),
            );
            let bytes = envelope.encode();
            if let Err((e, _)) = producer.send(BaseRecord::to(&topic).key(&identity.agent_id).payload(&bytes)) {
                tracing::warn!(error = %e, action, "announcing to the group failed");
            }
            if kind == EnvelopeType::Announce {
                let _ = producer.flush(CALL_TIMEOUT);
            }
        };
        send(EnvelopeType::Announce, "join");
        tracing::info!(group = %agent.group, interval_ms = agent.heartbeat.as_millis() as u64, "joined the group");
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let (s, every) = (stop.clone(), agent.heartbeat);
        let thread = std::thread::Builder::new()
            .name("kafclaw-presence".into())
            .spawn(move || {
                let (lock, wake) = &*s;
                let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    let (guard, timeout) = wake.wait_timeout(stopped, every).unwrap_or_else(|e| e.into_inner());
                    stopped = guard;
                    if *stopped {
                        break;
                    }
                    if timeout.timed_out() {
                        send(EnvelopeType::Heartbeat, "heartbeat");
                    }
                }
                send(EnvelopeType::Announce, "leave");
            })
            .map_err(|e| e.to_string())?;
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        tracing::info!("left the group");
    }
}
