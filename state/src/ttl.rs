//! The value layout of tables with a time to live: `expires_at (i64, big-endian, ms since the
//! Unix epoch, event time) ++ value`. A reader treats an entry whose expiry is at or before
//! its task's stream time as absent; a periodic sweep deletes it (and so writes its changelog
//! tombstone). Tables without a TTL store values as they are.

/// A stored value of a TTL table that is too short to hold its expiry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a value of a table with a TTL has {0} bytes, fewer than the 8 of its expiry")]
pub struct TtlError(pub usize);

/// Encodes `value` expiring at `expires_at_ms`.
pub fn encode_expiring(expires_at_ms: i64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&expires_at_ms.to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// Splits a stored value into its expiry and the value.
pub fn decode_expiring(stored: &[u8]) -> Result<(i64, &[u8]), TtlError> {
    let (head, value) = stored.split_at_checked(8).ok_or(TtlError(stored.len()))?;
    let expires = i64::from_be_bytes(head.try_into().map_err(|_| TtlError(stored.len()))?);
    Ok((expires, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(at in any::<i64>(), value in proptest::collection::vec(any::<u8>(), 0..128)) {
            let stored = encode_expiring(at, &value);
            prop_assert_eq!(decode_expiring(&stored).unwrap(), (at, &value[..]));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            match decode_expiring(&bytes) {
                Ok((_, v)) => prop_assert_eq!(v.len() + 8, bytes.len()),
                Err(TtlError(n)) => prop_assert!(n < 8 && n == bytes.len()),
            }
        }
    }
}
