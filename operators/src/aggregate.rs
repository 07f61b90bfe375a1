//! `aggregate`: running aggregates per key (count, sum, min, max, avg of a CEL value), kept in
//! a changelogged state table named after the operator.
//!
//! ```toml
//! [operators.spend]
//! type = "aggregate"
//! inputs = ["usage"]
//! by = 'sender_id'
//! value = 'payload.tokens'
//! functions = ["count", "sum", "max"]
//! ttl = "7days"
//! ```
//! Each record passes on with `into` (default `payload.aggregate`) set to
//! `{"key": …, "count": …, "sum": …}`: the key's aggregates including this record. A record
//! whose `value` is not a number is dead-lettered and changes nothing.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use toml::Spanned;

use crate::expr::Expr;
use crate::filter::compile_expr;
use crate::keyed::{Errors, eval_key, parse_optional_duration_ms};
use crate::operator::{ConfigError, Emit, Failure, SyncOperator, emit_set};
use crate::path::FieldPath;
use crate::record::Record;
use crate::state::{StateAccess, TableSpec};

/// One aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Function {
    /// Number of records.
    Count,
    /// Sum of the values.
    Sum,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Mean of the values.
    Avg,
}

impl Function {
    /// The output field name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Sum => "sum",
            Self::Min => "min",
            Self::Max => "max",
            Self::Avg => "avg",
        }
    }
}

/// The stored state of one key (or window): enough for every function. Stored as JSON text so
/// `kafclaw state get` shows it as it is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accumulator {
    /// Records seen.
    pub count: u64,
    /// Sum of their values.
    pub sum: f64,
    /// Smallest value (`null` before the first).
    pub min: Option<f64>,
    /// Largest value (`null` before the first).
    pub max: Option<f64>,
}

impl Default for Accumulator {
    fn default() -> Self {
        Self { count: 0, sum: 0.0, min: None, max: None }
    }
}

impl Accumulator {
    /// Adds one record with `value` (`None`: counted only).
    pub fn add(&mut self, value: Option<f64>) {
        self.count += 1;
        if let Some(v) = value {
            self.sum += v;
            self.min = Some(self.min.map_or(v, |m| m.min(v)));
            self.max = Some(self.max.map_or(v, |m| m.max(v)));
        }
    }

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an accumulator serialises")
    }

    /// Reads the stored form.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not an aggregate accumulator: {e}"))
    }

    /// The requested functions' values as a JSON object (`key` first when given).
    pub fn report(&self, functions: &[Function], key: Option<&str>) -> Map<String, Value> {
        let mut out = Map::new();
        if let Some(k) = key {
            out.insert("key".into(), Value::from(k));
        }
        for f in functions {
            let v = match f {
                Function::Count => Value::from(self.count),
                Function::Sum => float(self.sum),
                Function::Min => self.min.map_or(Value::Null, float),
                Function::Max => self.max.map_or(Value::Null, float),
                Function::Avg => {
                    if self.count == 0 {
                        Value::Null
                    } else {
                        float(self.sum / self.count as f64)
                    }
                }
            };
            out.insert(f.name().into(), v);
        }
        out
    }
}

/// A float as JSON; whole numbers print without a fraction so token sums read as integers.
fn float(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 { Value::from(v as i64) } else { Value::from(v) }
}

/// The shared options of `aggregate` and `window`: what to aggregate.
#[derive(Debug, Clone)]
pub struct AggregateSpec {
    /// The value expression (`None`: count only).
    pub value: Option<Expr>,
    /// Functions to report.
    pub functions: Vec<Function>,
}

impl AggregateSpec {
    /// Compiles `value` and checks that the functions need no value when there is none.
    pub fn build(
        value: &Option<Spanned<String>>,
        functions: &Option<Spanned<Vec<Function>>>,
        errors: &mut Errors,
    ) -> Option<Self> {
        let expr = match value {
            Some(v) => Some(errors.take(compile_expr(v))?),
            None => None,
        };
        let fns = match functions {
            Some(f) => f.get_ref().clone(),
            None if expr.is_some() => vec![Function::Count, Function::Sum, Function::Min, Function::Max, Function::Avg],
            None => vec![Function::Count],
        };
        if let Some(f) = functions {
            if f.get_ref().is_empty() {
                errors.push(ConfigError::at(f.span(), "`functions` is empty"));
                return None;
            }
            if expr.is_none() && fns.iter().any(|f| *f != Function::Count) {
                errors.push(
                    ConfigError::at(f.span(), "sum, min, max and avg need a `value`")
                        .with_hint(Some("add `value = 'payload.<field>'`".into())),
                );
                return None;
            }
        }
        Some(Self { value: expr, functions: fns })
    }

