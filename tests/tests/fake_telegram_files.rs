//! Files on the fake DC as Telegram serves them to bots: only to a bot that received them,
//! with file references that expire and come fresh with every message handed out; and
//! Telegram's answer to methods a bot may not call.

use std::time::Duration;

use grammers_tl_types::{enums, functions, types};
use telegram_bots_tests::fake_dc::FakeTelegram;
use telegram_bots_tests::fake_dc::channels::ChannelPost;
use telegram_bots_tests::fake_dc::client::{CallError, Framing, RpcError, TestClient, test_key};
use telegram_bots_tests::fake_dc::world::{Content, NewMessage, VoiceForm, voice_bytes};

const TOKEN: &str = "7000001:AAfiles-test";

fn telegram() -> FakeTelegram {
    let t = FakeTelegram::start(1).expect("start the fake DC");
    t.add_bot(TOKEN, "bot1").unwrap();
    t.add_bot("7000002:AAfiles-other", "bot2").unwrap();
    t
}

fn logged_in(t: &FakeTelegram, seed: u8, bot: &str) -> TestClient {
    t.add_auth_key(1, test_key(seed), Some(bot)).unwrap();
    let mut client = TestClient::with_key(t.addr(1), test_key(seed), Framing::Full).unwrap();
    client.get_state().unwrap();
    client
}

fn voice(seed: u64) -> Content {
    Content::Voice {
        size: 10_000,
        duration: 1,
        mime_type: "audio/ogg".into(),
        seed,
        bytes: None,
        dc: None,
        form: VoiceForm::Voice,
    }
}

fn rpc_error<T: std::fmt::Debug>(result: Result<T, CallError>) -> (i32, String) {
    match result {
        Err(CallError::Rpc(RpcError { code, message })) => (code, message),
        other => panic!("expected an RPC error, got {other:?}"),
    }
}

/// The document of the first message in `messages`.
fn document(messages: &[enums::Message]) -> types::Document {
    let Some(enums::Message::Message(m)) = messages.first() else {
        panic!("no message: {messages:?}")
    };
    let Some(enums::MessageMedia::Document(media)) = &m.media else {
        panic!("no media")
    };
    let Some(enums::Document::Document(doc)) = &media.document else {
        panic!("no document")
    };
    doc.clone()
}

/// The document of the next pushed new (channel) message.
fn pushed_document(client: &mut TestClient) -> types::Document {
    let Some(enums::Updates::Updates(u)) = client.next_update(Duration::from_secs(5)).unwrap()
    else {
        panic!("no `updates` pushed")
    };
    let message = match &u.updates[0] {
        enums::Update::NewMessage(m) => m.message.clone(),
        enums::Update::NewChannelMessage(m) => m.message.clone(),
        other => panic!("{other:?}"),
    };
    document(&[message])
}

fn download(client: &mut TestClient, doc: &types::Document) -> Result<Vec<u8>, CallError> {
    let enums::upload::File::File(file) = client.call(&functions::upload::GetFile {
        precise: false,
        cdn_supported: false,
        location: enums::InputFileLocation::InputDocumentFileLocation(
            types::InputDocumentFileLocation {
                id: doc.id,
                access_hash: doc.access_hash,
                file_reference: doc.file_reference.clone(),
                thumb_size: String::new(),
            },
        ),
        offset: 0,
        limit: 16 * 1024,
    })?
    else {
        panic!("CDN redirect?")
    };
    Ok(file.bytes)
}

#[test]
fn a_bot_downloads_only_files_from_messages_it_received() {
    let t = telegram();
    let mut bot1 = logged_in(&t, 1, "bot1");
    let mut bot2 = logged_in(&t, 2, "bot2");
    t.send_message(NewMessage {
        bot: "bot1".into(),
        chat_id: 42,
        from_user_id: 42,
        content: voice(1),
    })
    .unwrap();
    let doc = pushed_document(&mut bot1);
    assert_eq!(download(&mut bot1, &doc).unwrap(), voice_bytes(1, 10_000));
    assert_eq!(
        rpc_error(download(&mut bot2, &doc)),
        (400, "FILE_ID_INVALID".into()),
        "bot2 never received it"
    );

    // In a supergroup both are in, both received it.
    let group = t.add_channel("group", true, &["bot1", "bot2"]).unwrap();
    t.send_channel_message(ChannelPost {
        channel_id: group,
        from_user_id: Some(42),
        content: voice(2),
    })
    .unwrap();
    for client in [&mut bot1, &mut bot2] {
        let doc = pushed_document(client);
        assert_eq!(download(client, &doc).unwrap(), voice_bytes(2, 10_000));
    }
}

