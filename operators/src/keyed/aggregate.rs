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

use std::cmp::Ordering;

use bigdecimal::BigDecimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};
use toml::Spanned;

use crate::api::config::ConfigError;
use crate::api::config::{Errors, parse_optional_duration_ms};
use crate::api::kind::{Built, Kind};
use crate::api::operator::{Cause, Emit, Failure, Port, SyncOperator};
use crate::api::record::Record;
use crate::api::resources::Resources;
use crate::api::state::{StateAccess, StateError, TableSpec};
use crate::lang::exact;
use crate::lang::expr::Expr;
use crate::lang::expr::compile_expr;
use crate::lang::key::{eval_state_key, shown_key};
use crate::lang::path::FieldPath;

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
/// `kafclaw state get` shows it as it is; its numbers are exact decimals (a state written
/// with f64 sums reads as the same numbers).
///
/// Sums are exact decimal sums of the values as written (`0.1 + 0.2` is `0.3`; integers of
/// any width); `min` and `max` are the values as they came; `avg` is the exact sum divided by
/// the count, rounded to 34 significant digits (IEEE decimal128's precision). A value with
/// more than 1024 digits before or after its decimal point (`1e4096`, `1e-2000`) is refused
/// when it comes ([`exact::summable`]), so no key's sum grows beyond what the next value can
/// be added to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accumulator {
    /// Records seen.
    pub count: u64,
    /// Sum of their values.
    pub sum: Number,
    /// Smallest value (`null` before the first).
    pub min: Option<Number>,
    /// Largest value (`null` before the first).
    pub max: Option<Number>,
}

impl Default for Accumulator {
    fn default() -> Self {
        Self { count: 0, sum: Number::from(0), min: None, max: None }
    }
}

/// Significant digits of an average.
const AVG_DIGITS: u64 = 34;

/// A stored number (sum, min, max) as an exact decimal.
fn stored(n: &Number) -> Result<BigDecimal, String> {
    exact::decimal(n)
        .ok_or_else(|| format!("the stored {} is too far out of range to aggregate exactly", exact::short(n)))
}

impl Accumulator {
    /// Adds one record with `value` (`None`: counted only). Errors (nothing changed): the
    /// value is beyond what sums take ([`exact::summable`]: refused when it comes, so a key's
    /// sum always takes the next value), or a stored number is (a state from an older build).
    pub fn add(&mut self, value: Option<&Number>) -> Result<(), String> {
        if let Some(v) = value {
            let d = exact::summable(v)?;
            let sum = stored(&self.sum)? + &d;
            let keep = |current: &Option<Number>, want: Ordering| -> Result<bool, String> {
                Ok(match current {
                    None => true,
                    Some(c) => d.cmp(&stored(c)?) == want,
                })
            };
            let (min, max) = (keep(&self.min, Ordering::Less)?, keep(&self.max, Ordering::Greater)?);
            // The sum of one value is that value as written.
            self.sum = if self.min.is_none() { v.clone() } else { exact::to_number(&sum) };
            if min {
                self.min = Some(v.clone());
            }
            if max {
                self.max = Some(v.clone());
            }
        }
        self.count += 1;
        Ok(())
    }

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an accumulator serialises")
    }

    /// Reads the stored form.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not an aggregate accumulator: {e}"))
    }

    /// The requested functions' values as a JSON object (`key` first when given). Errors:
    /// the stored sum is out of the exact range (only when `avg` is asked for).
    pub fn report(&self, functions: &[Function], key: Option<&str>) -> Result<Map<String, Value>, String> {
        let mut out = Map::new();
        if let Some(k) = key {
            out.insert("key".into(), Value::from(k));
        }
        for f in functions {
            let v = match f {
                Function::Count => Value::from(self.count),
                Function::Sum => Value::Number(self.sum.clone()),
                Function::Min => self.min.clone().map_or(Value::Null, Value::Number),
                Function::Max => self.max.clone().map_or(Value::Null, Value::Number),
                Function::Avg if self.count == 0 => Value::Null,
                Function::Avg => {
                    let avg = stored(&self.sum)? / BigDecimal::from(self.count);
                    Value::Number(exact::to_number(&avg.with_prec(AVG_DIGITS).normalized()))
                }
            };
            out.insert(f.name().into(), v);
        }
        Ok(out)
    }
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

    /// The record's value (exact, as the expression gave it), when the spec has one.
    pub fn value_of(&self, record: &Record) -> Result<Option<Number>, String> {
        let Some(e) = &self.value else { return Ok(None) };
        match e.eval_json(record)? {
            Value::Number(n) => Ok(Some(n)),
            other => Err(format!("`{}` gave {}, not a number", e.source(), exact::short_text(&other.to_string()))),
        }
    }
}

