//! Updates on the fake DC in the shapes and by the rules Telegram documents
//! (core.telegram.org/api/updates): getDifference's limits and slices, short updates,
//! seq ranges, supergroups and channels with their own pts and getChannelDifference, and
//! which sessions get pushed updates.

use std::time::Duration;

use grammers_tl_types::enums;
use telegram_bots_tests::fake_dc::FakeTelegram;
use telegram_bots_tests::fake_dc::client::{Framing, TestClient, test_key};

const TOKEN: &str = "7000001:AAupdates-test";

fn telegram() -> FakeTelegram {
    let t = FakeTelegram::start(2).expect("start the fake DCs");
    t.add_bot(TOKEN, "bot1").unwrap();
    t
}

/// A client on DC 1 with a stored key logged in as bot1.
fn logged_in(t: &FakeTelegram, seed: u8) -> TestClient {
    t.add_auth_key(1, test_key(seed), Some("bot1")).unwrap();
    TestClient::with_key(t.addr(1), test_key(seed), Framing::Full).unwrap()
}

fn texts(t: &FakeTelegram, n: usize) {
    for i in 0..n {
        t.send_text("bot1", 42, &format!("m{i}")).unwrap();
    }
}

#[test]
fn get_difference_limits_and_slices_as_documented() {
    let t = telegram();
    t.configure(|s| {
        s.difference_slice = 3;
        s.difference_limit = 20;
    });
    let mut client = logged_in(&t, 1);
    let start = client.get_state().unwrap().pts;
    texts(&t, 3);
    // A later second, so that a slice's date differs from the latest.
    std::thread::sleep(Duration::from_millis(1100));
    texts(&t, 3);

    // pts_total_limit is a threshold: more behind than it is differenceTooLong.
    let answer = client.get_difference(start, 0, Some(5)).unwrap();
    let enums::updates::Difference::TooLong(too_long) = answer else {
        panic!("6 behind with pts_total_limit 5: {answer:?}")
    };
    assert_eq!(too_long.pts, start + 6);

    // Within it, slices have the server's fixed size, whatever the limit.
    let answer = client.get_difference(start, 0, Some(6)).unwrap();
    let enums::updates::Difference::Slice(slice) = answer else {
        panic!("want a slice: {answer:?}")
    };
    assert_eq!(slice.new_messages.len(), 3);
    let enums::updates::State::State(mid) = slice.intermediate_state;
    let last_date = match &slice.new_messages[2] {
        enums::Message::Message(m) => m.date,
        other => panic!("{other:?}"),
    };
    assert_eq!(mid.pts, start + 3);
    assert_eq!(mid.date, last_date, "the date of the slice's last message");
    let enums::updates::State::State(now) = client
        .call(&grammers_tl_types::functions::updates::GetState {})
        .unwrap();
    assert!(mid.date < now.date, "not the latest date");

    let answer = client.get_difference(mid.pts, mid.date, None).unwrap();
    let enums::updates::Difference::Difference(rest) = answer else {
        panic!("want the rest: {answer:?}")
    };
    assert_eq!(rest.new_messages.len(), 3);
    let enums::updates::State::State(end) = rest.state;
    assert_eq!((end.pts, end.date), (now.pts, now.date));

    // The server's own limit.
    texts(&t, 15);
    let answer = client.get_difference(start, 0, None).unwrap();
    assert!(
        matches!(answer, enums::updates::Difference::TooLong(_)),
        "21 behind with a limit of 20: {answer:?}"
    );
    let answer = client.get_difference(end.pts, 0, None).unwrap();
    assert!(matches!(answer, enums::updates::Difference::Slice(_)));
}
