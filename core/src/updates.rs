//! Updates from Telegram: the messages in them, and the account's pts bookkeeping that
//! says whether an update can be applied, is a duplicate, or shows a gap to fill with
//! `updates.getDifference`.

use std::collections::BTreeSet;

use grammers_tl_types::{enums, types};

/// The update state that must survive a restart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpdateState {
    pub pts: i32,
    pub qts: i32,
    pub date: i32,
    pub seq: i32,
}

impl From<&types::updates::State> for UpdateState {
    fn from(s: &types::updates::State) -> Self {
        UpdateState {
            pts: s.pts,
            qts: s.qts,
            date: s.date,
            seq: s.seq,
        }
    }
}

/// A voice message's file, as `upload.getFile` needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoiceFile {
    pub document_id: i64,
    pub access_hash: i64,
    pub file_reference: Vec<u8>,
    pub dc_id: i32,
    pub size: i64,
    pub mime_type: String,
    pub duration_seconds: i32,
    pub kind: MediaKind,
}

/// What a message's audio is: a voice message, an audio file, or a round video message
/// (whose sound is transcribed as well).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MediaKind {
    #[default]
    Voice,
    Audio,
    VideoNote,
}

impl MediaKind {
    pub const ALL: [MediaKind; 3] = [MediaKind::Voice, MediaKind::Audio, MediaKind::VideoNote];

    /// The name in the configuration, the outbox and the event.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Voice => "voice",
            MediaKind::Audio => "audio",
            MediaKind::VideoNote => "video_note",
        }
    }

    pub fn parse(name: &str) -> Option<MediaKind> {
        MediaKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// Which kinds a deployment hands on as voice messages: voice messages always, audio
/// files and round video messages when asked for (`MEDIA_KINDS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MediaKinds {
    pub audio: bool,
    pub video_notes: bool,
}

impl MediaKinds {
    pub fn accepts(self, kind: MediaKind) -> bool {
        match kind {
            MediaKind::Voice => true,
            MediaKind::Audio => self.audio,
            MediaKind::VideoNote => self.video_notes,
        }
    }

    /// A comma-separated list of kinds (`voice`, `audio`, `video_note`); `voice` must be
    /// among them.
    pub fn parse(list: &str) -> Result<MediaKinds, String> {
        let mut kinds = BTreeSet::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let kind = MediaKind::parse(name)
                .ok_or_else(|| format!("unknown kind {name:?} (voice, audio, video_note)"))?;
            kinds.insert(kind);
        }
        if !kinds.contains(&MediaKind::Voice) {
            return Err("voice messages cannot be left out: list voice".into());
        }
        Ok(MediaKinds {
            audio: kinds.contains(&MediaKind::Audio),
            video_notes: kinds.contains(&MediaKind::VideoNote),
        })
    }
}

/// A chat, with its kind: Telegram numbers users, basic groups and channels (which
/// include supergroups) separately, so an id alone does not name a chat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    /// A private chat with this user.
    User(i64),
    /// A basic group.
    Chat(i64),
    /// A supergroup or a channel.
    Channel(i64),
}

impl Peer {
    pub fn id(self) -> i64 {
        match self {
            Peer::User(id) | Peer::Chat(id) | Peer::Channel(id) => id,
        }
    }

    /// `user`, `chat` or `channel`.
    pub fn kind(self) -> &'static str {
        match self {
            Peer::User(_) => "user",
            Peer::Chat(_) => "chat",
            Peer::Channel(_) => "channel",
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind(), self.id())
    }
}

impl From<&enums::Peer> for Peer {
    fn from(p: &enums::Peer) -> Self {
        match p {
            enums::Peer::User(u) => Peer::User(u.user_id),
            enums::Peer::Chat(c) => Peer::Chat(c.chat_id),
            enums::Peer::Channel(c) => Peer::Channel(c.channel_id),
        }
    }
}

/// A message a bot received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncomingMessage {
    pub chat: Peer,
    pub message_id: i32,
    pub from_user_id: Option<i64>,
    pub date: i32,
    pub text: String,
    pub voice: Option<VoiceFile>,
}

/// What to do with an update that carries pts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PtsCheck {
    Apply,
    /// Already seen (pts at or below ours).
    Duplicate,
    /// Something between ours and this one is missing.
    Gap,
}

/// Telegram's rule: apply when `local + pts_count == pts`.
pub fn check_pts(local: i32, pts: i32, pts_count: i32) -> PtsCheck {
    match (local.saturating_add(pts_count)).cmp(&pts) {
        std::cmp::Ordering::Equal => PtsCheck::Apply,
        std::cmp::Ordering::Greater => PtsCheck::Duplicate,
        std::cmp::Ordering::Less => PtsCheck::Gap,
    }
}

