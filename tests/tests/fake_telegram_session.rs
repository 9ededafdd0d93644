//! MTProto sessions on the fake DC as strict as Telegram's, tested with hand-made messages
//! over real sockets: msg_id and seqno rules, containers, padding, rotating salts,
//! acknowledgements both ways, re-sent updates, the idle timeout and stalled answers.

use std::time::{Duration, Instant};

use grammers_tl_types::{
    Deserializable as _, Identifiable as _, Serializable as _, enums, functions, types,
};
use telegram_bots_tests::fake_dc::client::{CallError, init_connection, test_key};
use telegram_bots_tests::fake_dc::envelope::{Message, constructor, container, msgs_ack};
use telegram_bots_tests::fake_dc::fault::{Fault, FaultKind};
use telegram_bots_tests::fake_dc::raw_client::{
    RawClient, acked, bad_msgs, count, msg_id_at, ping, rpc_result_for, unix_now,
};
use telegram_bots_tests::fake_dc::{FakeTelegram, TEST_API_ID};

const TOKEN: &str = "7000001:AAsession-test";
const PONG: u32 = types::Pong::CONSTRUCTOR_ID;
/// How long a quiet connection is taken to have nothing more to say.
const QUIET: Duration = Duration::from_millis(300);
const WAIT: Duration = Duration::from_secs(5);

fn telegram() -> FakeTelegram {
    let t = FakeTelegram::start(1).expect("start the fake DC");
    t.add_bot(TOKEN, "bot1").unwrap();
    t
}

/// A new session on a stored key logged in as bot1, with the key's current salt.
fn raw(t: &FakeTelegram, seed: u8) -> RawClient {
    let id = t.add_auth_key(1, test_key(seed), Some("bot1")).unwrap();
    let salt = t.world().current_salt(id).unwrap();
    RawClient::connect(t.addr(1), None, test_key(seed), salt).unwrap()
}

fn pongs(c: &mut RawClient) -> Vec<Message> {
    c.receive_until(WAIT, |m| constructor(&m.body) == Some(PONG))
        .unwrap()
}

/// `updates.getState` as a first request (in initConnection), answered.
fn get_state(c: &mut RawClient) {
    let body = init_connection(TEST_API_ID, functions::updates::GetState {}.to_bytes());
    let m = c.message(body, true);
    c.send(&m).unwrap();
    let got = c
        .receive_until(WAIT, |r| {
            rpc_result_for(std::slice::from_ref(r), m.msg_id).is_some()
        })
        .unwrap();
    assert!(
        rpc_result_for(&got, m.msg_id).is_some(),
        "no answer: {got:?}"
    );
}

fn is_updates(m: &Message) -> bool {
    enums::Updates::from_bytes(&m.body).is_ok_and(|u| !matches!(u, enums::Updates::TooLong))
}

#[test]
fn a_duplicate_msg_id_is_ignored_not_answered_twice() {
    let t = telegram();
    let mut c = raw(&t, 1);
    let m = c.message(ping(1), true);
    c.send(&m).unwrap();
    assert_eq!(count(&pongs(&mut c), PONG), 1);
    c.send(&m).unwrap();
    let again = c.receive(QUIET).unwrap();
    assert_eq!(count(&again, PONG), 0, "answered twice: {again:?}");
    assert!(bad_msgs(&again).is_empty(), "{again:?}");
    let next = c.message(ping(2), true);
    c.send(&next).unwrap();
    assert_eq!(count(&pongs(&mut c), PONG), 1, "the session goes on");
}

#[test]
fn msg_ids_too_old_too_new_or_odd_are_refused() {
    let t = telegram();
    let now = unix_now();
    for (seed, msg_id, code) in [
        (20, msg_id_at(now) | 1, 18),
        (21, msg_id_at(now - 400), 16),
        (22, msg_id_at(now + 60), 17),
    ] {
        let mut c = raw(&t, seed);
        let m = Message {
            msg_id,
            seq_no: 1,
            body: ping(1),
        };
        c.send(&m).unwrap();
        let got = c.receive_until(WAIT, |r| !bad_msgs(std::slice::from_ref(r)).is_empty());
        assert_eq!(bad_msgs(&got.unwrap()), [(msg_id, code)]);
    }
}

