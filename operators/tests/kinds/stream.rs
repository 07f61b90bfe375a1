//! `filter`, `map`, `route`: stateless, so they run with `NoState` (any state access would
//! fail the record) and declare no tables.

use serde_json::json;

use kafclaw_operators::NoState;
use kafclaw_operators::api::kind::Kind;
use kafclaw_operators::api::operator::{Port, Ports};
use kafclaw_operators::envelope::EnvelopeType;
use kafclaw_operators::stream::filter::FilterConfig;
use kafclaw_operators::stream::map::MapConfig;
use kafclaw_operators::stream::route::{RouteConfig, UNMATCHED};
use kafclaw_operators::testing::{record, run_sync};

use super::{build_errors, config, port, refused, sync};

fn ticket(priority: serde_json::Value) -> kafclaw_operators::Record {
    record(&json!({"payload": {"task_id": "t1", "priority": priority}}).to_string())
}

#[test]
fn filter_passes_what_holds_drops_what_does_not_and_dead_letters_what_it_cannot_judge() {
    let c: FilterConfig = config("where = 'payload.priority >= 3'");
    assert_eq!(c.ports(), Ports::single());
    assert!(c.tables("f").is_empty());
    let mut op = sync(&c, "f");
    let run = run_sync(&mut *op, &mut NoState, [ticket(json!(5)), ticket(json!(1)), ticket(json!(3)), record("{}")]);
    assert_eq!(run.ports(), [Port::DEFAULT, Port::DEFAULT]);
    assert_eq!(
        run.on(Port::DEFAULT),
        [&json!({"task_id": "t1", "priority": 5}), &json!({"task_id": "t1", "priority": 3})]
    );
    let dead = run.dead_lettered();
    assert_eq!(dead.len(), 1, "{:?}", run.failed);
    assert!(dead[0].contains("priority"), "{dead:?}");
    assert_eq!(*run.failed[0].0.envelope.payload, json!({}), "dead-lettered as it came");
    assert!(run.state_failures().is_empty());
}

#[test]
fn filter_options_are_checked() {
    assert!(refused::<FilterConfig>("where = 'true'\nwhen = 'true'").contains("unknown field `when`"));
    assert!(refused::<FilterConfig>("").contains("missing field `where`"));
    let bad: FilterConfig = config("where = 'payload.('");
    assert!(!build_errors(&bad, "f").is_empty());
    assert_eq!(bad.check("f", &["in"], &Default::default()).len(), build_errors(&bad, "f").len());
}

#[test]
fn map_sets_renders_and_removes_from_the_record_as_it_entered() {
    let c: MapConfig = config(
        r#"
        set = { "type" = '"response"', "payload.priority" = 'payload.priority + 1', "payload.was" = 'payload.priority' }
        render = { "payload.content" = "Ticket {{ payload.task_id }}: {{ payload.description }}" }
        remove = ["payload.internal_notes", "zone"]
        "#,
    );
    assert_eq!(c.ports(), Ports::single());
    assert!(c.tables("shape").is_empty());
    let mut op = sync(&c, "shape");
    let input = record(
        r#"{"zone":"finance","payload":{"task_id":"t1","description":"printer on fire","priority":2,"internal_notes":"x"}}"#,
    );
    let run = run_sync(&mut *op, &mut NoState, [input]);
    assert!(run.failed.is_empty(), "{:?}", run.failed);
    assert_eq!(
        run.on(Port::DEFAULT),
        [
            &json!({"task_id": "t1", "description": "printer on fire", "priority": 3, "was": 2, "content": "Ticket t1: printer on fire"})
        ]
    );
    let out = &run.records(Port::DEFAULT)[0].envelope;
    assert_eq!(out.kind, EnvelopeType::Response);
    assert_eq!(out.zone, None);
    assert_eq!(out.correlation_id, "c", "untouched fields stay");
}

