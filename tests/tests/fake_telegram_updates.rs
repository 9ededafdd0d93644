//! Updates on the fake DC in the shapes and by the rules Telegram documents
//! (core.telegram.org/api/updates): getDifference's limits and slices, short updates,
//! seq ranges, supergroups and channels with their own pts and getChannelDifference, and
//! which sessions get pushed updates.

use std::time::Duration;

use grammers_tl_types::{Serializable as _, enums, functions, types};
use telegram_bots_tests::fake_dc::channels::ChannelPost;
use telegram_bots_tests::fake_dc::client::{
    CallError, Framing, TestClient, init_connection, test_key,
};
use telegram_bots_tests::fake_dc::fault::{Fault, FaultKind};
use telegram_bots_tests::fake_dc::world::{Content, NewMessage, VoiceForm};
use telegram_bots_tests::fake_dc::{FakeTelegram, TEST_API_ID};

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

fn next_update(client: &mut TestClient) -> enums::Updates {
    client
        .next_update(Duration::from_secs(5))
        .unwrap()
        .expect("a pushed update")
}

fn no_update(client: &mut TestClient) {
    let got = client.next_update(Duration::from_millis(400)).unwrap();
    assert!(got.is_none(), "pushed: {got:?}");
}

#[test]
fn updates_come_in_the_shapes_telegram_sends() {
    let t = telegram();
    let mut client = logged_in(&t, 2);
    let start = client.get_state().unwrap();

    // Plain text: updateShortMessage in a private chat, updateShortChatMessage in a group.
    let sent = t.send_text("bot1", 42, "hello").unwrap();
    let enums::Updates::UpdateShortMessage(short) = next_update(&mut client) else {
        panic!("not an updateShortMessage")
    };
    assert_eq!(
        (
            short.id,
            short.user_id,
            short.message.as_str(),
            short.pts,
            short.pts_count
        ),
        (sent.message_id, 42, "hello", sent.pts, 1)
    );
    let sent = t
        .send_message(NewMessage {
            bot: "bot1".into(),
            chat_id: 77,
            from_user_id: 42,
            content: Content::Text("in a group".into()),
        })
        .unwrap();
    let enums::Updates::UpdateShortChatMessage(short) = next_update(&mut client) else {
        panic!("not an updateShortChatMessage")
    };
    assert_eq!(
        (short.chat_id, short.from_id, short.pts),
        (77, 42, sent.pts)
    );

    // Media: `updates` with the next seq.
    let voice = |seed| NewMessage {
        bot: "bot1".into(),
        chat_id: 42,
        from_user_id: 42,
        content: Content::Voice {
            size: 1000,
            duration: 1,
            mime_type: "audio/ogg".into(),
            seed,
            bytes: None,
            dc: None,
            form: VoiceForm::Voice,
        },
    };
    t.send_message(voice(1)).unwrap();
    let enums::Updates::Updates(updates) = next_update(&mut client) else {
        panic!("not `updates`")
    };
    assert_eq!(updates.seq, start.seq + 1);
    assert!(matches!(
        updates.updates[..],
        [enums::Update::NewMessage(_)]
    ));

    // Several at once: one updatesCombined with a seq range.
    let sent = t.send_messages(vec![voice(2), voice(3), voice(4)]).unwrap();
    let enums::Updates::Combined(combined) = next_update(&mut client) else {
        panic!("not updatesCombined")
    };
    assert_eq!(
        (combined.seq_start, combined.seq, combined.updates.len()),
        (start.seq + 2, start.seq + 4, 3)
    );
    let state = client.get_state().unwrap();
    assert_eq!((state.seq, state.pts), (start.seq + 4, sent[2].pts));

    // A deletion: updateShort, two pts at once.
    let pts = t.delete_messages("bot1", vec![1, 2]).unwrap();
    let enums::Updates::UpdateShort(short) = next_update(&mut client) else {
        panic!("not updateShort")
    };
    let enums::Update::DeleteMessages(deleted) = short.update else {
        panic!("not a deletion")
    };
    assert_eq!(
        (deleted.messages, deleted.pts, deleted.pts_count),
        (vec![1, 2], pts, 2)
    );

    // getDifference: the messages, and the deletion among the other updates.
    let enums::updates::Difference::Difference(d) =
        client.get_difference(start.pts, start.date, None).unwrap()
    else {
        panic!("want the difference")
    };
    assert_eq!(d.new_messages.len(), 6);
    assert!(
        matches!(d.other_updates[..], [enums::Update::DeleteMessages(_)]),
        "{:?}",
        d.other_updates
    );
}