#[test]
fn seqnos_are_checked() {
    let t = telegram();
    let mut c = raw(&t, 2);
    let query = init_connection(TEST_API_ID, functions::help::GetConfig {}.to_bytes());
    let cases = [
        // An API query marked as not content-related.
        (c.next_msg_id(), 0, query, 35),
        // An acknowledgement marked as content-related.
        (c.next_msg_id(), 1, msgs_ack(vec![1]), 34),
    ];
    for (msg_id, seq_no, body, code) in cases {
        c.send(&Message {
            msg_id,
            seq_no,
            body,
        })
        .unwrap();
        let got = c.receive(QUIET).unwrap();
        assert_eq!(bad_msgs(&got), [(msg_id, code)], "{got:?}");
    }
    let accepted = Message {
        msg_id: c.next_msg_id(),
        seq_no: 5,
        body: ping(1),
    };
    c.send(&accepted).unwrap();
    assert_eq!(count(&pongs(&mut c), PONG), 1);
    for (msg_id, seq_no, code) in [
        // After it, with a lower seqno: too low.
        (c.next_msg_id(), 3, 32),
        // After it, with the same odd seqno (two content messages never share one).
        (c.next_msg_id(), 5, 32),
        // Before it, with a higher seqno: too high.
        (accepted.msg_id - 4, 7, 33),
    ] {
        c.send(&Message {
            msg_id,
            seq_no,
            body: ping(2),
        })
        .unwrap();
        let got = c.receive(QUIET).unwrap();
        assert_eq!(bad_msgs(&got), [(msg_id, code)], "{got:?}");
        assert_eq!(count(&got, PONG), 0);
    }
}

#[test]
fn containers_and_the_msg_ids_inside_are_checked() {
    let t = telegram();
    let mut c = raw(&t, 3);
    // A well-formed container: both pings answered, in one container.
    let (a, b) = (c.message(ping(1), true), c.message(ping(2), true));
    let good = c.container(&[a.clone(), b]);
    c.send(&good).unwrap();
    assert_eq!(count(&pongs(&mut c), PONG), 2, "answered together");

    // Contents newer than their container.
    let container_id = c.next_msg_id();
    let inner = c.message(ping(3), true);
    let bad = Message {
        msg_id: container_id,
        seq_no: c.next_seq_no(false),
        body: container(&[inner]),
    };
    c.send(&bad).unwrap();
    assert_eq!(bad_msgs(&c.receive(QUIET).unwrap()), [(container_id, 64)]);

    // A container reusing a received msg_id.
    let inner = c.message(ping(4), true);
    let reused = Message {
        msg_id: good.msg_id,
        seq_no: c.next_seq_no(false),
        body: container(&[inner]),
    };
    c.send(&reused).unwrap();
    assert_eq!(bad_msgs(&c.receive(QUIET).unwrap()), [(good.msg_id, 19)]);

    // Inside a container: an odd msg_id is refused, a duplicate ignored, the rest answered.
    let odd = Message {
        msg_id: c.next_msg_id() | 1,
        seq_no: c.next_seq_no(true),
        body: ping(5),
    };
    let fresh = c.message(ping(6), true);
    let mixed = c.container(&[a, odd.clone(), fresh]);
    c.send(&mixed).unwrap();
    let got = c.receive(QUIET).unwrap();
    assert_eq!(bad_msgs(&got), [(odd.msg_id, 18)], "{got:?}");
    let pong_ids: Vec<i64> = got
        .iter()
        .filter_map(|m| match enums::Pong::from_bytes(&m.body) {
            Ok(enums::Pong::Pong(p)) => Some(p.ping_id),
            Err(_) => None,
        })
        .collect();
    assert_eq!(pong_ids, [6], "only the new ping is answered");
}

