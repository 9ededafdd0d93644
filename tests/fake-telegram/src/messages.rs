//! Messages and other events reaching bots, and the shapes Telegram pushes them in
//! (core.telegram.org/api/updates). Private chats and basic groups are in each bot's
//! common box (one pts per bot); supergroups and channels have boxes of their own
//! ([`channels`](super::channels)).
//!
//! Shapes: a plain text is `updateShortMessage` (private) or `updateShortChatMessage`
//! (basic group); a deletion is `updateShort`; anything else is `updates` with the next
//! `seq`, and several events at once are one `updatesCombined` with a `seq_start..seq`
//! range.

use std::collections::BTreeSet;
use std::sync::Arc;

use grammers_tl_types::{Serializable as _, enums, types};

use super::crypto::sha256;
use super::fault::FaultKind;
use super::tl_defaults;
use super::world::{Push, StoredFile, UserId, World, now_unix};

/// A message a test sends to a bot, in a private chat (`chat_id == from_user_id`) or a
/// basic group.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub bot: String,
    pub chat_id: i64,
    pub from_user_id: UserId,
    pub content: Content,
}

#[derive(Clone, Debug)]
pub enum Content {
    Text(String),
    Voice {
        size: usize,
        duration: i32,
        mime_type: String,
        /// Bytes from this seed (deterministic), unless `bytes` is given.
        seed: u64,
        bytes: Option<Vec<u8>>,
        /// The DC the file lives on (the receiver's home DC when `None`).
        dc: Option<i32>,
        /// A voice message, an audio file, or a round video message.
        form: VoiceForm,
    },
}

/// The shape a file with sound is sent in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VoiceForm {
    /// A voice message: `documentAttributeAudio` with `voice`, `messageMediaDocument.voice`.
    #[default]
    Voice,
    /// An audio file: `documentAttributeAudio` without `voice`.
    Audio,
    /// A round video message: `documentAttributeVideo` with `round_message`,
    /// `messageMediaDocument.round`.
    RoundVideo,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub message_id: i32,
    pub pts: i32,
    pub sha256: Option<String>,
}

/// One event of a message box, by pts.
#[derive(Clone, Debug)]
pub struct LogEntry {
    pub pts: i32,
    pub pts_count: i32,
    pub date: i32,
    pub event: Event,
}

#[derive(Clone, Debug)]
pub enum Event {
    /// A new message from `from` (none for a channel's post).
    Message {
        message: Box<types::Message>,
        from: Option<UserId>,
    },
    /// Messages deleted.
    Deleted(Vec<i32>),
}

