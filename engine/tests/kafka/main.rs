//! The engine's integration tests against the real broker (`KAFCLAW_TEST_BROKERS`, default
//! 127.0.0.1:9092; `scripts/test` starts one) and the real `kafclaw` binary: one binary
//! (matklad, "Delete Cargo Integration Tests"). Every test uses unique topic and group names,
//! so they share the broker and run in parallel like any others.
//!
//! `cargo test -p kafclaw --test kafka` runs them all; `cargo test -p kafclaw --test kafka
//! faults::` one module. The tests that need no broker are in `../it/`.

#[path = "../echo_model/mod.rs"]
mod echo_model;
#[path = "../effect_service/mod.rs"]
mod effect_service;
#[path = "../fake_openai/mod.rs"]
mod fake_openai;
#[path = "../otlp_receiver/mod.rs"]
mod otlp_receiver;
#[path = "../support/mod.rs"]
mod support;

mod a2a;
mod a2a_kafka;
mod approvals;
mod chaos;
mod chat;
mod cli;
mod console;
mod conversation;
mod delegate;
mod delegate_deadlines;
mod doctor;
mod duplicate_instance;
mod effects;
mod faults;
mod gateway;
mod group;
mod llm;
mod mcp;
mod mcp_server;
mod memory;
mod metrics;
mod onboarding;
mod otlp;
mod pipeline;
mod protocol;
mod python_agent;
mod replay;
mod restore;
mod sasl;
mod schedules;
mod secrets;
mod skills;
mod skills_md;
mod state;
mod tap;
mod threads;
mod timeline;
