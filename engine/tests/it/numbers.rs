//! Payload numbers through a local run (`kafclaw run --local`, file source and sinks): maps that
//! set another field, copy the number through CEL and render it, and an aggregate, write every
//! number exactly.

use std::process::Command;

const NUMBERS: [(&str, &str); 9] = [
    ("99999999999999999999", "99999999999999999999"),
    ("-99999999999999999999", "-99999999999999999999"),
    ("18446744073709551616", "18446744073709551616"),
    ("1234567890123456789012345", "1234567890123456789012345"),
    ("0.1000000000000000055511151231257827", "0.1000000000000000055511151231257827"),
    ("123456789012345678901234567890.123456789", "123456789012345678901234567890.123456789"),
    ("1e400", "1e+400"),
    ("1.0", "1.0"),
    ("-0", "-0"),
];

const TOPOLOGY: &str = r#"[topology]
name = "numbers"

[sources.in]
type = "file"
path = "in.jsonl"

[operators.other]
type = "map"
inputs = ["in"]
set = { "payload.seen" = 'true' }

[operators.copy]
type = "map"
inputs = ["in"]
set = { "payload.copy" = 'payload.big' }
render = { "payload.text" = "{{ payload.big }}" }

[operators.total]
type = "aggregate"
inputs = ["in"]
by = 'payload.k'
value = 'payload.big'
functions = ["sum", "max"]

[sinks.other-out]
type = "file"
inputs = ["other"]
path = "other.jsonl"

[sinks.copy-out]
type = "file"
inputs = ["copy"]
path = "copy.jsonl"

[sinks.total-out]
type = "file"
inputs = ["total"]
path = "total.jsonl"
"#;

#[test]
fn a_local_run_writes_every_number_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("numbers.toml");
    std::fs::write(&topo, TOPOLOGY).unwrap();
    let lines: Vec<String> = NUMBERS
        .iter()
        .enumerate()
        .map(|(i, (n, _))| {
            format!(
                r#"{{"type":"request","correlation_id":"c-{i}","sender_id":"s","timestamp":"2026-11-24T00:00:00Z","payload":{{"k":"{i}","big":{n}}}}}"#
            )
        })
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), lines.join("\n") + "\n").unwrap();
    let dlq = dir.path().join("dead.jsonl");
    let o = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["run", topo.to_str().unwrap(), "--local", "--dead-letter", dlq.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read_to_string(&dlq).unwrap_or_default().is_empty());

    let read = |name: &str| -> Vec<String> {
        std::fs::read_to_string(dir.path().join(name)).unwrap().lines().map(str::to_owned).collect()
    };
    let (other, copy, total) = (read("other.jsonl"), read("copy.jsonl"), read("total.jsonl"));
    assert_eq!((other.len(), copy.len(), total.len()), (NUMBERS.len(), NUMBERS.len(), NUMBERS.len()));
    for (i, (n, w)) in NUMBERS.iter().enumerate() {
        let k = format!(r#""k":"{i}""#);
        assert!(other[i].contains(&format!(r#""payload":{{{k},"big":{w},"seen":true}}"#)), "{n}: {}", other[i]);
        assert!(
            copy[i].contains(&format!(r#""payload":{{{k},"big":{w},"copy":{w},"text":"{w}"}}"#)),
            "{n}: {}",
            copy[i]
        );
        assert!(total[i].contains(&format!(r#""aggregate":{{"key":"{i}","sum":{w},"max":{w}}}"#)), "{n}: {}", total[i]);
    }
}