/// Deterministic bytes for a voice file: a splitmix64 stream from `seed`.
pub fn voice_bytes(seed: u64, size: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(size);
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn peer_user(user_id: UserId) -> enums::Peer {
    enums::Peer::User(types::PeerUser { user_id })
}

impl World {
    /// The text and media of `content`, storing a voice file on `default_dc` (unless it
    /// names its own) for `receivers`; with the file's sha256.
    pub(super) fn content(
        &mut self,
        content: &Content,
        default_dc: i32,
        receivers: BTreeSet<UserId>,
    ) -> Result<(String, Option<enums::MessageMedia>, Option<String>), String> {
        let (size, duration, mime_type, seed, bytes, dc, form) = match content {
            Content::Text(text) => return Ok((text.clone(), None, None)),
            Content::Voice {
                size,
                duration,
                mime_type,
                seed,
                bytes,
                dc,
                form,
            } => (size, duration, mime_type, seed, bytes, dc, *form),
        };
        let bytes = bytes.clone().unwrap_or_else(|| voice_bytes(*seed, *size));
        let dc = dc.unwrap_or(default_dc);
        if !self.dcs.contains_key(&dc) {
            return Err(format!("no DC {dc}"));
        }
        let sha = hex(&sha256(&[&bytes]));
        let (id, access_hash) = (self.fresh_id(), self.fresh_id());
        let attribute = match form {
            VoiceForm::Voice | VoiceForm::Audio => {
                enums::DocumentAttribute::Audio(types::DocumentAttributeAudio {
                    voice: form == VoiceForm::Voice,
                    duration: *duration,
                    title: None,
                    performer: None,
                    waveform: None,
                })
            }
            VoiceForm::RoundVideo => {
                enums::DocumentAttribute::Video(types::DocumentAttributeVideo {
                    round_message: true,
                    supports_streaming: false,
                    nosound: false,
                    duration: f64::from(*duration),
                    w: 384,
                    h: 384,
                    preload_prefix_size: None,
                    video_start_ts: None,
                    video_codec: None,
                })
            }
        };
        // The reference is filled in whenever the message is handed out.
        let doc = tl_defaults::document(
            id,
            access_hash,
            Vec::new(),
            now_unix(),
            mime_type.clone(),
            bytes.len() as i64,
            dc,
            vec![attribute],
        );
        self.files.insert(
            id,
            StoredFile {
                id,
                access_hash,
                dc,
                bytes: Arc::new(bytes),
                receivers,
                reference_secret: super::crypto::random(),
            },
        );
        let mut media = tl_defaults::message_media_document();
        media.voice = form == VoiceForm::Voice;
        media.round = form == VoiceForm::RoundVideo;
        media.document = Some(enums::Document::Document(doc));
        Ok((
            String::new(),
            Some(enums::MessageMedia::Document(media)),
            Some(sha),
        ))
    }

    /// Stores a message for a bot, advances its pts (in the same step), pushes it to the
    /// bot's sessions in the shape Telegram would, and says what was sent.
    pub fn send_message(&mut self, req: NewMessage) -> Result<Sent, String> {
        Ok(self.send_messages(vec![req])?.remove(0))
    }

    /// Several messages to one bot at once: stored one after the other, pushed together
    /// (one `updatesCombined` when there are several).
    pub fn send_messages(&mut self, reqs: Vec<NewMessage>) -> Result<Vec<Sent>, String> {
        let Some(first) = reqs.first() else {
            return Err("no messages".into());
        };
        let bot_id = self
            .bot_by_username(&first.bot)
            .ok_or_else(|| format!("no bot @{}", first.bot))?
            .user_id;
        if reqs
            .iter()
            .any(|r| self.bot_by_username(&r.bot).map(|b| b.user_id) != Some(bot_id))
        {
            return Err("messages sent together go to one bot".into());
        }
        if reqs.iter().any(|r| r.from_user_id <= 0 || r.chat_id <= 0) {
            return Err("from_user_id and chat_id must be positive".into());
        }
        let mut entries = Vec::new();
        let mut sent = Vec::new();
        for req in reqs {
            self.ensure_user(req.from_user_id);
            let home = self.bots[&bot_id].home_dc;
            let (text, media, sha) = self.content(&req.content, home, BTreeSet::from([bot_id]))?;
            let private = req.chat_id == req.from_user_id;
            let bot = self.bots.get_mut(&bot_id).expect("looked up");
            let message_id = bot.next_message_id;
            bot.next_message_id += 1;
            let peer = if private {
                peer_user(req.from_user_id)
            } else {
                enums::Peer::Chat(types::PeerChat {
                    chat_id: req.chat_id,
                })
            };
            let mut message = tl_defaults::message(message_id, peer, now_unix(), text);
            message.media = media;
            if !private {
                message.from_id = Some(peer_user(req.from_user_id));
            }
            let event = Event::Message {
                message: Box::new(message),
                from: Some(req.from_user_id),
            };
            let entry = self.append(bot_id, 1, event);
            sent.push(Sent {
                message_id,
                pts: entry.pts,
                sha256: sha,
            });
            entries.push(entry);
        }
        let updates = self.shape(bot_id, &entries);
        self.deliver(bot_id, updates);
        Ok(sent)
    }

    /// Deletes messages of a bot's common box (as when their sender deletes them for
    /// everyone): one event of `ids.len()` pts, pushed as `updateShort`. Returns its pts.
    pub fn delete_messages(&mut self, bot: &str, ids: Vec<i32>) -> Result<i32, String> {
        let bot_id = self
            .bot_by_username(bot)
            .ok_or_else(|| format!("no bot @{bot}"))?
            .user_id;
        if ids.is_empty() || ids.len() > 100 {
            return Err("`message_ids`: 1 to 100 message ids".into());
        }
        let entry = self.append(bot_id, ids.len() as i32, Event::Deleted(ids));
        let pts = entry.pts;
        let updates = self.shape(bot_id, &[entry]);
        self.deliver(bot_id, updates);
        Ok(pts)
    }

    /// Adds an event to the bot's common box: its pts advances by `pts_count` (and by a
    /// `skip_pts` fault's count, which leaves a gap).
    fn append(&mut self, bot_id: UserId, pts_count: i32, event: Event) -> LogEntry {
        let skip = self
            .take_fault(FaultKind::SkipPts, Some(bot_id), None)
            .map_or(0, |f| f.count.max(1));
        let bot = self.bots.get_mut(&bot_id).expect("a known bot");
        bot.pts = bot
            .pts
            .saturating_add(pts_count)
            .saturating_add(skip.clamp(0, 1_000_000));
        bot.date = now_unix();
        let entry = LogEntry {
            pts: bot.pts,
            pts_count,
            date: bot.date,
            event,
        };
        bot.log.push(entry.clone());
        entry
    }

    /// The `Update` an event of a bot's common box is.
    pub fn update_of(&self, entry: &LogEntry) -> enums::Update {
        match &entry.event {
            Event::Message { message, .. } => enums::Update::NewMessage(types::UpdateNewMessage {
                message: self.handed_out(message),
                pts: entry.pts,
                pts_count: entry.pts_count,
            }),
            Event::Deleted(ids) => enums::Update::DeleteMessages(types::UpdateDeleteMessages {
                messages: ids.clone(),
                pts: entry.pts,
                pts_count: entry.pts_count,
            }),
        }
    }

    /// `entries` of a bot's common box in the shape Telegram pushes them in; `updates`
    /// and `updatesCombined` take the bot's next `seq` numbers.
    fn shape(&mut self, bot_id: UserId, entries: &[LogEntry]) -> enums::Updates {
        let date = now_unix();
        if let [entry] = entries {
            match &entry.event {
                Event::Message { message, from } if message.media.is_none() => {
                    let from = from.expect("common-box messages have a sender");
                    return match &message.peer_id {
                        enums::Peer::Chat(chat) => {
                            enums::Updates::UpdateShortChatMessage(types::UpdateShortChatMessage {
                                out: false,
                                mentioned: false,
                                media_unread: false,
                                silent: false,
                                id: message.id,
                                from_id: from,
                                chat_id: chat.chat_id,
                                message: message.message.clone(),
                                pts: entry.pts,
                                pts_count: entry.pts_count,
                                date: message.date,
                                fwd_from: None,
                                via_bot_id: None,
                                reply_to: None,
                                entities: None,
                                ttl_period: None,
                            })
                        }
                        _ => enums::Updates::UpdateShortMessage(types::UpdateShortMessage {
                            out: false,
                            mentioned: false,
                            media_unread: false,
                            silent: false,
                            id: message.id,
                            user_id: from,
                            message: message.message.clone(),
                            pts: entry.pts,
                            pts_count: entry.pts_count,
                            date: message.date,
                            fwd_from: None,
                            via_bot_id: None,
                            reply_to: None,
                            entities: None,
                            ttl_period: None,
                        }),
                    };
                }
                Event::Deleted(_) => {
                    return enums::Updates::UpdateShort(types::UpdateShort {
                        update: self.update_of(entry),
                        date,
                    });
                }
                Event::Message { .. } => {}
            }
        }
        let (users, chats) = self.entities(entries);
        let updates = entries.iter().map(|e| self.update_of(e)).collect();
        let bot = self.bots.get_mut(&bot_id).expect("a known bot");
        let seq_start = bot.seq + 1;
        bot.seq += entries.len() as i32;
        if entries.len() == 1 {
            enums::Updates::Updates(types::Updates {
                updates,
                users,
                chats,
                date,
                seq: bot.seq,
            })
        } else {
            enums::Updates::Combined(types::UpdatesCombined {
                updates,
                users,
                chats,
                date,
                seq_start,
                seq: bot.seq,
            })
        }
    }

    /// The users and chats that `entries` mention.
    pub fn entities(&self, entries: &[LogEntry]) -> (Vec<enums::User>, Vec<enums::Chat>) {
        let mut user_ids = BTreeSet::new();
        let mut chats = BTreeSet::new();
        for entry in entries {
            let Event::Message { message, from } = &entry.event else {
                continue;
            };
            user_ids.extend(*from);
            match &message.peer_id {
                enums::Peer::Chat(c) => chats.insert((false, c.chat_id)),
                enums::Peer::Channel(c) => chats.insert((true, c.channel_id)),
                enums::Peer::User(_) => false,
            };
        }
        let users = user_ids
            .into_iter()
            .filter_map(|id| self.user_object(id))
            .collect();
        let chats = chats
            .into_iter()
            .filter_map(|(channel, id)| {
                if channel {
                    self.channel_object(id)
                } else {
                    Some(self.chat_object(id))
                }
            })
            .collect();
        (users, chats)
    }

    /// Pushes `updates` to the bot's sessions, as the bot's faults allow: replaced by
    /// `updatesTooLong`, held back until the next push (out of order), or sent twice.
    pub fn deliver(&mut self, bot_id: UserId, updates: enums::Updates) {
        let bot = Some(bot_id);
        let mut pushes = vec![updates];
        if self
            .take_fault(FaultKind::UpdatesTooLong, bot, None)
            .is_some()
        {
            pushes = vec![enums::Updates::TooLong];
        }
        if self
            .take_fault(FaultKind::ReorderUpdates, bot, None)
            .is_some()
        {
            self.held_pushes.entry(bot_id).or_default().extend(pushes);
            return;
        }
        pushes.extend(self.held_pushes.remove(&bot_id).unwrap_or_default());
        if self
            .take_fault(FaultKind::DuplicateUpdate, bot, None)
            .is_some()
        {
            pushes = pushes.into_iter().flat_map(|p| [p.clone(), p]).collect();
        }
        for push in pushes {
            self.push_to_bot(bot_id, Push::Updates(push.to_bytes()));
        }
    }

    /// `messages.getMessages` for a bot: its private-chat and basic-group messages by id,
    /// as handed out now (fresh file references); `messageEmpty` for ids it has none of.
    pub fn get_messages(
        &self,
        bot: UserId,
        ids: &[enums::InputMessage],
    ) -> enums::messages::Messages {
        let (messages, found) = self.messages_by_id(ids, &self.bots[&bot].log);
        let (users, chats) = self.entities(&found);
        enums::messages::Messages::Messages(types::messages::Messages {
            messages,
            topics: vec![],
            chats,
            users,
        })
    }

    /// The messages `ids` name in `log`, as handed out (`messageEmpty` for the missing),
    /// and their entries.
    pub(super) fn messages_by_id(
        &self,
        ids: &[enums::InputMessage],
        log: &[LogEntry],
    ) -> (Vec<enums::Message>, Vec<LogEntry>) {
        let mut found = Vec::new();
        let messages = ids
            .iter()
            .map(|input| {
                let id = match input {
                    enums::InputMessage::Id(m) => m.id,
                    _ => 0,
                };
                match find_message(log, id) {
                    Some(
                        entry @ LogEntry {
                            event: Event::Message { message, .. },
                            ..
                        },
                    ) => {
                        found.push(entry.clone());
                        self.handed_out(message)
                    }
                    _ => enums::Message::Empty(types::MessageEmpty { id, peer_id: None }),
                }
            })
            .collect();
        (messages, found)
    }
}

/// The entry of message `id` in `log`, unless it was deleted.
fn find_message(log: &[LogEntry], id: i32) -> Option<&LogEntry> {
    let deleted = log
        .iter()
        .any(|e| matches!(&e.event, Event::Deleted(ids) if ids.contains(&id)));
    if deleted {
        return None;
    }
    log.iter()
        .find(|e| matches!(&e.event, Event::Message { message, .. } if message.id == id))
}
