//! Payload numbers survive every operator exactly: integers of any width, decimals as
//! written (an exponent gains its sign: `1e2` is written `1e+2`, the same number).

use kafclaw_operators::Envelope;
use kafclaw_operators::api::kind::{Built, Kind};
use kafclaw_operators::api::operator::{Emit, SyncOperator};
use kafclaw_operators::api::record::Record;
use kafclaw_operators::api::resources::Resources;
use kafclaw_operators::keyed::aggregate::AggregateConfig;
use kafclaw_operators::keyed::count::CountConfig;
use kafclaw_operators::keyed::join::JoinConfig;
use kafclaw_operators::keyed::window::WindowConfig;
use kafclaw_operators::stream::map::MapConfig;
use kafclaw_operators::testing::Tables;

/// Each number as read, and as serde_json writes it back.
const NUMBERS: [(&str, &str); 12] = [
    ("99999999999999999999", "99999999999999999999"),
    ("-99999999999999999999", "-99999999999999999999"),
    ("18446744073709551616", "18446744073709551616"),
    ("1234567890123456789012345", "1234567890123456789012345"),
    ("1e400", "1e+400"),
    ("1.0", "1.0"),
    ("1e2", "1e+2"),
    ("-0", "-0"),
    ("0.1", "0.1"),
    ("1.50", "1.50"),
    ("123456789012345678901234567890.123456789", "123456789012345678901234567890.123456789"),
    ("0.1000000000000000055511151231257827", "0.1000000000000000055511151231257827"),
];

fn record(payload: &str) -> Record {
    let line = format!(
        r#"{{"type":"request","correlation_id":"c","sender_id":"s","timestamp":"2026-11-24T00:00:00Z","payload":{payload}}}"#
    );
    Record::detached(Envelope::decode(line.as_bytes()).unwrap())
}

/// Runs one record through `op`; the outputs' payloads as written.
fn run(
    op: &mut dyn SyncOperator,
    state: &mut Tables,
    input: Option<&str>,
    payload: &str,
) -> Result<Vec<String>, String> {
    let mut out = Emit::default();
    let r = record(payload);
    match input {
        Some(i) => op.process_from(i, r, state, &mut out),
        None => op.process(r, state, &mut out),
    }
    .map_err(|f| f.message())?;
    Ok(out.drain().map(|(_, r)| serde_json::to_string(&r.envelope.payload).unwrap()).collect())
}

fn map(config: &str) -> Box<dyn SyncOperator> {
    build(&toml::from_str::<MapConfig>(config).unwrap(), "map")
}

/// Builds `config`'s synchronous operator as node `node`.
fn build(config: &impl Kind, node: &str) -> Box<dyn SyncOperator> {
    match config.build(node, &Resources::default()) {
        Ok(Built::Sync(op)) => op,
        other => panic!("not a synchronous operator: {other:?}"),
    }
}

