//! The partition-prefixed key layout shared by every backend.

/// A decoded state key: the partition it belongs to and the user key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionKey<'a> {
    /// Input partition the key belongs to.
    pub partition: u32,
    /// The key as the operator wrote it.
    pub key: &'a [u8],
}

/// Encodes `partition ++ key`; big-endian so byte order equals partition order.
pub fn encode_partition_key(partition: u32, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + key.len());
    out.extend_from_slice(&partition.to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// Decodes a stored key; `None` when it is shorter than the partition prefix.
pub fn decode_partition_key(stored: &[u8]) -> Option<PartitionKey<'_>> {
    let (prefix, key) = stored.split_at_checked(4)?;
    let partition = u32::from_be_bytes(prefix.try_into().ok()?);
    Some(PartitionKey { partition, key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(partition in any::<u32>(), key in proptest::collection::vec(any::<u8>(), 0..64)) {
            let stored = encode_partition_key(partition, &key);
            let decoded = decode_partition_key(&stored).expect("decodes");
            prop_assert_eq!(decoded.partition, partition);
            prop_assert_eq!(decoded.key, &key[..]);
        }

        #[test]
        fn order_follows_partition_then_key(a in any::<(u32, Vec<u8>)>(), b in any::<(u32, Vec<u8>)>()) {
            let ea = encode_partition_key(a.0, &a.1);
            let eb = encode_partition_key(b.0, &b.1);
            prop_assert_eq!(ea.cmp(&eb), (a.0, &a.1).cmp(&(b.0, &b.1)));
        }
    }

    #[test]
    fn short_keys_do_not_decode() {
        assert!(decode_partition_key(&[0, 1, 2]).is_none());
    }
}