#[test]
fn map_dead_letters_a_record_its_expressions_or_paths_fail_on() {
    let c: MapConfig = config(r#"set = { "payload.priority" = 'payload.priority + 1' }"#);
    let mut op = sync(&c, "shape");
    let run = run_sync(&mut *op, &mut NoState, [ticket(json!("high")), ticket(json!(1))]);
    assert_eq!(run.on(Port::DEFAULT), [&json!({"task_id": "t1", "priority": 2})]);
    assert_eq!(run.dead_lettered().len(), 1, "{:?}", run.failed);
    assert_eq!(run.failed[0].0.envelope.payload["priority"], "high");

    let c: MapConfig = config(r#"set = { "type" = 'payload.kind' }"#);
    let mut op = sync(&c, "shape");
    let run = run_sync(&mut *op, &mut NoState, [record(r#"{"payload":{"kind":"nope"}}"#)]);
    assert!(run.emitted.is_empty());
    assert_eq!(run.dead_lettered(), ["`nope` is not an envelope type"]);
}

#[test]
fn map_options_are_checked() {
    assert!(refused::<MapConfig>("sets = {}").contains("unknown field `sets`"));
    let empty: MapConfig = config("");
    assert_eq!(build_errors(&empty, "m"), ["a map needs at least one of `set`, `render` or `remove`"]);
    let bad: MapConfig = config(
        r#"remove = ["type"]
set = { "id" = '"x"' }"#,
    );
    let errors = build_errors(&bad, "m");
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("`type` is required and cannot be removed")), "{errors:?}");
}

const ROUTES: &str = r#"
routes = [
  { name = "urgent", when = 'payload.priority >= 4' },
  { name = "normal", when = 'payload.priority >= 2' },
]
"#;

#[test]
fn route_sends_each_record_to_its_first_route_or_unmatched() {
    let c: RouteConfig = config(ROUTES);
    let ports = c.ports();
    assert_eq!(ports, Ports { default: false, named: vec!["urgent".into(), "normal".into(), UNMATCHED.into()] });
    assert_eq!(ports.port(None), None, "a route has no default output");
    let (urgent, normal, unmatched) = (port(&c, "urgent"), port(&c, "normal"), port(&c, UNMATCHED));
    assert_eq!((urgent, normal, unmatched), (Port(0), Port(1), Port(2)));
    assert!(c.tables("triage").is_empty());
    let mut op = sync(&c, "triage");
    let inputs = [5, 3, 1, 4].map(|p| ticket(json!(p)));
    let run = run_sync(&mut *op, &mut NoState, inputs);
    assert!(run.failed.is_empty(), "{:?}", run.failed);
    assert_eq!(run.ports(), [urgent, normal, unmatched, urgent]);
    let priorities = |p| run.on(p).iter().map(|v| v["priority"].as_i64().unwrap()).collect::<Vec<_>>();
    assert_eq!((priorities(urgent), priorities(normal), priorities(unmatched)), (vec![5, 4], vec![3], vec![1]));
}

#[test]
fn route_in_mode_all_sends_a_record_to_every_route_that_holds() {
    let c: RouteConfig = config(&format!("mode = \"all\"\n{ROUTES}"));
    let (urgent, normal, unmatched) = (port(&c, "urgent"), port(&c, "normal"), port(&c, UNMATCHED));
    let mut op = sync(&c, "triage");
    let run = run_sync(&mut *op, &mut NoState, [ticket(json!(5)), ticket(json!(0)), ticket(json!(2))]);
    assert_eq!(run.ports(), [urgent, normal, unmatched, normal]);
    assert_eq!(run.on(urgent), [&json!({"task_id": "t1", "priority": 5})]);
}

#[test]
fn route_dead_letters_a_record_a_condition_fails_on() {
    let c: RouteConfig = config(ROUTES);
    let mut op = sync(&c, "triage");
    let run = run_sync(&mut *op, &mut NoState, [record(r#"{"payload":{"task_id":"t2"}}"#), ticket(json!(9))]);
    assert_eq!(run.ports(), [port(&c, "urgent")]);
    assert_eq!(run.dead_lettered().len(), 1, "{:?}", run.failed);
    assert_eq!(run.failed[0].0.envelope.payload["task_id"], "t2");
    assert!(run.state_failures().is_empty());
}

#[test]
fn route_options_are_checked() {
    assert!(
        refused::<RouteConfig>(
            r#"routes = []
mode = "any""#
        )
        .contains("unknown variant `any`")
    );
    let bad: RouteConfig = config(
        r#"routes = [{ name = "unmatched", when = 'true' }, { name = "a b", when = 'true' }, { name = "x", when = 'true' }, { name = "x", when = '(' }]"#,
    );
    let errors = build_errors(&bad, "r");
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors[0].contains("`unmatched` is the output"), "{errors:?}");
    assert!(errors[1].contains("must be letters, digits"), "{errors:?}");
    assert!(errors[2].contains("defined twice"), "{errors:?}");
}
