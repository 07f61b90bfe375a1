//! Deterministic ids: the same input coordinates always give the same output id, so retries
//! and replays produce the same envelope (the second layer of exactly-once: docs/kafka-brokers.md).

use sha2::{Digest, Sha256};

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in parts {
        // Length-prefix every part so ("ab","c") and ("a","bc") differ.
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// The id of an engine output: 32 hex digits from SHA-256 over the input's topic (or file),
/// partition and offset, the operator that emitted it and the output's ordinal for that input.
pub fn deterministic_id(topic: &str, partition: i32, offset: i64, operator: &str, ordinal: u32) -> String {
    let d = digest(&[
        topic.as_bytes(),
        &partition.to_be_bytes(),
        &offset.to_be_bytes(),
        operator.as_bytes(),
        &ordinal.to_be_bytes(),
    ]);
    hex::encode(&d[..16])
}

/// A W3C span id (16 hex digits) derived from an envelope id.
pub fn derive_span_id(id: &str) -> String {
    let d = digest(&[b"span", id.as_bytes()]);
    hex::encode(&d[..8])
}

/// A W3C trace id (32 hex digits) for an input that carried none, derived from its coordinates.
pub fn derive_trace_id(topic: &str, partition: i32, offset: i64) -> String {
    let d = digest(&[b"trace", topic.as_bytes(), &partition.to_be_bytes(), &offset.to_be_bytes()]);
    hex::encode(&d[..16])
}

/// True when `s` is exactly `len` lowercase hex digits and not all zero (W3C rules).
pub fn is_hex_of_len(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && s.bytes().any(|b| b != b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = deterministic_id("t", 0, 1, "op", 0);
        assert_eq!(a, deterministic_id("t", 0, 1, "op", 0));
        assert_eq!(a.len(), 32);
        assert_ne!(a, deterministic_id("t", 0, 1, "op", 1));
        assert_ne!(a, deterministic_id("t", 1, 1, "op", 0));
        assert_ne!(a, deterministic_id("t", 0, 2, "op", 0));
        assert_ne!(deterministic_id("ab", 0, 0, "c", 0), deterministic_id("a", 0, 0, "bc", 0));
    }

    #[test]
    fn derived_ids_follow_w3c_sizes() {
        assert!(is_hex_of_len(&derive_span_id("x"), 16));
        assert!(is_hex_of_len(&derive_trace_id("t", 0, 0), 32));
        assert!(!is_hex_of_len("0000000000000000", 16));
        assert!(!is_hex_of_len("ABCDEF0123456789", 16));
    }
}
