//! Property-based fuzzing of the OpenAI-protocol answers of a model endpoint (target 5 of
//! docs/fuzzing.md), with the operators crate's fuzz harness: no panic, no hang, errors come
//! back as values; usage summed as the llm operator sums it.

#[path = "../../../operators/tests/fuzz/harness.rs"]
#[allow(dead_code, unused_imports)]
mod harness;
mod model;

use harness::*;
use model::*;

fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn model_answers_mutated_never_panic(bytes in mutated(chat_seeds())) {
        let what = shown(&bytes);
        bounded(&what, move || check_answer(&bytes))?;
    }

    #[test]
    fn model_answers_generated_never_panic(bytes in generated_answer()) {
        let what = shown(&bytes);
        bounded(&what, move || check_answer(&bytes))?;
    }
}
