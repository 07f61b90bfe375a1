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

/// Work in flight: (async node, slot, the record it works on).
pub(crate) type Waiting = (usize, Slot, Record);

/// The asynchronous bookkeeping of one task.
#[derive(Default)]
pub(crate) struct AsyncSlots {
    /// Work in flight, by ticket.
    waiting: HashMap<u64, Waiting>,
    next_ticket: u64,
    /// Slots with a record in flight, and the records queued behind it.
    busy: HashMap<Slot, VecDeque<Record>>,
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

    /// The lowest offset of `location` that is held (in flight or queued).
    pub(crate) fn first_unfinished(&self, location: &str) -> Option<i64> {
        self.held.keys().filter(|(l, _)| &**l == location).map(|(_, o)| *o).min()
    }

    /// A record arrives at `slot`: returned to be started now when the slot was free (it is
    /// busy from here on); queued behind the slot's record otherwise (its input held).
    pub(crate) fn enter(&mut self, slot: Slot, record: Record) -> Option<(Slot, Record)> {
        if let Some(queue) = self.busy.get_mut(&slot) {
            *self.held.entry(input_of(&record)).or_default() += 1;
            queue.push_back(record);
            return None;
        }
        self.busy.insert(slot.clone(), VecDeque::new());
        Some((slot, record))
    }

    /// Work on `record` started and did not finish at once: its ticket, its input held until
    /// it completes.
    pub(crate) fn wait(&mut self, node: usize, slot: Slot, record: Record) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.hold(input_of(&record));
        self.waiting.insert(ticket, (node, slot, record));
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
    pub(crate) fn next_queued(&mut self) -> Option<(Slot, Record)> {
        while let Some(slot) = self.advance.pop() {
            match self.busy.get_mut(&slot).and_then(VecDeque::pop_front) {
                Some(record) => return Some((slot, record)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_async_ordinal_base_is_what_the_recorded_ids_were_made_with() {
        assert_eq!(async_ordinal_base(0), 1 << 20);
        assert_eq!(async_ordinal_base(3), 4 << 20);
        assert_eq!(async_ordinal_base(3), 4_194_304);
    }
}
