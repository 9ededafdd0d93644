//! The demo's cast and script: three bots, three users who write to them, a supergroup
//! with all of them, and the messages the users send.

use telegram_bots_fake_telegram::FakeTelegram;
use telegram_bots_fake_telegram::channels::ChannelPost;
use telegram_bots_fake_telegram::world::{Content, NewMessage, VoiceForm};

/// A demo bot: its workspace in the store, and who it is on the fake Telegram.
#[derive(Debug)]
pub struct DemoBot {
    pub workspace_id: &'static str,
    pub username: &'static str,
    /// A made-up token of Telegram's shape; the fake Telegram knows it, nothing else does.
    pub token: &'static str,
}

pub const BOTS: [DemoBot; 3] = [
    DemoBot {
        workspace_id: "demo-alpha",
        username: "demo_alpha_bot",
        token: "7000000001:AAdemoAlphaNotARealTelegramToken000",
    },
    DemoBot {
        workspace_id: "demo-bravo",
        username: "demo_bravo_bot",
        token: "7000000002:AAdemoBravoNotARealTelegramToken000",
    },
    DemoBot {
        workspace_id: "demo-charlie",
        username: "demo_charlie_bot",
        token: "7000000003:AAdemoCharlieNotARealTelegramToken0",
    },
];

/// The users who write to the bots: (user id, first name).
const USERS: [(i64, &str); 3] = [(9000001, "Alice"), (9000002, "Bob"), (9000003, "Carol")];

/// The supergroup all three bots are in.
pub const GROUP_TITLE: &str = "Demo team";

/// Real speech (espeak-ng, encoded by opusenc), as Telegram's apps record voice notes:
/// (Ogg/Opus bytes, whole seconds).
const SAMPLES: [(&[u8], i32); 4] = [
    (include_bytes!("samples/voice-1.ogg"), 3),
    (include_bytes!("samples/voice-2.ogg"), 4),
    (include_bytes!("samples/voice-3.ogg"), 5),
    (include_bytes!("samples/voice-4.ogg"), 4),
];

const TEXTS: [&str; 3] = [
    "hi! did you get my voice note?",
    "sending the minutes in a minute",
    "thanks!",
];

/// Registers the cast on a new fake Telegram; the supergroup's id.
pub fn create(telegram: &FakeTelegram) -> Result<i64, String> {
    for bot in &BOTS {
        telegram.add_bot(bot.token, bot.username)?;
    }
    let mut world = telegram.world();
    for (id, name) in USERS {
        let access_hash = world.fresh_id();
        let user = telegram_bots_fake_telegram::world::User {
            id,
            access_hash,
            first_name: name.to_owned(),
        };
        world.users.insert(id, user);
    }
    let bots: Vec<&str> = BOTS.iter().map(|b| b.username).collect();
    world.add_channel(GROUP_TITLE, true, &bots)
}

/// The supergroup of a restored world.
pub fn group(telegram: &FakeTelegram) -> Result<i64, String> {
    let world = telegram.world();
    world
        .channels
        .values()
        .find(|c| c.title == GROUP_TITLE)
        .map(|c| c.id)
        .ok_or_else(|| format!("no supergroup {GROUP_TITLE:?}"))
}

fn voice(n: u64) -> Content {
    let (bytes, duration) = SAMPLES[(n % SAMPLES.len() as u64) as usize];
    Content::Voice {
        size: bytes.len(),
        duration,
        mime_type: "audio/ogg".into(),
        seed: 0,
        bytes: Some(bytes.to_vec()),
        dc: None,
        form: VoiceForm::Voice,
    }
}

/// What the `n`-th step of the script sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// A voice message in a private chat.
    Voice,
    /// A text in a private chat.
    Text,
    /// A voice message in the supergroup (each bot gets it).
    GroupVoice,
}

/// Sends the script's `n`-th message: first a voice message to each bot, then one
/// message every step, mostly voice, sometimes a text or a voice in the supergroup.
pub fn send(telegram: &FakeTelegram, n: u64, group: i64) -> Result<Step, String> {
    let bot = &BOTS[(n % 3) as usize];
    let (user, _) = USERS[((n / 3) % 3) as usize];
    let step = match n {
        0..=2 => Step::Voice,
        _ if n % 6 == 5 => Step::Text,
        _ if n % 6 == 3 => Step::GroupVoice,
        _ => Step::Voice,
    };
    match step {
        Step::GroupVoice => {
            telegram.send_channel_message(ChannelPost {
                channel_id: group,
                from_user_id: Some(user),
                content: voice(n),
            })?;
        }
        Step::Voice | Step::Text => {
            let content = match step {
                Step::Text => Content::Text(TEXTS[(n % 3) as usize].to_owned()),
                _ => voice(n),
            };
            telegram.send_message(NewMessage {
                bot: bot.username.to_owned(),
                chat_id: user,
                from_user_id: user,
                content,
            })?;
        }
    }
    Ok(step)
}
