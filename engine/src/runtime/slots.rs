//! A task's asynchronous bookkeeping: which records of its asynchronous operators (`llm`,
//! `embed`) are in flight, which wait behind them, and which inputs are unfinished.
//!
//! - A **slot** is (async node, order key): records of one slot run one at a time, in arrival
//!   order. A record arriving at a busy slot is queued; when the slot's record is done, the
//!   next queued one starts.
//! - Work that did not finish at once gets a **ticket**; the runtime hands its outcome back
//!   with it ([`super::Task::complete`]). A ticket the slots do not know (work of an aborted
//!   transaction) is ignored.
//! - An **input** (location, offset) is **held** while one of its records is in flight or
//!   queued: offsets may be committed only below the lowest held one, and the input's output
//!   ordinals are kept until it is released.
//!
//! Outputs of asynchronous work are stamped with ordinals from a base of their own
//! ([`async_ordinal_base`]), so their deterministic ids do not depend on completion order.
//!
//! - A record reaching an async node gets a **rank**: its place among the records of its input
//!   that reached that node, counted on ARRIVAL in the task's depth-first walk (0 for the
//!   first). Several records of one input reach a node when a `route` (`mode = "all"`) fans
//!   out and joins back, a `window` closes several windows at once, or two `inputs` share an
//!   upstream. The walk is deterministic, so a rerun or a replay gives every record the rank
//!   it had; the start order (which busy slots reorder) plays no part. The rank travels with
//!   the record through its slot's queue and is handed to the operator
//!   ([`AsyncOperator::start_ranked`](kafclaw_operators::api::asynchronous::AsyncOperator::start_ranked)),
//!   which keys its journal and its tool calls' idempotency keys by it: two records of one
//!   input never share an answer or an effect. Ranks are forgotten with the input's ordinals.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use kafclaw_operators::Record;

/// Where the ordinals of an asynchronous operator's outputs start: node `n`'s outputs count
/// from `(n + 1) << ASYNC_ORDINAL_SHIFT`, above every ordinal the synchronous walk of an input
/// can reach. Part of the deterministic ids: **never change it** (a replay must reproduce
/// the ids written before).
pub const ASYNC_ORDINAL_SHIFT: u32 = 20;

/// The ordinal base of the outputs of the asynchronous operator at plan index `node`.
pub fn async_ordinal_base(node: usize) -> u32 {
    (node as u32 + 1) << ASYNC_ORDINAL_SHIFT
}

/// (async node, order key): records of one slot run one at a time.
pub(crate) type Slot = (usize, String);

/// An input record: (topic or file, offset).
pub(crate) type Input = (Arc<str>, i64);

/// The input `record` came from.
pub(crate) fn input_of(record: &Record) -> Input {
    (record.origin.location.clone(), record.origin.offset)
}

/// Work in flight: (async node, slot, the record it works on, its rank).
pub(crate) type Waiting = (usize, Slot, Record, u32);

/// The asynchronous bookkeeping of one task.
#[derive(Default)]
pub(crate) struct AsyncSlots {
    /// Work in flight, by ticket.
    waiting: HashMap<u64, Waiting>,
    next_ticket: u64,
    /// Slots with a record in flight, and the records queued behind it.
    busy: HashMap<Slot, VecDeque<(Record, u32)>>,
    /// Slots whose record is done: their next queued record starts.
    advance: Vec<Slot>,
    /// Inputs with records in flight or queued, and how many.
    held: BTreeMap<Input, u32>,
}

impl AsyncSlots {
    /// Work in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.waiting.len()
    }

    /// The lowest offset of `location` that is held (in flight or queued): the first held
    /// input at or after `(location, i64::MIN)` in the map's order, O(log n) however many
    /// inputs are held.
    pub(crate) fn first_unfinished(&self, location: &str) -> Option<i64> {
        let from: Input = (Arc::from(location), i64::MIN);
        self.held.range(from..).next().filter(|((l, _), _)| &**l == location).map(|((_, o), _)| *o)
    }

    /// A record of rank `rank` arrives at `slot`: returned to be started now when the slot was
    /// free (it is busy from here on); queued behind the slot's record otherwise (its input
    /// held, its rank kept with it).
    pub(crate) fn enter(&mut self, slot: Slot, record: Record, rank: u32) -> Option<(Slot, Record, u32)> {
        if let Some(queue) = self.busy.get_mut(&slot) {
            *self.held.entry(input_of(&record)).or_default() += 1;
            queue.push_back((record, rank));
            return None;
        }
        self.busy.insert(slot.clone(), VecDeque::new());
        Some((slot, record, rank))
    }

    /// Work on `record` (of rank `rank`) started and did not finish at once: its ticket, its
    /// input held until it completes.
    pub(crate) fn wait(&mut self, node: usize, slot: Slot, record: Record, rank: u32) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.hold(input_of(&record));
        self.waiting.insert(ticket, (node, slot, record, rank));
        ticket
    }

    /// The work of `ticket`, no longer in flight; `None` for a ticket not known here.
    pub(crate) fn take(&mut self, ticket: u64) -> Option<Waiting> {
        self.waiting.remove(&ticket)
    }

    /// The slot's record is done (finished or failed): the next queued one may start.
    pub(crate) fn done(&mut self, slot: Slot) {
        self.advance.push(slot);
    }

    /// The next record to start, queued behind a slot whose record is done (its input is
    /// still held: release it once started). Slots with nothing queued are freed.
    pub(crate) fn next_queued(&mut self) -> Option<(Slot, Record, u32)> {
        while let Some(slot) = self.advance.pop() {
            match self.busy.get_mut(&slot).and_then(VecDeque::pop_front) {
                Some((record, rank)) => return Some((slot, record, rank)),
                None => {
                    self.busy.remove(&slot);
                }
            }
        }
        None
    }

    fn hold(&mut self, input: Input) {
        *self.held.entry(input).or_default() += 1;
    }

    /// Whether `input` has records in flight or queued.
    pub(crate) fn holds(&self, input: &Input) -> bool {
        self.held.contains_key(input)
    }

    /// Releases one hold of `input`; `true` when that was its last (the input is finished).
    pub(crate) fn release(&mut self, input: &Input) -> bool {
        let Some(n) = self.held.get_mut(input) else { return false };
        *n -= 1;
        if *n > 0 {
            return false;
        }
        self.held.remove(input);
        true
    }
}

