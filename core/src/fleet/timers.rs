//! The fleet's deadlines: one per bot, in a heap, so that finding the next one among ten
//! thousand bots costs a logarithm, not a scan.
//!
//! A bot's deadline moves all the time (every message pushes its idle deadline back), so
//! entries are not removed when it moves: a heap entry that no longer matches its key's
//! deadline is skipped when it comes up, and at most one entry per key is kept that is
//! earlier than the deadline it stands for.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;
use std::time::Instant;

#[derive(Debug)]
pub struct Timers<K> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
    /// Per key: its deadline, and the earliest heap entry it has.
    keys: HashMap<K, Entry>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    deadline: Option<Instant>,
    queued: Option<Instant>,
}

impl<K: Copy + Eq + Hash + Ord> Timers<K> {
    pub fn new() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            keys: HashMap::new(),
        }
    }

    /// Sets (or clears) `key`'s deadline.
    pub fn set(&mut self, key: K, deadline: Option<Instant>) {
        let entry = self.keys.entry(key).or_default();
        entry.deadline = deadline;
        if let Some(at) = deadline
            && entry.queued.is_none_or(|queued| at < queued)
        {
            entry.queued = Some(at);
            self.heap.push(Reverse((at, key)));
        }
        if deadline.is_none() && entry.queued.is_none() {
            self.keys.remove(&key);
        }
    }

    /// Forgets `key`.
    pub fn remove(&mut self, key: K) {
        self.keys.remove(&key);
    }

    /// The earliest deadline.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        self.settle();
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Every key whose deadline is at or before `now`, each once; their deadlines are
    /// cleared (set them again after acting on them).
    pub fn expired(&mut self, now: Instant) -> Vec<K> {
        let mut due = Vec::new();
        loop {
            self.settle();
            match self.heap.peek() {
                Some(Reverse((at, _))) if *at <= now => {}
                _ => break,
            }
            let Reverse((_, key)) = self.heap.pop().expect("peeked");
            if let Some(entry) = self.keys.remove(&key) {
                debug_assert!(entry.deadline.is_some_and(|d| d <= now));
                due.push(key);
            }
        }
        due
    }

    /// Drops stale entries from the top, and moves a key whose deadline is later than its
    /// entry to its real deadline, until the top entry is current.
    fn settle(&mut self) {
        while let Some(Reverse((at, key))) = self.heap.peek().copied() {
            let Some(entry) = self.keys.get_mut(&key) else {
                self.heap.pop();
                continue;
            };
            if entry.queued != Some(at) {
                self.heap.pop(); // a later duplicate of an entry already handled
                continue;
            }
            match entry.deadline {
                Some(deadline) if deadline == at => return,
                Some(deadline) => {
                    self.heap.pop();
                    entry.queued = Some(deadline);
                    self.heap.push(Reverse((deadline, key)));
                }
                None => {
                    self.heap.pop();
                    self.keys.remove(&key);
                }
            }
        }
    }

    /// Heap entries, for tests of its size.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

impl<K: Copy + Eq + Hash + Ord> Default for Timers<K> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn deadlines_come_out_in_order_and_moved_ones_at_their_new_time() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut timers = Timers::new();
        timers.set(1, Some(t0 + s(5)));
        timers.set(2, Some(t0 + s(3)));
        timers.set(3, Some(t0 + s(4)));
        timers.set(2, Some(t0 + s(10))); // pushed back
        timers.set(3, None); // cleared
        assert_eq!(timers.next_deadline(), Some(t0 + s(5)));
        assert_eq!(timers.expired(t0 + s(6)), [1]);
        assert_eq!(timers.expired(t0 + s(9)), Vec::<i32>::new());
        assert_eq!(timers.next_deadline(), Some(t0 + s(10)));
        assert_eq!(timers.expired(t0 + s(10)), [2]);
        assert_eq!(timers.next_deadline(), None);
        assert!(timers.is_empty());
    }

    #[test]
    fn a_deadline_moved_often_keeps_the_heap_small() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        for key in 0..100 {
            for step in 0..50u64 {
                timers.set(key, Some(t0 + Duration::from_millis(1000 + step)));
            }
        }
        assert_eq!(timers.len(), 100, "one entry per key");
        let brought_forward = t0 + Duration::from_millis(10);
        timers.set(7, Some(brought_forward));
        assert_eq!(timers.next_deadline(), Some(brought_forward));
        assert_eq!(timers.expired(brought_forward), [7]);
    }
}
