//! The agent group on Kafka: an instance's presence in its group ([`presence`]), the group's
//! topics and live members ([`members`]), the bus of `delegate` tools ([`bus`]), the gateway's
//! feed of answers ([`gateway_feed`]), the timeline's feed ([`timeline_feed`]), the skills that have
//! topics ([`skill_topics`]), the export of journal tables ([`journal`]) and each instance's status
//! for the console ([`status`]).

pub mod bus;
pub mod gateway_feed;
pub mod journal;
pub mod members;
pub mod presence;
pub mod skill_topics;
pub mod status;
pub mod timeline_feed;

pub use members::{create_group_topics, group_topics, live_members, roster_topic, timeline_topics};