#[test]
fn map_setting_another_field_writes_every_number_as_read() {
    let mut op = map(r#"set = { "payload.seen" = 'true' }"#);
    for (n, written) in NUMBERS {
        let out = run(&mut *op, &mut Tables::default(), None, &format!(r#"{{"n":{n},"list":[{n}],"o":{{"n":{n}}}}}"#));
        let want = format!(r#"{{"n":{written},"list":[{written}],"o":{{"n":{written}}},"seen":true}}"#);
        assert_eq!(out.unwrap(), [want], "{n}");
    }
}

#[test]
fn map_copying_through_cel_and_rendering_keeps_every_number() {
    let mut op = map(r#"
        set = { "payload.copy" = 'payload.n', "payload.nested" = '[payload.n, {"v": payload.o.n}]', "payload.whole" = 'payload.o', "payload.chosen" = 'has(payload.n) ? payload.n : null' }
        render = { "payload.text" = "{{ payload.n }}|{{ payload.o.n }}" }
        "#);
    for (n, w) in NUMBERS {
        let out = run(&mut *op, &mut Tables::default(), None, &format!(r#"{{"n":{n},"o":{{"n":{n}}}}}"#)).unwrap();
        let want = format!(
            r#"{{"n":{w},"o":{{"n":{w}}},"chosen":{w},"copy":{w},"nested":[{w},{{"v":{w}}}],"whole":{{"n":{w}}},"text":"{w}|{w}"}}"#
        );
        assert_eq!(out, [want], "{n}");
    }
}

#[test]
fn arithmetic_works_where_cel_holds_the_number_and_is_refused_where_it_cannot() {
    let mut op = map(r#"set = { "payload.next" = 'payload.n + 1' }"#);
    let out = run(&mut *op, &mut Tables::default(), None, r#"{"n":9223372036854775806}"#).unwrap();
    assert_eq!(out, [r#"{"n":9223372036854775806,"next":9223372036854775807}"#]);
    for big in ["99999999999999999999", "1e400", "-99999999999999999999"] {
        let err = run(&mut *op, &mut Tables::default(), None, &format!(r#"{{"n":{big}}}"#)).unwrap_err();
        assert!(err.contains("beyond what CEL") && err.contains(&big.replace("e4", "e+4")), "{err}");
    }
    let mut op = map(r#"set = { "payload.double" = 'payload.d * 2.0' }"#);
    let out = run(&mut *op, &mut Tables::default(), None, r#"{"d":1.50}"#).unwrap();
    assert_eq!(out, [r#"{"d":1.50,"double":3.0}"#]);
    // Two spellings of one f64 handed back together: refused, not guessed.
    let mut op = map(r#"set = { "payload.both" = '[payload.a, payload.b]' }"#);
    let err = run(&mut *op, &mut Tables::default(), None, r#"{"a":1.5,"b":1.50}"#).unwrap_err();
    assert!(err.contains("cannot tell"), "{err}");
    // Two different 25-digit ids are different in CEL too.
    let mut op =
        map(r#"set = { "payload.same" = 'payload.a == payload.b', "payload.self" = 'payload.a == payload.a' }"#);
    let out =
        run(&mut *op, &mut Tables::default(), None, r#"{"a":1234567890123456789012345,"b":1234567890123456789012346}"#);
    assert!(out.unwrap()[0].ends_with(r#""same":false,"self":true}"#));
}

#[test]
fn count_keys_by_exact_numbers() {
    let mut op = build(&toml::from_str::<CountConfig>("by = 'payload.id'").unwrap(), "per-id");
    let mut state = Tables::default();
    let a = r#"{"id":1234567890123456789012345}"#;
    let b = r#"{"id":1234567890123456789012346}"#;
    assert_eq!(
        run(&mut *op, &mut state, None, a).unwrap()[0],
        r#"{"id":1234567890123456789012345,"count":1,"count_key":"1234567890123456789012345"}"#
    );
    assert!(run(&mut *op, &mut state, None, b).unwrap()[0].contains(r#""count":1,"#));
    assert!(run(&mut *op, &mut state, None, a).unwrap()[0].contains(r#""count":2,"#));
}

#[test]
fn aggregate_sums_exactly_and_keeps_min_and_max_as_written() {
    let config = "by = 'payload.k'\nvalue = 'payload.n'\nfunctions = ['count', 'sum', 'min', 'max']";
    let mut op = build(&toml::from_str::<AggregateConfig>(config).unwrap(), "agg");
    let mut state = Tables::default();
    let mut last = String::new();
    for n in ["99999999999999999999", "0.1000000000000000055511151231257827", "-0", "1e2"] {
        last = run(&mut *op, &mut state, None, &format!(r#"{{"k":"a","n":{n}}}"#)).unwrap().remove(0);
    }
    assert!(
        last.ends_with(r#""aggregate":{"key":"a","count":4,"sum":100000000000000000099.1000000000000000055511151231257827,"min":-0,"max":99999999999999999999}}"#),
        "{last}"
    );
    let huge = run(&mut *op, &mut Tables::default(), None, r#"{"k":"b","n":1e400}"#).unwrap().remove(0);
    assert!(huge.contains(r#""sum":1e+400,"min":1e+400"#), "{huge}");
}

#[test]
fn window_sums_exactly() {
    let config = "by = 'payload.k'\nvalue = 'payload.n'\nfunctions = ['sum', 'max']\nsize = '1m'\nemit = 'update'";
    let mut op = build(&toml::from_str::<WindowConfig>(config).unwrap(), "win");
    let mut state = Tables::default();
    run(&mut *op, &mut state, None, r#"{"k":"a","n":18446744073709551616}"#).unwrap();
    let out = run(&mut *op, &mut state, None, r#"{"k":"a","n":-99999999999999999999}"#).unwrap().remove(0);
    assert!(out.contains(r#""sum":-81553255926290448383,"max":18446744073709551616}"#), "{out}");
}

#[test]
fn join_hands_back_the_table_values_as_written() {
    for value in ["", "table_value = 'payload'\n"] {
        let config = format!("table = 't'\nkey = 'payload.id'\ninto = 'payload.member'\n{value}");
        let mut op = build(&toml::from_str::<JoinConfig>(&config).unwrap(), "j");
        let mut state = Tables::default();
        // `0.1` is left out: beside `0.1000000000000000055511151231257827` (the same f64) a
        // CEL `table_value` could not tell them apart (below).
        let numbers: Vec<(&str, &str)> = NUMBERS.iter().copied().filter(|(n, _)| *n != "0.1").collect();
        let table = format!(r#"{{"id":"k","v":[{}]}}"#, numbers.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(","));
        assert!(run(&mut *op, &mut state, Some("t"), &table).unwrap().is_empty());
        let out = run(&mut *op, &mut state, Some("s"), r#"{"id":"k"}"#).unwrap().remove(0);
        let written = numbers.iter().map(|(_, w)| *w).collect::<Vec<_>>().join(",");
        assert_eq!(out, format!(r#"{{"id":"k","member":{{"id":"k","v":[{written}]}}}}"#), "{value}");
        let both = r#"{"id":"k","v":[0.1,0.1000000000000000055511151231257827]}"#;
        match value {
            "" => assert!(run(&mut *op, &mut state, Some("t"), both).is_ok()),
            _ => assert!(run(&mut *op, &mut state, Some("t"), both).unwrap_err().contains("cannot tell")),
        }
    }
}

/// Typed payloads keep unknown fields with `#[serde(flatten)]`, which buffers the fields: a
/// number kept as text must come through that buffer exactly (integers above u64 too), and
/// known numeric fields must still read, whether the payload is untouched or was changed.
#[test]
fn typed_payloads_with_flattened_extras_keep_numbers_exactly() {
    use kafclaw_operators::envelope::{Payload, TracePayload};
    let numbers: Vec<&str> = NUMBERS.iter().map(|(n, _)| *n).collect();
    let written: Vec<&str> = NUMBERS.iter().map(|(_, w)| *w).collect();
    let text = format!(r#"{{"task_id":"t","delegation_depth":3,"big":{},"list":[{}]}}"#, numbers[0], numbers.join(","));
    let untouched = record(&text);
    let mut changed = record(&text);
    changed.envelope.payload["touched"] = serde_json::json!(true);
    for r in [untouched, changed] {
        let Payload::Request(p) = r.envelope.typed_payload().unwrap() else { panic!("a request") };
        assert_eq!(p.delegation_depth, 3);
        assert_eq!(p.extra["big"].to_string(), written[0]);
        assert_eq!(p.extra["list"].to_string(), format!("[{}]", written.join(",")));
    }
    let trace =
        r#"{"trace_id":"t","duration_ms":12,"cost":0.1000000000000000055511151231257827,"n":99999999999999999999}"#;
    let t: TracePayload = serde_json::from_str(trace).unwrap();
    assert_eq!(t.duration_ms, 12);
    let back = serde_json::to_string(&t).unwrap();
    assert!(back.contains(r#""cost":0.1000000000000000055511151231257827,"n":99999999999999999999"#), "{back}");
    // A `Value` inside a plain struct read from a `Value` keeps its numbers too.
    #[derive(serde::Deserialize)]
    struct Holder {
        v: serde_json::Value,
    }
    let v: serde_json::Value = serde_json::from_str(&format!(r#"{{"v":[{}]}}"#, numbers.join(","))).unwrap();
    let h: Holder = serde_json::from_value(v).unwrap();
    // (serde_json reads an integer `-0` out of a `Value` as the integer 0.)
    assert_eq!(h.v.to_string(), format!("[{}]", written.join(",")).replace(",-0,", ",0,"));
}

/// Red-team case 4: CEL `==` on numbers no 64-bit type holds compared their spelling.
#[test]
fn cel_equality_of_wide_numbers_is_by_value() {
    let mut op = map(r#"set = { "payload.same" = 'payload.a == payload.b' }"#);
    let mut same = |a: &str, b: &str| {
        let out = run(&mut *op, &mut Tables::default(), None, &format!(r#"{{"a":{a},"b":{b}}}"#)).unwrap().remove(0);
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["same"].as_bool().unwrap()
    };
    for (a, b) in [
        ("1e400", "10e399"),
        ("99999999999999999999", "9.9999999999999999999e19"),
        ("99999999999999999999", "99999999999999999999.0"),
        ("-99999999999999999999", "-999999999999999999990e-1"),
        ("1e-400", "0.1e-399"),
        ("100", "1e2"),
        ("1234567890123456789012345", "1234567890123456789012345"),
    ] {
        assert!(same(a, b), "{a} == {b}");
    }
    for (a, b) in [
        ("99999999999999999999", "1"),
        ("99999999999999999999", "1e20"),
        ("1e400", "1e401"),
        ("1e-400", "0"),
        ("99999999999999999999", "99999999999999999999.5"),
        ("1234567890123456789012345", "1234567890123456789012346"),
    ] {
        assert!(!same(a, b), "{a} != {b}");
    }
    // Ordering a number below f64's smallest is refused, not answered as 0.
    let mut op = map(r#"set = { "payload.pos" = 'payload.a > 0.0' }"#);
    assert!(run(&mut *op, &mut Tables::default(), None, r#"{"a":1e-400}"#).unwrap_err().contains("1e-400"));
}

/// Red-team case 8 through `map`: template comparisons were by text for numbers f64 does
/// not write as written, and rendering keeps them as written.
#[test]
fn templates_compare_numbers_by_value_and_render_them_as_written() {
    let mut op = map(
        r#"render = { "payload.size" = '{% if payload.amount > 100 %}big{% else %}small{% endif %}', "payload.eq" = '{{ payload.amount == 2.5 }}', "payload.text" = '{{ payload.amount }}' }"#,
    );
    for (amount, size, eq, text) in [
        ("2.5", "small", "True", "2.5"),
        ("2.50", "small", "True", "2.50"),
        ("1E2", "small", "False", "1e+2"),
        ("1e-400", "small", "False", "1e-400"),
        ("-1e400", "small", "False", "-1e+400"),
        ("0.1000000000000000055511151231257827", "small", "False", "0.1000000000000000055511151231257827"),
        ("99999999999999999999", "big", "False", "99999999999999999999"),
        ("1e400", "big", "False", "1e+400"),
        ("100.5", "big", "False", "100.5"),
    ] {
        let out = run(&mut *op, &mut Tables::default(), None, &format!(r#"{{"amount":{amount}}}"#)).unwrap().remove(0);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (v["size"].as_str(), v["eq"].as_str(), v["text"].as_str()),
            (Some(size), Some(eq), Some(text)),
            "{amount}"
        );
    }
}

/// Red-team case 6: after `1e4096` was summed, every later value of its key was
/// dead-lettered with a 4097-digit sum in the error.
#[test]
fn a_value_aggregate_cannot_sum_is_refused_when_it_comes_and_the_key_goes_on() {
    let config = "by = 'payload.k'\nvalue = 'payload.n'";
    let mut op = build(&toml::from_str::<AggregateConfig>(config).unwrap(), "agg");
    let mut state = Tables::default();
    for huge in ["1e4096", "-1e4096", "1e-2000", "1e999999999"] {
        let err = run(&mut *op, &mut state, None, &format!(r#"{{"k":1,"n":{huge}}}"#)).unwrap_err();
        assert!(err.contains("beyond what is summed") && err.len() < 300, "{err}");
        assert!(err.contains(&huge.replace("e4", "e+4").replace("e9", "e+9")), "{err}");
    }
    assert!(state.is_empty(), "nothing stored for a refused value");
    let mut last = String::new();
    for n in ["1", "2", "1e400", "1e-1024"] {
        last = run(&mut *op, &mut state, None, &format!(r#"{{"k":1,"n":{n}}}"#)).unwrap().remove(0);
    }
    let v: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(v["aggregate"]["count"], 4);
    let want: serde_json::Value =
        serde_json::from_str(&format!("1{}3.{}1", "0".repeat(399), "0".repeat(1023))).unwrap();
    assert!(kafclaw_operators::lang::exact::json_eq(&v["aggregate"]["sum"], &want), "{}", v["aggregate"]["sum"]);
    // The same for windows.
    let config = "by = 'payload.k'\nvalue = 'payload.n'\nsize = '1m'\nemit = 'update'";
    let mut op = build(&toml::from_str::<WindowConfig>(config).unwrap(), "win");
    let mut state = Tables::default();
    assert!(run(&mut *op, &mut state, None, r#"{"k":1,"n":1e4096}"#).unwrap_err().contains("beyond what is summed"));
    let out = run(&mut *op, &mut state, None, r#"{"k":1,"n":2}"#).unwrap().remove(0);
    assert!(out.contains(r#""count":1,"sum":2,"#), "{out}");
}

fn count_keys(op: &mut dyn SyncOperator, state: &mut Tables, keys: &[&str]) -> Vec<(u64, String)> {
    keys.iter()
        .map(|k| {
            let out = run(op, state, None, &format!(r#"{{"k":{k}}}"#)).unwrap().remove(0);
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            (v["count"].as_u64().unwrap(), v["count_key"].as_str().unwrap().to_owned())
        })
        .collect()
}

/// Red-team case 5: `1`, `1.0`, `1e0`, `10e-1` were counted apart; numbers now key by value.
/// A string keys as itself, as it always has (the layout of stored state), so `"1"` shares
/// the number's key.
#[test]
fn grouping_keys_are_numbers_by_value() {
    let mut op = build(&toml::from_str::<CountConfig>("by = 'payload.k'").unwrap(), "c");
    let mut state = Tables::default();
    let got = count_keys(&mut *op, &mut state, &["1", r#""1""#, "1.0", "1e0", "10e-1", r#""1""#, "-0", "0.0"]);
    let counts: Vec<u64> = got.iter().map(|(c, _)| *c).collect();
    assert_eq!(counts, [1, 2, 3, 4, 5, 6, 1, 2]);
    let shown: Vec<&str> = got.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(shown, ["1", "1", "1", "1", "1", "1", "0", "0"]);
    let got = count_keys(&mut *op, &mut state, &["2.50", "2.5", "1e2", "100", "true", r#""true""#, "[1.0]", "[1]"]);
    assert_eq!(got.iter().map(|(c, _)| *c).collect::<Vec<_>>(), [1, 2, 1, 2, 1, 2, 1, 2]);
    // Stored keys: strings, plain integers and plain decimals as before.
    let mut op = build(&toml::from_str::<CountConfig>("by = 'payload.k'").unwrap(), "layout");
    let mut state = Tables::default();
    count_keys(&mut *op, &mut state, &[r#""sender-a""#, "42", "99999999999999999999", "2.5", r#""7""#, "7.0"]);
    let stored: Vec<String> = state.keys().into_iter().map(|(_, k)| String::from_utf8(k).unwrap()).collect();
    assert_eq!(stored, ["2.5", "42", "7", "99999999999999999999", "sender-a"]);
    // Aggregates and windows group the same way and show the key unquoted.
    let mut op = build(&toml::from_str::<AggregateConfig>("by = 'payload.k'").unwrap(), "a");
    let mut state = Tables::default();
    for (k, count, shown) in [("1", 1, "1"), ("1.0", 2, "1"), (r#""1""#, 3, "1"), ("1e0", 4, "1")] {
        let out = run(&mut *op, &mut state, None, &format!(r#"{{"k":{k}}}"#)).unwrap().remove(0);
        assert!(out.contains(&format!(r#""aggregate":{{"key":"{shown}","count":{count}}}"#)), "{k}: {out}");
    }
    let config = "by = 'payload.k'\nsize = '1m'\nemit = 'update'";
    let mut op = build(&toml::from_str::<WindowConfig>(config).unwrap(), "w");
    let mut state = Tables::default();
    for (k, count) in [("1", 1), ("10e-1", 2), (r#""1""#, 3)] {
        let out = run(&mut *op, &mut state, None, &format!(r#"{{"k":{k}}}"#)).unwrap().remove(0);
        assert!(out.contains(r#""key":"1""#) && out.contains(&format!(r#""count":{count}"#)), "{k}: {out}");
    }
}

/// Red-team case 5 (join): the stream key `1.0` did not find the table key `1`; numbers now
/// match by value (a string keys as itself, as it always has).
#[test]
fn join_keys_match_numbers_by_value() {
    let config = "table = 't'\nkey = 'payload.k'\ntable_value = 'payload.v'\ninto = 'payload.joined'";
    let mut op = build(&toml::from_str::<JoinConfig>(config).unwrap(), "j");
    let mut state = Tables::default();
    for table in [
        r#"{"k":"1","v":"string-one"}"#,
        r#"{"k":1,"v":"int-one"}"#,
        r#"{"k":99999999999999999999,"v":"big"}"#,
        r#"{"k":"a","v":"a"}"#,
    ] {
        assert!(run(&mut *op, &mut state, Some("t"), table).unwrap().is_empty());
    }
    for (k, want) in [
        ("1", r#""int-one""#),
        ("1.0", r#""int-one""#),
        ("1e0", r#""int-one""#),
        (r#""1""#, r#""int-one""#),
        ("99999999999999999999", r#""big""#),
        ("9.9999999999999999999e19", r#""big""#),
        (r#""99999999999999999999""#, r#""big""#),
        (r#""a""#, r#""a""#),
        ("2", "null"),
    ] {
        let out = run(&mut *op, &mut state, Some("s"), &format!(r#"{{"k":{k}}}"#)).unwrap().remove(0);
        assert!(out.ends_with(&format!(r#""joined":{want}}}"#)), "{k}: {out}");
    }
}
