//! The engine's local integration tests: one binary, no broker needed (matklad, "Delete Cargo
//! Integration Tests"). The CLI, the compiler's diagnostics, the shipped topologies, local runs
//! with a fake model endpoint, the golden replay, state failures, property tests.
//!
//! `cargo test -p kafclaw --test it` runs them all; `cargo test -p kafclaw --test it llm_local::`
//! one module. The tests against the broker are in `../kafka/`.

#[path = "../echo_model/mod.rs"]
mod echo_model;
#[path = "../effect_service/mod.rs"]
mod effect_service;
#[path = "../fake_openai/mod.rs"]
mod fake_openai;
#[path = "../otlp_receiver/mod.rs"]
mod otlp_receiver;

mod agent;
mod approve_plan;
mod bom;
mod chat_local;
mod cli;
mod conversation;
mod deploy;
mod diagnostics;
mod doctor;
mod effects;
mod embed_local;
mod fuzz_compiler;
mod input_ranks;
mod llm_local;
mod local_threads;
mod mcp;
mod memory_tool;
mod model_corpus;
mod numbers;
mod onboarding_local;
mod otlp_local;
mod parse_props;
mod replay_golden;
mod runtime;
mod schedules;
mod secrets_redacted;
mod skills_md;
mod state_failure;
mod state_ops;
mod topologies;