#[test]
fn file_references_expire_and_messages_fetched_again_bring_fresh_ones() {
    let t = telegram();
    t.configure(|s| s.file_reference_ttl = Duration::from_millis(500));
    let mut client = logged_in(&t, 3, "bot1");
    let sent = t
        .send_message(NewMessage {
            bot: "bot1".into(),
            chat_id: 42,
            from_user_id: 42,
            content: voice(3),
        })
        .unwrap();
    let doc = pushed_document(&mut client);
    download(&mut client, &doc).expect("a fresh reference");
    let mut forged = doc.clone();
    forged.file_reference[0] ^= 1;
    assert_eq!(
        rpc_error(download(&mut client, &forged)),
        (400, "FILE_REFERENCE_INVALID".into())
    );

    // A long downtime: the reference the client kept has expired on its own.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        rpc_error(download(&mut client, &doc)),
        (400, "FILE_REFERENCE_EXPIRED".into())
    );
    let enums::messages::Messages::Messages(got) = client
        .call(&functions::messages::GetMessages {
            id: vec![
                enums::InputMessage::Id(types::InputMessageId {
                    id: sent.message_id,
                }),
                enums::InputMessage::Id(types::InputMessageId { id: 999 }),
            ],
        })
        .unwrap()
    else {
        panic!("not messages.messages")
    };
    assert!(matches!(got.messages[1], enums::Message::Empty(_)));
    assert_eq!(got.users.len(), 1, "the sender comes along");
    let fresh = document(&got.messages);
    assert_ne!(fresh.file_reference, doc.file_reference);
    assert_eq!(
        download(&mut client, &fresh).unwrap(),
        voice_bytes(3, 10_000)
    );

    // The same in a channel, through channels.getMessages.
    let channel = t.add_channel("news", false, &["bot1"]).unwrap();
    let post = t
        .send_channel_message(ChannelPost {
            channel_id: channel,
            from_user_id: None,
            content: voice(4),
        })
        .unwrap();
    let doc = pushed_document(&mut client);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        rpc_error(download(&mut client, &doc)),
        (400, "FILE_REFERENCE_EXPIRED".into())
    );
    let access_hash = t.world().channels[&channel].access_hash;
    let enums::messages::Messages::ChannelMessages(got) = client
        .call(&functions::channels::GetMessages {
            channel: enums::InputChannel::Channel(types::InputChannel {
                channel_id: channel,
                access_hash,
            }),
            id: vec![enums::InputMessage::Id(types::InputMessageId {
                id: post.message_id,
            })],
        })
        .unwrap()
    else {
        panic!("not messages.channelMessages")
    };
    assert_eq!((got.pts, got.count), (post.pts, 1));
    assert_eq!(
        download(&mut client, &document(&got.messages)).unwrap(),
        voice_bytes(4, 10_000)
    );
}

#[test]
fn methods_a_bot_may_not_call_get_telegrams_answer_for_bots() {
    let t = telegram();
    let mut client = logged_in(&t, 4, "bot1");
    let refused = (400, "BOT_METHOD_INVALID".to_owned());
    assert_eq!(
        rpc_error(client.call(&functions::messages::GetDialogFilters {})),
        refused
    );
    assert_eq!(
        rpc_error(client.call(&functions::contacts::GetContacts { hash: 0 })),
        refused
    );
    assert_eq!(
        rpc_error(client.call(&functions::account::GetAuthorizations {})),
        refused
    );
    assert_eq!(
        rpc_error(client.call(&functions::messages::GetHistory {
            peer: enums::InputPeer::PeerSelf,
            offset_id: 0,
            offset_date: 0,
            add_offset: 0,
            limit: 10,
            max_id: 0,
            min_id: 0,
            hash: 0,
        })),
        refused
    );
}