    /// The record's value, when the spec has one.
    pub fn value_of(&self, record: &Record) -> Result<Option<f64>, String> {
        let Some(e) = &self.value else { return Ok(None) };
        match e.eval_json(record)? {
            Value::Number(n) => n.as_f64().map(Some).ok_or_else(|| format!("`{}` gave {n}", e.source())),
            other => Err(format!("`{}` gave {other}, not a number", e.source())),
        }
    }
}

/// Config half of `aggregate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// CEL expression giving the key to aggregate by (a string is used as is, any other value
    /// as its JSON text; `null` is an error).
    pub by: Spanned<String>,
    /// CEL expression giving the number to aggregate; without it only `count` is available.
    #[serde(default)]
    pub value: Option<Spanned<String>>,
    /// Functions to report: `count`, `sum`, `min`, `max`, `avg` (default: all of them with a
    /// `value`, `count` without).
    #[serde(default)]
    pub functions: Option<Spanned<Vec<Function>>>,
    /// Field the aggregates object is written to.
    #[serde(default = "default_into")]
    pub into: Spanned<String>,
    /// Forget a key this long (event time) after its last record, e.g. `"7days"`; default:
    /// never.
    #[serde(default)]
    pub ttl: Option<Spanned<String>>,
}

fn default_into() -> Spanned<String> {
    Spanned::new(0..0, "payload.aggregate".to_owned())
}

impl AggregateConfig {
    /// Builds the runtime half; its state table is `table`.
    pub fn build(&self, table: &str) -> Result<Aggregate, Vec<ConfigError>> {
        let mut errors = Errors::default();
        let by = errors.take(compile_expr(&self.by));
        let spec = AggregateSpec::build(&self.value, &self.functions, &mut errors);
        let into = errors.take_one(FieldPath::parse_spanned(&self.into));
        let ttl = errors.take(parse_optional_duration_ms(&self.ttl));
        errors.finish(|| Some(Aggregate { by: by?, spec: spec?, into: into?, table: TableSpec::expiring(table, ttl?) }))
    }
}

/// Runtime half of `aggregate`.
#[derive(Debug, Clone)]
pub struct Aggregate {
    by: Expr,
    spec: AggregateSpec,
    into: FieldPath,
    table: TableSpec,
}

impl Aggregate {
    fn update(&self, record: &Record, state: &mut dyn StateAccess) -> Result<Map<String, Value>, String> {
        let key = eval_key(&self.by, record)?.ok_or_else(|| format!("`{}` gave null: no key", self.by.source()))?;
        let value = self.spec.value_of(record)?;
        let table = &self.table.name;
        let mut acc = match state.get(table, key.as_bytes())? {
            Some(bytes) => Accumulator::decode(&bytes).map_err(|m| format!("state `{table}` for `{key}`: {m}"))?,
            None => Accumulator::default(),
        };
        acc.add(value);
        state.put(table, key.as_bytes(), &acc.encode())?;
        Ok(acc.report(&self.spec.functions, Some(&key)))
    }
}

impl SyncOperator for Aggregate {
    fn process(&mut self, record: Record, state: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Failure> {
        let report = match self.update(&record, state) {
            Ok(r) => r,
            Err(m) => return Err(Failure::new(record, m)),
        };
        emit_set(out, 0, record, &self.into, Value::Object(report))
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![self.table.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn finite() -> impl Strategy<Value = f64> {
        prop_oneof![any::<f64>().prop_filter("finite", |v| v.is_finite()), -1e6..1e6f64, Just(0.0), Just(-0.0)]
    }

    proptest! {
        #[test]
        fn accumulators_round_trip_exactly(values in proptest::collection::vec(proptest::option::of(finite()), 0..20)) {
            let mut acc = Accumulator::default();
            for v in &values {
                acc.add(*v);
            }
            let back = Accumulator::decode(&acc.encode()).unwrap();
            prop_assert_eq!(back.count, acc.count);
            prop_assert_eq!(back.sum.to_bits(), acc.sum.to_bits());
            prop_assert_eq!(back.min.map(f64::to_bits), acc.min.map(f64::to_bits));
            prop_assert_eq!(back.max.map(f64::to_bits), acc.max.map(f64::to_bits));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Accumulator::decode(&bytes);
        }
    }

    #[test]
    fn reports_what_was_asked() {
        let mut acc = Accumulator::default();
        acc.add(Some(2.0));
        acc.add(Some(5.0));
        let r = acc.report(&[Function::Count, Function::Sum, Function::Avg, Function::Min], Some("k"));
        assert_eq!(Value::Object(r), serde_json::json!({"key": "k", "count": 2, "sum": 7, "avg": 3.5, "min": 2}));
        assert_eq!(
            Value::Object(Accumulator::default().report(&[Function::Max], None)),
            serde_json::json!({"max": null})
        );
    }
}
