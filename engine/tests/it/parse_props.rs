//! Property tests: the topology compiler never panics, whatever the input, and every
//! diagnostic it gives points inside the file.

use kafclaw_engine::compiler::{SourceFile, compile_source};
use proptest::prelude::*;

const SHIPPED: &str = include_str!("../../../topologies/support-triage.toml");

fn check(text: String) -> Result<(), TestCaseError> {
    let len = text.len();
    match compile_source(SourceFile::new("prop.toml", text)) {
        Ok(c) => {
            for d in &c.diagnostics.items {
                prop_assert!(d.offset <= len);
            }
        }
        Err(f) => {
            prop_assert!(f.diagnostics.has_errors(), "a failed compile reports an error");
            for d in &f.diagnostics.items {
                prop_assert!(d.offset <= len);
            }
            // Rendering every diagnostic works too.
            let _ = f.to_string();
        }
    }
    Ok(())
}

/// Fragments that make structurally interesting TOML.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[topology]\nname = \"t\"\n".to_owned()),
        Just("[sources.s]\ntype = \"file\"\npath = \"x\"\n".to_owned()),
        Just("[operators.f]\ntype = \"filter\"\ninputs = [\"s\"]\n".to_owned()),
        Just("[sinks.o]\ntype = \"stdout\"\ninputs = [\"f\"]\n".to_owned()),
        Just("[[tests]]\nname = \"x\"\ninputs = []\n".to_owned()),
        "[a-z_.\\[\\]\"'= \n{},#]{0,20}",
        "where = '[ -~]{0,24}'\n",
        "inputs = \\[(\"[a-z.]{0,6}\", ){0,3}\\]\n",
        "routes = \\[\\{ name = \"[a-z]{0,4}\", when = '[ -~]{0,10}' \\}\\]\n",
        "set = \\{ \"[a-z_.]{0,10}\" = '[ -~]{0,10}' \\}\n",
        "render = \\{ \"payload.x\" = \"[ -~]{0,16}\" \\}\n",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        check(text)?;
    }

    #[test]
    fn assembled_topologies_never_panic(parts in prop::collection::vec(fragment(), 0..12)) {
        check(parts.concat())?;
    }

    #[test]
    fn mutated_shipped_topology_never_panics(cut in 0..SHIPPED.len(), len in 0usize..40, insert in "\\PC{0,8}") {
        let mut text = SHIPPED.to_owned();
        let start = (0..=cut).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        let end = (start + len).min(text.len());
        let end = (end..=text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
        text.replace_range(start..end, &insert);
        check(text)?;
    }
}