#[test]
fn a_msg_id_below_every_remembered_one_cannot_be_checked() {
    let t = telegram();
    t.configure(|s| s.remembered_msg_ids = 4);
    let mut c = raw(&t, 4);
    let early = c.next_msg_id();
    for i in 0..5 {
        let m = c.message(ping(i), true);
        c.send(&m).unwrap();
        assert_eq!(count(&pongs(&mut c), PONG), 1);
    }
    c.send(&Message {
        msg_id: early,
        seq_no: 1,
        body: ping(9),
    })
    .unwrap();
    assert_eq!(bad_msgs(&c.receive(QUIET).unwrap()), [(early, 20)]);
}

#[test]
fn padding_must_be_12_to_1024_bytes() {
    let t = telegram();
    // A ping's plaintext is 44 bytes: 4, 1012 or 1028 bytes of padding make it a multiple
    // of 16.
    for (padding, accepted) in [(4, false), (1028, false), (1012, true), (20, true)] {
        let mut c = raw(&t, 5);
        let m = c.message(ping(1), true);
        assert_eq!(RawClient::plaintext_len(&m), 44);
        let salt = c.salt;
        c.send_with(&m, salt, padding).unwrap();
        let got = c.receive_until(WAIT, |r| constructor(&r.body) == Some(PONG));
        match got {
            Ok(got) if accepted => assert_eq!(count(&got, PONG), 1, "{padding}"),
            Err(CallError::Transport(404)) if !accepted => {}
            other => panic!("{padding} bytes of padding: {other:?}"),
        }
    }
}

/// Sleeps until Unix time `at_ms`.
fn sleep_until_unix_ms(at_ms: i64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    if at_ms > now {
        std::thread::sleep(Duration::from_millis((at_ms - now) as u64));
    }
}

#[test]
fn salts_rotate_and_an_old_one_is_refused_after_its_grace() {
    let t = telegram();
    t.configure(|s| {
        s.salt_period = Duration::from_secs(1);
        s.salt_grace = Duration::from_millis(500);
    });
    let mut c = raw(&t, 6);
    let request = c.message(functions::GetFutureSalts { num: 3 }.to_bytes(), true);
    c.send(&request).unwrap();
    let got = c
        .receive_until(WAIT, |m| {
            constructor(&m.body) == Some(types::FutureSalts::CONSTRUCTOR_ID)
        })
        .unwrap();
    let salts = got
        .iter()
        .find_map(|m| match enums::FutureSalts::from_bytes(&m.body) {
            Ok(enums::FutureSalts::Salts(s)) => Some(s.salts.0),
            Err(_) => None,
        })
        .expect("future_salts");
    assert_eq!(salts.len(), 3);
    assert!(salts[0].salt != salts[1].salt && salts[1].salt != salts[2].salt);
    assert!(
        salts
            .windows(2)
            .all(|w| w[0].valid_since < w[1].valid_since)
    );
    let (old, next) = (salts[0].salt, &salts[1]);
    let next_starts_ms = i64::from(next.valid_since) * 1000;

    // The next period has begun: the old salt is still accepted, within its grace.
    sleep_until_unix_ms(next_starts_ms + 100);
    let m = c.message(ping(1), true);
    c.send_with(&m, old, 20).unwrap();
    assert_eq!(count(&pongs(&mut c), PONG), 1, "within the grace time");

    // Past its grace: bad_server_salt with the current one.
    sleep_until_unix_ms(next_starts_ms + 700);
    let m = c.message(ping(2), true);
    c.send_with(&m, old, 20).unwrap();
    let got = c.receive(QUIET).unwrap();
    let new_salt = got
        .iter()
        .find_map(|r| match enums::BadMsgNotification::from_bytes(&r.body) {
            Ok(enums::BadMsgNotification::BadServerSalt(b)) if b.bad_msg_id == m.msg_id => {
                Some(b.new_server_salt)
            }
            _ => None,
        });
    assert_eq!(new_salt, Some(next.salt), "{got:?}");
}