#[test]
fn faults_push_updates_too_long_twice_or_out_of_order() {
    let t = telegram();
    let mut client = logged_in(&t, 3);
    let start = client.get_state().unwrap();
    t.add_fault(Fault::new(FaultKind::UpdatesTooLong).for_bot("bot1"))
        .unwrap();
    let lost = t.send_text("bot1", 42, "lost").unwrap();
    assert!(matches!(next_update(&mut client), enums::Updates::TooLong));
    let enums::updates::Difference::Difference(d) =
        client.get_difference(start.pts, start.date, None).unwrap()
    else {
        panic!("want the difference")
    };
    assert_eq!(d.new_messages.len(), 1, "the message is in the difference");

    t.add_fault(Fault::new(FaultKind::DuplicateUpdate).for_bot("bot1"))
        .unwrap();
    let twice = t.send_text("bot1", 42, "twice").unwrap();
    for _ in 0..2 {
        let enums::Updates::UpdateShortMessage(m) = next_update(&mut client) else {
            panic!()
        };
        assert_eq!(m.pts, twice.pts);
    }

    t.add_fault(Fault::new(FaultKind::ReorderUpdates).for_bot("bot1"))
        .unwrap();
    let first = t.send_text("bot1", 42, "first").unwrap();
    no_update(&mut client);
    let second = t.send_text("bot1", 42, "second").unwrap();
    let order: Vec<i32> = (0..2)
        .map(|_| match next_update(&mut client) {
            enums::Updates::UpdateShortMessage(m) => m.pts,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(order, [second.pts, first.pts], "out of order");
    assert!(lost.pts < twice.pts);
}

fn input_channel(t: &FakeTelegram, id: i64) -> enums::InputChannel {
    enums::InputChannel::Channel(types::InputChannel {
        channel_id: id,
        access_hash: t.world().channels[&id].access_hash,
    })
}

fn channel_difference(
    client: &mut TestClient,
    channel: enums::InputChannel,
    pts: i32,
    limit: i32,
) -> Result<enums::updates::ChannelDifference, CallError> {
    client.call(&functions::updates::GetChannelDifference {
        force: false,
        channel,
        filter: enums::ChannelMessagesFilter::Empty,
        pts,
        limit,
    })
}

#[test]
fn supergroups_and_channels_have_their_own_pts_and_difference() {
    let t = telegram();
    t.add_bot("7000002:AAother", "bot2").unwrap();
    let group = t.add_channel("a supergroup", true, &["bot1"]).unwrap();
    let channel = t.add_channel("a channel", false, &["bot1"]).unwrap();
    let mut client = logged_in(&t, 4);
    let start = client.get_state().unwrap();

    let sent = t.send_group_text(group, 42, "in the supergroup").unwrap();
    let enums::Updates::Updates(u) = next_update(&mut client) else {
        panic!("not `updates`")
    };
    assert_eq!(u.seq, 0, "channel updates are outside the common sequence");
    let [enums::Update::NewChannelMessage(m)] = &u.updates[..] else {
        panic!("{:?}", u.updates)
    };
    assert_eq!((m.pts, m.pts_count), (sent.pts, 1));
    let enums::Message::Message(message) = &m.message else {
        panic!()
    };
    assert!(matches!(message.peer_id, enums::Peer::Channel(ref p) if p.channel_id == group));
    assert!(matches!(
        u.chats[..],
        [enums::Chat::Channel(ref c)] if c.megagroup && c.access_hash.is_some()
    ));
    assert_eq!(
        client.get_state().unwrap().pts,
        start.pts,
        "the common pts is untouched"
    );

    let post = t
        .send_channel_message(ChannelPost {
            channel_id: channel,
            from_user_id: None,
            content: Content::Text("a post".into()),
        })
        .unwrap();
    let enums::Updates::Updates(u) = next_update(&mut client) else {
        panic!()
    };
    let [enums::Update::NewChannelMessage(m)] = &u.updates[..] else {
        panic!()
    };
    let enums::Message::Message(message) = &m.message else {
        panic!()
    };
    assert!(message.post && message.from_id.is_none());
    assert_eq!(post.pts, 2, "each channel counts its own pts");

    // getChannelDifference: slices of `limit`, final at the channel's pts, empty after.
    t.send_group_text(group, 43, "two").unwrap();
    t.send_group_text(group, 44, "three").unwrap();
    for _ in 0..2 {
        next_update(&mut client);
    }
    let d = channel_difference(&mut client, input_channel(&t, group), 1, 2).unwrap();
    let enums::updates::ChannelDifference::Difference(d) = d else {
        panic!("{d:?}")
    };
    assert_eq!((d.r#final, d.pts, d.new_messages.len()), (false, 3, 2));
    let d = channel_difference(&mut client, input_channel(&t, group), 3, 2).unwrap();
    let enums::updates::ChannelDifference::Difference(d) = d else {
        panic!("{d:?}")
    };
    assert_eq!((d.r#final, d.pts, d.new_messages.len()), (true, 4, 1));
    let d = channel_difference(&mut client, input_channel(&t, group), 4, 2).unwrap();
    assert!(
        matches!(d, enums::updates::ChannelDifference::Empty(ref e) if e.r#final && e.pts == 4)
    );
    t.configure(|s| s.channel_difference_limit = 2);
    let d = channel_difference(&mut client, input_channel(&t, group), 1, 100).unwrap();
    let enums::updates::ChannelDifference::TooLong(too_long) = d else {
        panic!("{d:?}")
    };
    let enums::Dialog::Dialog(dialog) = too_long.dialog else {
        panic!()
    };
    assert_eq!(dialog.pts, Some(4));

    // Telegram's refusals: a wrong access hash, a channel the bot is not in.
    let wrong = enums::InputChannel::Channel(types::InputChannel {
        channel_id: group,
        access_hash: 1,
    });
    match channel_difference(&mut client, wrong, 1, 10) {
        Err(CallError::Rpc(e)) => {
            assert_eq!((e.code, e.message.as_str()), (400, "CHANNEL_INVALID"))
        }
        other => panic!("{other:?}"),
    }
    t.add_auth_key(1, test_key(40), Some("bot2")).unwrap();
    let mut other = TestClient::with_key(t.addr(1), test_key(40), Framing::Full).unwrap();
    match channel_difference(&mut other, input_channel(&t, group), 1, 10) {
        Err(CallError::Rpc(e)) => {
            assert_eq!((e.code, e.message.as_str()), (406, "CHANNEL_PRIVATE"))
        }
        other => panic!("{other:?}"),
    }

    // getDifference names the channels to catch up on, though the common box is quiet.
    let enums::updates::Difference::Difference(d) =
        client.get_difference(start.pts, start.date, None).unwrap()
    else {
        panic!("want a difference with updateChannelTooLong")
    };
    let mut named: Vec<(i64, Option<i32>)> = d
        .other_updates
        .iter()
        .filter_map(|u| match u {
            enums::Update::ChannelTooLong(c) => Some((c.channel_id, c.pts)),
            _ => None,
        })
        .collect();
    named.sort();
    let mut want = vec![(group, Some(1)), (channel, Some(1))];
    want.sort();
    assert_eq!(named, want);

    // The fault: a channel push replaced by updateChannelTooLong.
    t.add_fault(Fault::new(FaultKind::ChannelTooLong).for_bot("bot1"))
        .unwrap();
    t.send_group_text(group, 42, "too long").unwrap();
    let enums::Updates::Updates(u) = next_update(&mut client) else {
        panic!()
    };
    assert!(
        matches!(u.updates[..], [enums::Update::ChannelTooLong(ref c)] if c.channel_id == group && c.pts == Some(5)),
        "{:?}",
        u.updates
    );
}

#[test]
fn updates_go_only_to_sessions_telegram_pushes_to() {
    let t = telegram();
    // Only invokeWithoutUpdates: not subscribed.
    let mut quiet = logged_in(&t, 5);
    let body = init_connection(
        TEST_API_ID,
        functions::InvokeWithoutUpdates {
            query: functions::updates::GetState {},
        }
        .to_bytes(),
    );
    quiet.call_raw(&body).unwrap();
    // A key of another DC, logged in for downloads, that makes calls there.
    t.add_auth_key(2, test_key(6), Some("bot1")).unwrap();
    let mut elsewhere = TestClient::with_key(t.addr(2), test_key(6), Framing::Full).unwrap();
    elsewhere.get_state().unwrap();
    // Only file calls: not subscribed.
    let mut downloads = logged_in(&t, 7);
    let body = init_connection(
        TEST_API_ID,
        functions::upload::GetFile {
            precise: false,
            cdn_supported: false,
            location: enums::InputFileLocation::InputDocumentFileLocation(
                types::InputDocumentFileLocation {
                    id: 1,
                    access_hash: 1,
                    file_reference: vec![],
                    thumb_size: String::new(),
                },
            ),
            offset: 0,
            limit: 4096,
        }
        .to_bytes(),
    );
    let _ = downloads.call_raw(&body);
    let mut main = logged_in(&t, 8);
    main.get_state().unwrap();

    t.send_text("bot1", 42, "for the subscribed session only")
        .unwrap();
    assert!(matches!(
        next_update(&mut main),
        enums::Updates::UpdateShortMessage(_)
    ));
    for client in [&mut quiet, &mut elsewhere, &mut downloads] {
        no_update(client);
    }
    assert_eq!(t.stats()["messages_pushed"]["bot1"], 1);
}