/// Per-input counters, kept while the input has work and forgotten when it is finished:
/// output ordinals by (ordinal base, sink), and ranks by async node.
#[derive(Default)]
pub(crate) struct Ordinals {
    ordinals: HashMap<Input, HashMap<(u32, usize), u32>>,
    ranks: HashMap<Input, HashMap<usize, u32>>,
}

impl Ordinals {
    /// The next ordinal of `input`'s outputs to `sink` from `base`.
    pub(crate) fn next(&mut self, input: Input, base: u32, sink: usize) -> u32 {
        let counter = self.ordinals.entry(input).or_default().entry((base, sink)).or_default();
        let ordinal = base + *counter;
        *counter += 1;
        ordinal
    }

    /// The rank of a record of `input` arriving at the async node `node`: how many records of
    /// `input` arrived there before it.
    pub(crate) fn rank(&mut self, input: Input, node: usize) -> u32 {
        let counter = self.ranks.entry(input).or_default().entry(node).or_default();
        let rank = *counter;
        *counter += 1;
        rank
    }

    /// The input is finished: its ordinals and ranks are not needed any more.
    pub(crate) fn forget(&mut self, input: &Input) {
        self.ordinals.remove(input);
        self.ranks.remove(input);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_async_ordinal_base_is_what_the_recorded_ids_were_made_with() {
        assert_eq!(async_ordinal_base(0), 1 << 20);
        assert_eq!(async_ordinal_base(3), 4 << 20);
        assert_eq!(async_ordinal_base(3), 4_194_304);
    }

    fn record(location: &str, offset: i64, text: &str) -> Record {
        let mut env = kafclaw_operators::Envelope::new(
            kafclaw_operators::envelope::EnvelopeType::Request,
            "c",
            "s",
            "2026-01-01T00:00:00Z",
            serde_json::json!({"text": text}),
        );
        env.id = None;
        let mut r = Record::detached(env);
        let mut origin = (*r.origin).clone();
        origin.location = Arc::from(location);
        origin.offset = offset;
        r.origin = Arc::new(origin);
        r
    }

    #[test]
    fn ranks_count_records_of_one_input_per_node_and_are_forgotten_with_it() {
        let mut o = Ordinals::default();
        let a: Input = (Arc::from("in"), 7);
        let b: Input = (Arc::from("in"), 8);
        assert_eq!(o.rank(a.clone(), 3), 0);
        assert_eq!(o.rank(a.clone(), 3), 1);
        assert_eq!(o.rank(a.clone(), 4), 0, "another node counts on its own");
        assert_eq!(o.rank(b.clone(), 3), 0, "another input counts on its own");
        assert_eq!(o.rank(a.clone(), 3), 2);
        o.forget(&a);
        assert_eq!(o.rank(a, 3), 0, "a finished input's ranks are gone");
        assert_eq!(o.rank(b, 3), 1, "forgetting one input keeps the others'");
    }

    #[test]
    fn the_first_unfinished_offset_is_the_lowest_held_of_that_location_only() {
        let mut s = AsyncSlots::default();
        assert_eq!(s.first_unfinished("b"), None, "nothing held");
        for (location, offset) in [("b", 9), ("a", 1), ("b", 4), ("c", 0), ("b", 12)] {
            s.wait(0, (0, "k".into()), record(location, offset, "x"), 0);
        }
        assert_eq!(s.first_unfinished("b"), Some(4));
        assert_eq!(s.first_unfinished("a"), Some(1));
        assert_eq!(s.first_unfinished("c"), Some(0));
        assert_eq!(s.first_unfinished("bb"), None, "a location sorting after another is not it");
        assert_eq!(s.first_unfinished(""), None);
        assert!(s.release(&(Arc::from("b"), 4)));
        assert_eq!(s.first_unfinished("b"), Some(9), "released: the next held offset");
    }

    #[test]
    fn a_queued_record_keeps_its_rank_whatever_order_slots_start_in() {
        let mut s = AsyncSlots::default();
        let slot: Slot = (2, "k".into());
        let first = record("in", 5, "one");
        let second = record("in", 5, "two");
        let (slot0, started, rank) = s.enter(slot.clone(), first.clone(), 0).expect("the slot was free");
        assert_eq!((started, rank), (first, 0));
        assert!(s.enter(slot.clone(), second.clone(), 1).is_none(), "queued behind the first");
        let ticket = s.wait(2, slot0, record("in", 5, "one"), 0);
        let (_, _, _, rank) = s.take(ticket).expect("in flight");
        assert_eq!(rank, 0);
        s.done(slot.clone());
        let (_, queued, rank) = s.next_queued().expect("the second starts");
        assert_eq!((queued, rank), (second, 1), "the rank given on arrival travels with the record");
    }
}
