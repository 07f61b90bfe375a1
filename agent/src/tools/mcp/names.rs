//! Tool names on the wire. A topology, the journal, traces and docs name an MCP server's tool
//! `<server>.<tool>` (`everything.get-sum`); OpenAI's function names must match
//! `^[a-zA-Z0-9_-]{1,64}$` (no dot), and MCP tool names may hold dots, slashes and up to 128
//! characters (specification 2025-11-25, "Tool names"). So the model is offered a *wire
//! name* per tool:
//!
//! 1. a name that already matches the rule is sent as it is (every tool but MCP ones, whose
//!    dotted names never match): these are given first, so a server cannot take the name of
//!    a configured tool (a server `h` listing `echo` against a configured `h__echo`);
//! 2. otherwise each `.` becomes `__` and every other character outside the rule `_`
//!    (`everything.get-sum` → `everything__get-sum`);
//! 3. a result longer than 64 characters, or equal to a wire name given before it (the plain
//!    names, then the others in the order tools are offered), is cut to 55 characters and ends
//!    with `_` and 8 hex digits of the FNV-1a hash of the full name, so it is unique and
//!    stable across runs.
//!
//! The model's calls are matched by wire name; everything else speaks the dotted name.

use std::collections::HashSet;

/// Whether `name` is a valid OpenAI function name.
pub fn is_wire_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The wire names of `names`, in order, all distinct (see the [module docs](self)).
pub fn wire_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let names: Vec<&str> = names.into_iter().collect();
    let mut used = HashSet::new();
    let mut out: Vec<Option<String>> = vec![None; names.len()];
    // Plain names first, so none of them is renamed for a converted one.
    for (i, name) in names.iter().enumerate() {
        if is_wire_name(name) && used.insert((*name).to_owned()) {
            out[i] = Some((*name).to_owned());
        }
    }
    for (i, name) in names.iter().enumerate() {
        if out[i].is_some() {
            continue;
        }
        let mut wire = if is_wire_name(name) {
            (*name).to_owned()
        } else {
            name.replace('.', "__")
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
                .collect()
        };
        if wire.is_empty() || wire.len() > 64 || used.contains(&wire) {
            let mut salt = 0u32;
            loop {
                let keep: String = wire.chars().take(55).collect();
                let candidate = format!("{keep}_{:08x}", fnv1a(name, salt));
                if !used.contains(&candidate) {
                    wire = candidate;
                    break;
                }
                salt += 1;
            }
        }
        used.insert(wire.clone());
        out[i] = Some(wire);
    }
    out.into_iter().flatten().collect()
}

/// 32-bit FNV-1a of `text` (and `salt`, non-zero only on a hash collision).
fn fnv1a(text: &str, salt: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in text.bytes().chain(if salt == 0 { Vec::new() } else { salt.to_le_bytes().to_vec() }) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_names_become_valid_function_names_and_stay_distinct() {
        let long = format!("srv.{}", "x".repeat(100));
        let names = ["read-notes", "everything.get-sum", "srv.a.b", "srv.a__b", "srv.a/b", "srv.a b", "srv.ä", &long];
        let wire = wire_names(names);
        assert_eq!(&wire[..3], ["read-notes", "everything__get-sum", "srv__a__b"]);
        assert!(wire[3].starts_with("srv__a__b_") && wire[3].len() == 18, "a collision is hashed: {}", wire[3]);
        assert_eq!(wire[4], "srv__a_b");
        assert!(wire[5].starts_with("srv__a_b_"), "{}", wire[5]);
        assert_eq!(wire[6], "srv___");
        assert!(wire[7].len() <= 64 && wire[7].starts_with("srv__xxx"), "{}", wire[7]);
        assert!(wire.iter().all(|w| is_wire_name(w)), "{wire:?}");
        assert_eq!(wire.iter().collect::<HashSet<_>>().len(), wire.len());
        assert_eq!(wire, wire_names(names), "stable");
    }

    #[test]
    fn a_server_cannot_take_the_name_of_a_configured_tool() {
        // A server `h` listing `echo`, offered before the configured tool `h__echo`.
        let wire = wire_names(["h.echo", "h__echo"]);
        assert_eq!(wire[1], "h__echo", "the configured tool keeps its name");
        assert!(wire[0].starts_with("h__echo_") && wire[0] != wire[1], "{wire:?}");
    }
}
