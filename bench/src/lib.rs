//! Shared inputs for kafclaw's benchmarks.

#![warn(missing_docs)]

use serde_json::json;

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

#[cfg(test)]
mod tests {
    #[test]
    fn the_benchmark_envelope_is_about_1kb_and_valid() {
        let e = super::envelope_1kb();
        assert!((900..=1200).contains(&e.len()), "{} bytes", e.len());
        kafclaw_operators::Envelope::decode_slice(&e).unwrap();
        println!("envelope_1kb: {} bytes", e.len());
    }
}