/// A message from `message`, if it is an incoming one worth handing on.
pub fn incoming(message: &enums::Message) -> Option<IncomingMessage> {
    let enums::Message::Message(m) = message else {
        return None;
    };
    if m.out {
        return None;
    }
    let chat = Peer::from(&m.peer_id);
    let from_user_id = match (&m.from_id, chat) {
        (Some(enums::Peer::User(u)), _) => Some(u.user_id),
        (Some(_), _) => None,
        (None, Peer::User(id)) => Some(id),
        (None, _) => None,
    };
    Some(IncomingMessage {
        chat,
        message_id: m.id,
        from_user_id,
        date: m.date,
        text: m.message.clone(),
        voice: m.media.as_ref().and_then(voice),
    })
}

/// The audio of a message: a voice message, an audio file or a round video message
/// (which of them are handed on is the bot's configuration).
fn voice(media: &enums::MessageMedia) -> Option<VoiceFile> {
    let enums::MessageMedia::Document(d) = media else {
        return None;
    };
    let Some(enums::Document::Document(doc)) = &d.document else {
        return None;
    };
    let found = doc.attributes.iter().find_map(|a| match a {
        enums::DocumentAttribute::Audio(a) if a.voice || d.voice => {
            Some((MediaKind::Voice, a.duration))
        }
        enums::DocumentAttribute::Audio(a) => Some((MediaKind::Audio, a.duration)),
        enums::DocumentAttribute::Video(v) if v.round_message || d.round => {
            Some((MediaKind::VideoNote, v.duration.round() as i32))
        }
        _ => None,
    });
    // A voice message without its audio attribute still is one.
    let (kind, duration) = found.or(d.voice.then_some((MediaKind::Voice, 0)))?;
    Some(VoiceFile {
        document_id: doc.id,
        access_hash: doc.access_hash,
        file_reference: doc.file_reference.clone(),
        dc_id: doc.dc_id,
        size: doc.size,
        mime_type: doc.mime_type.clone(),
        duration_seconds: duration,
        kind,
    })
}

/// An update with pts, flattened from the shapes Telegram sends.
#[derive(Debug)]
pub struct PtsUpdate {
    pub pts: i32,
    pub pts_count: i32,
    pub message: Option<IncomingMessage>,
}

/// What an `Updates` object asks of the bot.
#[derive(Debug)]
pub enum Received {
    /// Updates in order, each to check against the local pts.
    Updates(Vec<PtsUpdate>),
    /// Too many to push: fetch the difference.
    TooLong,
}

pub fn received(updates: &enums::Updates) -> Received {
    let from_list = |list: &[enums::Update]| list.iter().filter_map(pts_update).collect();
    match updates {
        enums::Updates::TooLong => Received::TooLong,
        enums::Updates::UpdateShortMessage(m) => Received::Updates(vec![PtsUpdate {
            pts: m.pts,
            pts_count: m.pts_count,
            message: (!m.out).then(|| IncomingMessage {
                chat: Peer::User(m.user_id),
                message_id: m.id,
                from_user_id: Some(m.user_id),
                date: m.date,
                text: m.message.clone(),
                voice: None,
            }),
        }]),
        enums::Updates::UpdateShortChatMessage(m) => Received::Updates(vec![PtsUpdate {
            pts: m.pts,
            pts_count: m.pts_count,
            message: (!m.out).then(|| IncomingMessage {
                chat: Peer::Chat(m.chat_id),
                message_id: m.id,
                from_user_id: Some(m.from_id),
                date: m.date,
                text: m.message.clone(),
                voice: None,
            }),
        }]),
        enums::Updates::UpdateShort(u) => {
            Received::Updates(pts_update(&u.update).into_iter().collect())
        }
        enums::Updates::Combined(u) => Received::Updates(from_list(&u.updates)),
        enums::Updates::Updates(u) => Received::Updates(from_list(&u.updates)),
        enums::Updates::UpdateShortSentMessage(m) => Received::Updates(vec![PtsUpdate {
            pts: m.pts,
            pts_count: m.pts_count,
            message: None,
        }]),
    }
}

/// An update of a supergroup or channel: numbered by that channel's own pts.
#[derive(Debug, PartialEq, Eq)]
pub enum ChannelEvent {
    /// A new message, an edit or a deletion, with the channel's pts rule to apply.
    Update {
        channel_id: i64,
        pts: i32,
        pts_count: i32,
        message: Option<IncomingMessage>,
    },
    /// The channel has more than Telegram pushes: fetch its difference (from `pts` when
    /// the bot has none of its own).
    TooLong { channel_id: i64, pts: Option<i32> },
}

