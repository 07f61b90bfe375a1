//! The benchmark's envelopes, built fast: the ~1 KB template (`kafclaw_bench::envelope_1kb`)
//! with its three varying fields (`id`, `correlation_id`, `payload.n`) spliced in as bytes,
//! so a load generator sharing the cores with the contender costs ~0.1 µs per envelope.
//! The bytes are those `kafka::fill` writes (same fields, same order).

use anyhow::{Result, bail};

const ID: &str = "@@ID@@";
const CID: &str = "@@CID@@";
const N: &str = "\"@@N@@\"";

pub struct Envelopes {
    /// The template cut at the three fields: before `id`, before `correlation_id`, before `n`, after.
    parts: [Vec<u8>; 4],
    /// Which field each cut is for, in the template's order.
    order: [Field; 3],
}

#[derive(Clone, Copy)]
enum Field {
    Id,
    Cid,
    N,
}

impl Envelopes {
    pub fn new() -> Result<Self> {
        let mut v: serde_json::Value = serde_json::from_slice(&kafclaw_bench::envelope_1kb())?;
        v["id"] = ID.into();
        v["correlation_id"] = CID.into();
        v["payload"]["n"] = "@@N@@".into();
        let text = serde_json::to_string(&v)?;
        let mut at: Vec<(usize, usize, Field)> = Vec::new();
        for (marker, field) in
            [(format!("\"{ID}\""), Field::Id), (format!("\"{CID}\""), Field::Cid), (N.to_owned(), Field::N)]
        {
            let Some(i) = text.find(&marker) else { bail!("template lost {marker}") };
            at.push((i, marker.len(), field));
        }
        at.sort_by_key(|a| a.0);
        let mut parts: [Vec<u8>; 4] = Default::default();
        let mut from = 0;
        for (k, &(i, len, _)) in at.iter().enumerate() {
            parts[k] = text.as_bytes()[from..i].to_vec();
            from = i + len;
        }
        parts[3] = text.as_bytes()[from..].to_vec();
        Ok(Self { parts, order: [at[0].2, at[1].2, at[2].2] })
    }

    /// Envelope `i` (its key is [`key`]) into `out` (cleared first).
    pub fn write(&self, i: usize, out: &mut Vec<u8>) {
        use std::io::Write;
        out.clear();
        for (k, field) in self.order.iter().enumerate() {
            out.extend_from_slice(&self.parts[k]);
            let _ = match field {
                Field::Id => write!(out, "\"{i:032x}\""),
                Field::Cid => write!(out, "\"c-{i}\""),
                Field::N => write!(out, "{i}"),
            };
        }
        out.extend_from_slice(&self.parts[3]);
    }
}

/// The record key of envelope `i` (its correlation id, as `kafka::fill` keys it).
pub fn key(i: usize) -> String {
    format!("c-{i}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn spliced_envelopes_decode_with_their_fields() {
        let e = super::Envelopes::new().unwrap();
        let mut buf = Vec::new();
        e.write(12345, &mut buf);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["payload"]["n"], 12345);
        assert_eq!(v["correlation_id"], "c-12345");
        assert_eq!(v["id"], format!("{:032x}", 12345));
        kafclaw_operators::Envelope::decode(&buf).unwrap();
    }
}