/// Config half of `aggregate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// CEL expression giving the key to aggregate by (numbers by value:
    /// [`crate::lang::key::state_key`]; `null` is an error).
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
    /// The state table of node `node`: named after it, entries expiring after `ttl` (an
    /// invalid `ttl`, reported by `check`, reads as none).
    fn state_table(&self, node: &str) -> TableSpec {
        TableSpec::expiring(node, parse_optional_duration_ms(&self.ttl).ok().flatten())
    }
}

impl Kind for AggregateConfig {
    fn tables(&self, node: &str) -> Vec<TableSpec> {
        vec![self.state_table(node)]
    }

    /// Builds the runtime half; its state table is named after the node.
    fn build(&self, node: &str, _: &Resources) -> Result<Built, Vec<ConfigError>> {
        let mut errors = Errors::default();
        let by = errors.take(compile_expr(&self.by));
        let spec = AggregateSpec::build(&self.value, &self.functions, &mut errors);
        let into = errors.take_one(FieldPath::parse_spanned(&self.into));
        errors.take(parse_optional_duration_ms(&self.ttl));
        errors.finish(|| {
            Some(Built::Sync(Box::new(Aggregate { by: by?, spec: spec?, into: into?, table: self.state_table(node) })))
        })
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
    /// The key's new accumulator and its report; nothing is written yet.
    fn update(
        &self,
        record: &Record,
        state: &mut dyn StateAccess,
    ) -> Result<(String, Accumulator, Map<String, Value>), Cause> {
        let key =
            eval_state_key(&self.by, record)?.ok_or_else(|| format!("`{}` gave null: no key", self.by.source()))?;
        let value = self.spec.value_of(record)?;
        let table = &self.table.name;
        let mut acc = match state.get(table, key.as_bytes())? {
            // A stored value that does not decode is the store's fault, not the record's.
            Some(bytes) => Accumulator::decode(&bytes).map_err(|m| {
                StateError::new(table, format!("corrupt value for `{}`: {m}", exact::short_text(&shown_key(&key))))
            })?,
            None => Accumulator::default(),
        };
        acc.add(value.as_ref())?;
        let report = acc.report(&self.spec.functions, Some(&shown_key(&key)))?;
        Ok((key, acc, report))
    }
}

impl SyncOperator for Aggregate {
    fn process(&mut self, record: Record, state: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Failure> {
        let (key, acc, report) = match self.update(&record, state) {
            Ok(r) => r,
            Err(m) => return Err(Failure::because(record, m)),
        };
        // The output first: a record that cannot carry its report is dead-lettered (a failed
        // set leaves it as it came) and changes no state.
        let mut record = record;
        if let Err(m) = self.into.set(&mut record.envelope, Value::Object(report)) {
            return Err(Failure::new(record, m));
        }
        if let Err(e) = state.put(&self.table.name, key.as_bytes(), &acc.encode()) {
            return Err(Failure::because(record, e));
        }
        out.emit(Port::DEFAULT, record);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn n(text: &str) -> Number {
        Number::from_str(text).unwrap()
    }

    fn finite() -> impl Strategy<Value = f64> {
        prop_oneof![any::<f64>().prop_filter("finite", |v| v.is_finite()), -1e6..1e6f64, Just(0.0), Just(-0.0)]
    }

    proptest! {
        #[test]
        fn accumulators_round_trip_exactly(values in proptest::collection::vec(proptest::option::of(finite()), 0..20)) {
            let mut acc = Accumulator::default();
            for v in &values {
                acc.add(v.and_then(Number::from_f64).as_ref()).unwrap();
            }
            prop_assert_eq!(Accumulator::decode(&acc.encode()).unwrap(), acc);
        }

        #[test]
        fn integer_sums_are_exact(values in proptest::collection::vec(any::<i64>(), 0..20)) {
            let mut acc = Accumulator::default();
            for v in &values {
                acc.add(Some(&Number::from(*v))).unwrap();
            }
            let want: i128 = values.iter().map(|v| i128::from(*v)).sum();
            prop_assert_eq!(acc.sum.as_str(), want.to_string());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Accumulator::decode(&bytes);
        }
    }

    #[test]
    fn reports_what_was_asked() {
        let mut acc = Accumulator::default();
        acc.add(Some(&n("2"))).unwrap();
        acc.add(Some(&n("5"))).unwrap();
        let r = acc.report(&[Function::Count, Function::Sum, Function::Avg, Function::Min], Some("k")).unwrap();
        assert_eq!(Value::Object(r), serde_json::json!({"key": "k", "count": 2, "sum": 7, "avg": 3.5, "min": 2}));
        assert_eq!(
            Value::Object(Accumulator::default().report(&[Function::Max], None).unwrap()),
            serde_json::json!({"max": null})
        );
    }

    #[test]
    fn sums_min_and_max_are_exact_and_keep_the_values_as_written() {
        let all = [Function::Count, Function::Sum, Function::Min, Function::Max, Function::Avg];
        let report = |values: &[&str]| {
            let mut acc = Accumulator::default();
            for v in values {
                acc.add(Some(&n(v))).unwrap();
            }
            let back = Accumulator::decode(&acc.encode()).unwrap();
            assert_eq!(back, acc);
            serde_json::to_string(&Value::Object(acc.report(&all, None).unwrap())).unwrap()
        };
        assert_eq!(
            report(&["99999999999999999999", "1"]),
            r#"{"count":2,"sum":100000000000000000000,"min":1,"max":99999999999999999999,"avg":50000000000000000000}"#
        );
        assert_eq!(
            report(&["-99999999999999999999", "18446744073709551616"]),
            r#"{"count":2,"sum":-81553255926290448383,"min":-99999999999999999999,"max":18446744073709551616,"avg":-40776627963145224191.5}"#
        );
        assert_eq!(report(&["0.1", "0.2"]), r#"{"count":2,"sum":0.3,"min":0.1,"max":0.2,"avg":0.15}"#);
        assert_eq!(
            report(&["0.1000000000000000055511151231257827", "123456789012345678901234567890.123456789"]),
            r#"{"count":2,"sum":123456789012345678901234567890.2234567890000000055511151231257827,"min":0.1000000000000000055511151231257827,"max":123456789012345678901234567890.123456789,"avg":61728394506172839450617283945.11173}"#
        );
        let huge: Value = serde_json::from_str(&report(&["1e400", "1"])).unwrap();
        assert_eq!(huge["sum"].to_string(), format!("1{}1", "0".repeat(399)));
        assert_eq!(huge["max"].to_string(), "1e+400");
        assert!(exact::json_eq(&huge["avg"], &serde_json::from_str::<Value>("5e399").unwrap()), "{huge}");
        assert_eq!(
            report(&["1.0", "1e2", "-0"]),
            r#"{"count":3,"sum":101.0,"min":-0,"max":1e+2,"avg":33.66666666666666666666666666666667}"#
        );
        let mut acc = Accumulator::default();
        assert!(acc.add(Some(&n("1e5000"))).unwrap_err().contains("beyond what is summed"));
        assert_eq!(acc, Accumulator::default());
    }

    #[test]
    fn accumulators_stored_with_f64_sums_still_read() {
        let acc = Accumulator::decode(br#"{"count":2,"sum":7.0,"min":2.0,"max":5.0}"#).unwrap();
        assert_eq!(acc.sum.as_str(), "7.0");
        assert_eq!(acc.min.as_ref().map(Number::as_str), Some("2.0"));
    }
}
