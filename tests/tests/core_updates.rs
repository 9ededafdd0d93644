//! The core's reading of Telegram's update shapes, on objects built like the fake DC's.

use grammers_tl_types::{enums, types};
use telegram_bots_core::updates::{self, Peer, Received};
use telegram_bots_tests::fake_dc::tl_defaults;

fn message(id: i32, peer: enums::Peer) -> enums::Message {
    enums::Message::Message(tl_defaults::message(
        id,
        peer,
        1_790_000_000,
        "hello".into(),
    ))
}

fn updates(list: Vec<enums::Update>) -> enums::Updates {
    enums::Updates::Updates(types::Updates {
        updates: list,
        users: vec![],
        chats: vec![],
        date: 0,
        seq: 0,
    })
}

#[test]
fn supergroup_messages_carry_the_channels_own_pts() {
    let channel = enums::Peer::Channel(types::PeerChannel { channel_id: 555 });
    let mut m = tl_defaults::message(9, channel, 1_790_000_000, "in a supergroup".into());
    m.from_id = Some(enums::Peer::User(types::PeerUser { user_id: 77 }));
    let u = updates(vec![enums::Update::NewChannelMessage(
        types::UpdateNewChannelMessage {
            message: enums::Message::Message(m),
            pts: 40,
            pts_count: 1,
        },
    )]);
    let got = updates::channel_events(updates::parts(&u).0);
    let [
        updates::ChannelEvent::Update {
            channel_id,
            pts,
            pts_count,
            message: Some(m),
        },
    ] = &got[..]
    else {
        panic!("{got:?}")
    };
    assert_eq!((*channel_id, *pts, *pts_count), (555, 40, 1));
    assert_eq!(
        (m.chat, m.message_id, m.from_user_id),
        (Peer::Channel(555), 9, Some(77))
    );
    let Received::Updates(account) = updates::received(&u) else {
        panic!()
    };
    assert!(account.is_empty(), "channel pts is not the account's pts");
}

#[test]
fn private_and_group_messages_carry_their_sender() {
    let private = message(1, enums::Peer::User(types::PeerUser { user_id: 42 }));
    let m = updates::incoming(&private).unwrap();
    assert_eq!(
        (m.chat, m.from_user_id, m.text.as_str()),
        (Peer::User(42), Some(42), "hello")
    );
    let mut outgoing = tl_defaults::message(
        2,
        enums::Peer::User(types::PeerUser { user_id: 42 }),
        0,
        String::new(),
    );
    outgoing.out = true;
    assert!(
        updates::incoming(&enums::Message::Message(outgoing)).is_none(),
        "the bot's own messages are not incoming"
    );
}

/// Telegram numbers users, basic groups and channels separately: the same number in two
/// kinds of chat is two chats, and a message keeps which one it came from.
#[test]
fn a_chat_keeps_its_kind_so_equal_ids_do_not_collide() {
    let in_group = message(3, enums::Peer::Chat(types::PeerChat { chat_id: 42 }));
    let in_channel = message(
        3,
        enums::Peer::Channel(types::PeerChannel { channel_id: 42 }),
    );
    let private = message(3, enums::Peer::User(types::PeerUser { user_id: 42 }));
    let chats: Vec<Peer> = [in_group, in_channel, private]
        .iter()
        .map(|m| updates::incoming(m).unwrap().chat)
        .collect();
    assert_eq!(chats, [Peer::Chat(42), Peer::Channel(42), Peer::User(42)]);
    assert_eq!(chats[0].to_string(), "chat 42");
    let group_short = enums::Updates::UpdateShortChatMessage(types::UpdateShortChatMessage {
        out: false,
        mentioned: false,
        media_unread: false,
        silent: false,
        id: 6,
        from_id: 7,
        chat_id: 42,
        message: "hi all".into(),
        pts: 12,
        pts_count: 1,
        date: 0,
        fwd_from: None,
        via_bot_id: None,
        reply_to: None,
        entities: None,
        ttl_period: None,
    });
    let Received::Updates(list) = updates::received(&group_short) else {
        panic!()
    };
    assert_eq!(list[0].message.as_ref().unwrap().chat, Peer::Chat(42));
}

#[test]
fn short_updates_count_against_the_account_pts() {
    let short = enums::Updates::UpdateShortMessage(types::UpdateShortMessage {
        out: false,
        mentioned: false,
        media_unread: false,
        silent: false,
        id: 5,
        user_id: 42,
        message: "hi".into(),
        pts: 11,
        pts_count: 1,
        date: 0,
        fwd_from: None,
        via_bot_id: None,
        reply_to: None,
        entities: None,
        ttl_period: None,
    });
    let Received::Updates(list) = updates::received(&short) else {
        panic!()
    };
    assert_eq!(
        (list[0].pts, list[0].message.as_ref().unwrap().text.as_str()),
        (11, "hi")
    );
    assert!(matches!(
        updates::received(&enums::Updates::TooLong),
        Received::TooLong
    ));
}
