//! `[[tests]]`: tests written in the topology file (input envelopes → expected outputs).

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

/// One test case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSpec {
    /// Name shown in the report.
    pub name: Spanned<String>,
    /// Records fed to sources, in order.
    pub inputs: Vec<TestInput>,
    /// Expected records per sink, in order. Every sink named here must receive exactly these
    /// records; each expected envelope is matched as a subset (fields it leaves out are not
    /// compared).
    #[serde(default)]
    pub outputs: Vec<TestOutput>,
    /// How many records must go to the dead-letter output (default 0).
    #[serde(default)]
    pub dead_letters: usize,
}

/// One input record.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestInput {
    /// The source that reads it.
    pub source: Spanned<String>,
    /// The envelope, as a TOML table.
    #[serde(default)]
    pub envelope: Option<Spanned<Value>>,
    /// Or the raw line, to test what happens to records that are not envelopes.
    #[serde(default)]
    pub raw: Option<Spanned<String>>,
}

/// One expected output record.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestOutput {
    /// The sink that must receive it.
    pub sink: Spanned<String>,
    /// The fields it must have.
    pub envelope: Spanned<Value>,
}
