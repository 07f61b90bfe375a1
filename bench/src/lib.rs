//! Shared inputs for kafclaw's benchmarks.

#![warn(missing_docs)]

use serde_json::json;

pub mod procstat;

/// A realistic ~1 KB request envelope (KafClaw fields, our trace fields, a text payload).
pub fn envelope_1kb() -> Vec<u8> {
    let description = "Customer reports that checkout fails with a 502 after entering card details; \
                       happens on mobile Safari and Chrome, started after the 14:00 deploy.";
    let content = "Steps: add two items to the cart, go to checkout, enter a Visa test card, press Pay. \
                   Expected: confirmation page. Actual: gateway error 502 and the cart is emptied. \
                   Logs show upstream timeouts from the payment adapter in eu-west-1. \
                   Customer tier: enterprise; contract SLA 4h; three similar tickets in the last hour. \
                   Attached: HAR file, screenshot, console log excerpt with stack trace from the SPA.";
    let v = json!({
        "type": "request",
        "correlation_id": "0b7e3c1a-5f2d-4b8e-9a61-2c4d8e7f9a10",
        "sender_id": "support-portal-eu-1",
        "timestamp": "2026-11-23T14:07:31.123456789Z",
        "payload": {
            "task_id": "0b7e3c1a-5f2d-4b8e-9a61-2c4d8e7f9a10",
            "description": description,
            "content": content,
            "requester_id": "support-portal-eu-1",
            "priority": 5,
            "tags": ["checkout", "payments", "p1", "eu-west-1"],
            "delegation_depth": 0,
            "deadline_at": "2026-11-23T18:07:31Z"
        },
        "id": "7f3a9c0e2b4d6f8a1c3e5a7b9d0f2e4c",
        "v": 1,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
        "zone": "shared"
    });
    serde_json::to_vec(&v).expect("encodes")
}

/// Sends one record, waiting for room in the producer's queue, and serves delivery reports.
pub fn send_blocking(p: &rdkafka::producer::BaseProducer, mut rec: rdkafka::producer::BaseRecord<'_, [u8], [u8]>) {
    loop {
        match p.send(rec) {
            Ok(()) => break,
            Err((_, r)) => {
                p.poll(std::time::Duration::from_millis(5));
                rec = r;
            }
        }
    }
    p.poll(std::time::Duration::ZERO);
}

/// Replaces the section `<!-- {name}:begin -->…<!-- {name}:end -->` of a Markdown report with
/// `body`, appending it under `title` when the report has no such section yet.
pub fn write_report_section(report: &std::path::Path, name: &str, title: &str, body: &str) -> std::io::Result<()> {
    let text = std::fs::read_to_string(report).unwrap_or_default();
    let (begin, end) = (format!("<!-- {name}:begin -->"), format!("<!-- {name}:end -->"));
    let section = format!("{begin}\n{body}{end}");
    let updated = match (text.find(&begin), text.find(&end)) {
        (Some(a), Some(b)) if b > a => format!("{}{}{}", &text[..a], section, &text[b + end.len()..]),
        _ => format!("{text}\n## {title}\n\n{section}\n"),
    };
    std::fs::write(report, updated)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_benchmark_envelope_is_about_1kb_and_valid() {
        let e = super::envelope_1kb();
        assert!((900..=1200).contains(&e.len()), "{} bytes", e.len());
        kafclaw_operators::Envelope::decode(&e).unwrap();
        println!("envelope_1kb: {} bytes", e.len());
    }

    #[test]
    fn report_sections_are_replaced_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.md");
        std::fs::write(&path, "# R\n").unwrap();
        super::write_report_section(&path, "x", "X", "one\n").unwrap();
        super::write_report_section(&path, "x", "X", "two\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("## X").count(), 1);
        assert!(text.contains("two") && !text.contains("one"), "{text}");
    }
}