/// The updates and the chats an `Updates` object carries.
pub fn parts(updates: &enums::Updates) -> (&[enums::Update], &[enums::Chat]) {
    match updates {
        enums::Updates::Updates(u) => (&u.updates, &u.chats),
        enums::Updates::Combined(u) => (&u.updates, &u.chats),
        enums::Updates::UpdateShort(u) => (std::slice::from_ref(&u.update), &[]),
        _ => (&[], &[]),
    }
}

/// The supergroup and channel events among `updates`, in order.
pub fn channel_events(updates: &[enums::Update]) -> Vec<ChannelEvent> {
    let channel_of = |m: &enums::Message| {
        let peer = match m {
            enums::Message::Message(m) => Some(&m.peer_id),
            enums::Message::Service(m) => Some(&m.peer_id),
            enums::Message::Empty(m) => m.peer_id.as_ref(),
        };
        match peer {
            Some(enums::Peer::Channel(c)) => Some(c.channel_id),
            _ => None,
        }
    };
    updates
        .iter()
        .filter_map(|u| match u {
            enums::Update::NewChannelMessage(u) => Some(ChannelEvent::Update {
                channel_id: channel_of(&u.message)?,
                pts: u.pts,
                pts_count: u.pts_count,
                message: incoming(&u.message),
            }),
            enums::Update::EditChannelMessage(u) => Some(ChannelEvent::Update {
                channel_id: channel_of(&u.message)?,
                pts: u.pts,
                pts_count: u.pts_count,
                message: None,
            }),
            enums::Update::DeleteChannelMessages(u) => Some(ChannelEvent::Update {
                channel_id: u.channel_id,
                pts: u.pts,
                pts_count: u.pts_count,
                message: None,
            }),
            enums::Update::ChannelTooLong(u) => Some(ChannelEvent::TooLong {
                channel_id: u.channel_id,
                pts: u.pts,
            }),
            _ => None,
        })
        .collect()
}

/// The access hashes of the channels among `chats`, as `(id, access_hash)`.
pub fn channel_hashes(chats: &[enums::Chat]) -> impl Iterator<Item = (i64, i64)> + '_ {
    chats.iter().filter_map(|c| match c {
        enums::Chat::Channel(c) => Some((c.id, c.access_hash?)),
        _ => None,
    })
}

/// The account-pts part of an update; channel and qts updates are not the bot's concern.
fn pts_update(update: &enums::Update) -> Option<PtsUpdate> {
    match update {
        enums::Update::NewMessage(u) => Some(PtsUpdate {
            pts: u.pts,
            pts_count: u.pts_count,
            message: incoming(&u.message),
        }),
        enums::Update::EditMessage(u) => Some(PtsUpdate {
            pts: u.pts,
            pts_count: u.pts_count,
            message: None,
        }),
        enums::Update::DeleteMessages(u) => Some(PtsUpdate {
            pts: u.pts,
            pts_count: u.pts_count,
            message: None,
        }),
        enums::Update::ReadHistoryInbox(u) => Some(PtsUpdate {
            pts: u.pts,
            pts_count: u.pts_count,
            message: None,
        }),
        enums::Update::ReadHistoryOutbox(u) => Some(PtsUpdate {
            pts: u.pts,
            pts_count: u.pts_count,
            message: None,
        }),
        enums::Update::WebPage(u) => Some(PtsUpdate {
            pts: u.pts,
            pts_count: u.pts_count,
            message: None,
        }),
        enums::Update::ReadMessagesContents(u) => Some(PtsUpdate {
            pts: u.pts,
            pts_count: u.pts_count,
            message: None,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_kinds_parse_with_voice_always_among_them() {
        assert_eq!(MediaKinds::parse("voice"), Ok(MediaKinds::default()));
        assert_eq!(
            MediaKinds::parse(" voice , audio,video_note "),
            Ok(MediaKinds {
                audio: true,
                video_notes: true
            })
        );
        assert!(
            MediaKinds::parse("audio")
                .unwrap_err()
                .contains("list voice")
        );
        assert!(
            MediaKinds::parse("voice,video")
                .unwrap_err()
                .contains("\"video\"")
        );
        assert!(!MediaKinds::default().accepts(MediaKind::Audio));
        assert!(MediaKinds::default().accepts(MediaKind::Voice));
    }

    #[test]
    fn pts_rule() {
        assert_eq!(check_pts(10, 11, 1), PtsCheck::Apply);
        assert_eq!(check_pts(10, 12, 2), PtsCheck::Apply);
        assert_eq!(check_pts(10, 10, 1), PtsCheck::Duplicate);
        assert_eq!(check_pts(10, 13, 1), PtsCheck::Gap);
        assert_eq!(check_pts(i32::MAX, 1, 1), PtsCheck::Duplicate);
    }
}
