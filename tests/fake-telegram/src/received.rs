//! What a session remembers of the client's messages, and MTProto's checks on each new
//! one (core.telegram.org/mtproto/description#important-checks and
//! /mtproto/service_messages_about_messages):
//!
//! - msg_id divisible by 4 (18), at most 300 s old (16) and 30 s ahead (17);
//! - a msg_id seen before is ignored (a container's is 19); one below every remembered
//!   msg_id, once some have been forgotten, cannot be checked (20);
//! - seqno odd for content-related messages (35), even for the others (34), and in the
//!   order of the msg_ids: no lower msg_id with a higher seqno, or an equal odd one (32),
//!   and no higher msg_id with a lower seqno, or an equal odd one (33).

use std::collections::BTreeMap;

/// What to do with a client message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Seen before: ignore it, answer nothing.
    Duplicate,
    /// Refuse it with `bad_msg_notification` and this code.
    Refuse(i32),
}

#[derive(Debug)]
pub struct Received {
    /// msg_id -> seqno of the latest accepted messages.
    seen: BTreeMap<i64, i32>,
    capacity: usize,
    /// Some msg_ids were forgotten to stay within `capacity`.
    forgot: bool,
}

impl Received {
    pub fn new(capacity: usize) -> Received {
        Received {
            seen: BTreeMap::new(),
            capacity: capacity.max(1),
            forgot: false,
        }
    }

    /// Checks a message. `content` is whether it must be content-related (`Some(true)` for
    /// API queries, `Some(false)` for acks and containers, `None` when either will do).
    pub fn check(
        &self,
        msg_id: i64,
        seq_no: i32,
        content: Option<bool>,
        container: bool,
        now_unix: i64,
    ) -> Verdict {
        let msg_time = msg_id >> 32;
        if msg_id % 4 != 0 {
            return Verdict::Refuse(18);
        }
        if now_unix - msg_time > 300 {
            return Verdict::Refuse(16);
        }
        if msg_time - now_unix > 30 {
            return Verdict::Refuse(17);
        }
        if self.seen.contains_key(&msg_id) {
            return if container {
                Verdict::Refuse(19)
            } else {
                Verdict::Duplicate
            };
        }
        if self.forgot && self.seen.keys().next().is_some_and(|&min| msg_id < min) {
            return Verdict::Refuse(20);
        }
        let odd = seq_no & 1 == 1;
        match content {
            Some(false) if odd => return Verdict::Refuse(34),
            Some(true) if !odd => return Verdict::Refuse(35),
            _ => {}
        }
        if let Some((_, &before)) = self.seen.range(..msg_id).next_back()
            && (before > seq_no || (before == seq_no && odd))
        {
            return Verdict::Refuse(32);
        }
        if let Some((_, &after)) = self.seen.range(msg_id..).next()
            && (after < seq_no || (after == seq_no && odd))
        {
            return Verdict::Refuse(33);
        }
        Verdict::Accept
    }

    /// A msgs_state_info status byte for `msg_id`: received (4), not received though in
    /// the remembered range (2), above it (3), or forgotten (1).
    pub fn state(&self, msg_id: i64) -> u8 {
        if self.seen.contains_key(&msg_id) {
            return 4;
        }
        match (self.seen.keys().next(), self.seen.keys().next_back()) {
            (_, Some(&max)) if msg_id > max => 3,
            (Some(&min), _) if msg_id < min && self.forgot => 1,
            _ => 2,
        }
    }

    /// Remembers an accepted message, forgetting the oldest beyond the capacity.
    pub fn record(&mut self, msg_id: i64, seq_no: i32) {
        self.seen.insert(msg_id, seq_no);
        while self.seen.len() > self.capacity {
            self.seen.pop_first();
            self.forgot = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn id(n: i64) -> i64 {
        (NOW << 32) + n * 4
    }

    #[test]
    fn seqno_order_and_content_parity() {
        let mut r = Received::new(16);
        assert_eq!(r.check(id(10), 5, Some(true), false, NOW), Verdict::Accept);
        r.record(id(10), 5);
        assert_eq!(
            r.check(id(10), 5, Some(true), false, NOW),
            Verdict::Duplicate
        );
        assert_eq!(
            r.check(id(10), 6, Some(false), true, NOW),
            Verdict::Refuse(19)
        );
        assert_eq!(
            r.check(id(11), 5, Some(true), false, NOW),
            Verdict::Refuse(32)
        );
        assert_eq!(
            r.check(id(11), 3, Some(true), false, NOW),
            Verdict::Refuse(32)
        );
        assert_eq!(
            r.check(id(9), 7, Some(true), false, NOW),
            Verdict::Refuse(33)
        );
        assert_eq!(
            r.check(id(11), 6, Some(true), false, NOW),
            Verdict::Refuse(35)
        );
        assert_eq!(
            r.check(id(11), 7, Some(false), false, NOW),
            Verdict::Refuse(34)
        );
        assert_eq!(r.check(id(11), 6, Some(false), false, NOW), Verdict::Accept);
        r.record(id(11), 6);
        assert_eq!(
            r.check(id(12), 6, None, false, NOW),
            Verdict::Accept,
            "two even ones"
        );
        assert_eq!(
            r.check(id(9), 3, Some(true), false, NOW),
            Verdict::Accept,
            "late, in order"
        );
    }

    #[test]
    fn msg_id_rules_and_forgotten_ids() {
        let mut r = Received::new(2);
        assert_eq!(r.check(id(1) + 1, 1, None, false, NOW), Verdict::Refuse(18));
        assert_eq!(
            r.check((NOW - 301) << 32, 1, None, false, NOW),
            Verdict::Refuse(16)
        );
        assert_eq!(
            r.check((NOW + 31) << 32, 1, None, false, NOW),
            Verdict::Refuse(17)
        );
        for (n, seq) in [(5, 1), (6, 3), (7, 5)] {
            r.record(id(n), seq);
        }
        assert_eq!(r.check(id(4), 0, None, false, NOW), Verdict::Refuse(20));
        assert_eq!(r.check(id(8), 7, None, false, NOW), Verdict::Accept);
    }
}