#[test]
fn a_stall_holds_only_its_answer_which_is_acknowledged_at_once() {
    let t = telegram();
    t.add_fault(Fault {
        millis: 800,
        ..Fault::new(FaultKind::Stall).for_method("updates.getState")
    })
    .unwrap();
    let mut c = raw(&t, 7);
    let body = init_connection(TEST_API_ID, functions::updates::GetState {}.to_bytes());
    let request = c.message(body, true);
    c.send(&request).unwrap();
    let later_ping = c.message(ping(1), true);
    c.send(&later_ping).unwrap();
    let early = pongs(&mut c);
    assert_eq!(count(&early, PONG), 1, "a later ping is answered meanwhile");
    assert!(acked(&early).contains(&request.msg_id), "{early:?}");
    assert!(rpc_result_for(&early, request.msg_id).is_none(), "not held");
    let late = c
        .receive_until(WAIT, |m| {
            rpc_result_for(std::slice::from_ref(m), request.msg_id).is_some()
        })
        .unwrap();
    assert!(rpc_result_for(&late, request.msg_id).is_some(), "{late:?}");
}

#[test]
fn unacknowledged_updates_are_sent_again_until_acknowledged() {
    let t = telegram();
    t.configure(|s| s.resend_after = Duration::from_millis(300));
    let mut c = raw(&t, 8);
    get_state(&mut c);
    t.send_text("bot1", 42, "hello").unwrap();
    let first = c.receive_until(WAIT, is_updates).unwrap();
    let first = first.into_iter().find(is_updates).expect("the update");
    let again = c
        .receive_until(WAIT, |m| is_updates(m) && m.msg_id != first.msg_id)
        .unwrap();
    let again = again
        .into_iter()
        .find(|m| is_updates(m) && m.msg_id != first.msg_id)
        .expect("sent again");
    assert_eq!(again.body, first.body);
    assert_eq!(again.seq_no & 1, 1, "content-related");
    let ack = c.message(msgs_ack(vec![again.msg_id]), false);
    c.send(&ack).unwrap();
    let after = c.receive(Duration::from_millis(900)).unwrap();
    assert_eq!(
        after.iter().filter(|m| is_updates(m)).count(),
        0,
        "{after:?}"
    );
}

#[test]
fn a_session_too_far_behind_gets_updates_too_long() {
    let t = telegram();
    t.configure(|s| s.max_unacked_updates = 2);
    let mut c = raw(&t, 9);
    get_state(&mut c);
    for i in 0..4 {
        t.send_text("bot1", 42, &format!("m{i}")).unwrap();
    }
    let got = c.receive(Duration::from_millis(800)).unwrap();
    let too_long = enums::Updates::TooLong.to_bytes();
    assert_eq!(got.iter().filter(|m| is_updates(m)).count(), 2, "{got:?}");
    assert_eq!(got.iter().filter(|m| m.body == too_long).count(), 1);
    // Until it fetches the difference, nothing more is pushed.
    let body = functions::updates::GetDifference {
        pts: 1,
        pts_limit: None,
        pts_total_limit: None,
        date: 0,
        qts: 0,
        qts_limit: None,
    };
    let m = c.message(body.to_bytes(), true);
    c.send(&m).unwrap();
    let got = c
        .receive_until(WAIT, |r| {
            rpc_result_for(std::slice::from_ref(r), m.msg_id).is_some()
        })
        .unwrap();
    assert!(rpc_result_for(&got, m.msg_id).is_some());
    t.send_text("bot1", 42, "caught up").unwrap();
    let got = c.receive_until(WAIT, is_updates).unwrap();
    assert_eq!(got.iter().filter(|m| is_updates(m)).count(), 1);
}

#[test]
fn an_idle_connection_is_closed() {
    let t = telegram();
    t.configure(|s| s.idle_timeout = Duration::from_millis(400));
    let mut busy = raw(&t, 10);
    let mut idle = raw(&t, 11);
    let m = idle.message(ping(1), true);
    idle.send(&m).unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1200) {
        let m = busy.message(ping(1), true);
        busy.send(&m).unwrap();
        assert_eq!(
            count(&pongs(&mut busy), PONG),
            1,
            "a busy connection stays open"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(idle.closed_within(WAIT), "the idle connection is closed");
}
