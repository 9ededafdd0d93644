//! Supergroups and channels: each has a message box of its own (its own pts, shared by
//! every member), its messages are pushed to member bots as `updateNewChannelMessage`
//! (`updates` with seq 0: they are not in the common sequence), and a member catches up
//! with `updates.getChannelDifference` ([`difference`](super::difference)).

use std::collections::BTreeSet;

use grammers_tl_types::{enums, types};

use super::fault::FaultKind;
use super::messages::{Content, Event, LogEntry, Sent};
use super::tl_defaults;
use super::world::{UserId, World, now_unix};

#[derive(Clone, Debug)]
pub struct Channel {
    pub id: i64,
    pub access_hash: i64,
    pub title: String,
    /// A supergroup (members write) rather than a broadcast channel (posts).
    pub megagroup: bool,
    /// The bots in it.
    pub members: BTreeSet<UserId>,
    pub pts: i32,
    pub date: i32,
    pub next_message_id: i32,
    /// Messages by pts, oldest first.
    pub log: Vec<LogEntry>,
}

/// A message a test sends into a supergroup (from a user) or a channel (a post).
#[derive(Clone, Debug)]
pub struct ChannelPost {
    pub channel_id: i64,
    /// The sender in a supergroup; none for a channel's post.
    pub from_user_id: Option<UserId>,
    pub content: Content,
}

impl World {
    /// A supergroup (`megagroup`) or broadcast channel with these bots in it.
    pub fn add_channel(
        &mut self,
        title: &str,
        megagroup: bool,
        members: &[&str],
    ) -> Result<i64, String> {
        let members = members
            .iter()
            .map(|name| {
                self.bot_by_username(name)
                    .map(|b| b.user_id)
                    .ok_or_else(|| format!("no bot @{name}"))
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        if title.is_empty() {
            return Err("a channel needs a title".into());
        }
        let (id, access_hash) = (self.fresh_id(), self.fresh_id());
        self.channels.insert(
            id,
            Channel {
                id,
                access_hash,
                title: title.to_owned(),
                megagroup,
                members,
                pts: 1,
                date: now_unix(),
                next_message_id: 1,
                log: Vec::new(),
            },
        );
        Ok(id)
    }

    /// Stores a message in a supergroup or channel, advances its pts and pushes it to
    /// every member bot.
    pub fn send_channel_message(&mut self, post: ChannelPost) -> Result<Sent, String> {
        let channel = self
            .channels
            .get(&post.channel_id)
            .ok_or_else(|| format!("no channel {}", post.channel_id))?;
        let (megagroup, members) = (channel.megagroup, channel.members.clone());
        let from = match (megagroup, post.from_user_id) {
            (true, Some(user)) if user > 0 => Some(user),
            (true, _) => return Err("a supergroup message needs a positive from_user_id".into()),
            (false, None) => None,
            (false, Some(_)) => return Err("a channel's posts have no from_user_id".into()),
        };
        if let Some(user) = from {
            self.ensure_user(user);
        }
        let home = members
            .first()
            .map_or_else(|| self.first_dc(), |bot| self.bots[bot].home_dc);
        let (text, media, sha) = self.content(&post.content, home, members.clone())?;
        let channel = self.channels.get_mut(&post.channel_id).expect("looked up");
        let message_id = channel.next_message_id;
        channel.next_message_id += 1;
        channel.pts += 1;
        channel.date = now_unix();
        let peer = enums::Peer::Channel(types::PeerChannel {
            channel_id: channel.id,
        });
        let mut message = tl_defaults::message(message_id, peer, channel.date, text);
        message.media = media;
        message.post = !megagroup;
        message.from_id = from.map(|user_id| enums::Peer::User(types::PeerUser { user_id }));
        let entry = LogEntry {
            pts: channel.pts,
            pts_count: 1,
            date: channel.date,
            event: Event::Message {
                message: Box::new(message),
                from,
            },
        };
        channel.log.push(entry.clone());
        let (channel_id, pts) = (channel.id, channel.pts);
        for bot in members {
            let (users, chats) = self.entities(std::slice::from_ref(&entry));
            let update = if self
                .take_fault(FaultKind::ChannelTooLong, Some(bot), None)
                .is_some()
            {
                enums::Update::ChannelTooLong(types::UpdateChannelTooLong {
                    channel_id,
                    pts: Some(pts),
                })
            } else {
                let Event::Message { message, .. } = &entry.event else {
                    unreachable!("built above")
                };
                enums::Update::NewChannelMessage(types::UpdateNewChannelMessage {
                    message: self.handed_out(message),
                    pts,
                    pts_count: 1,
                })
            };
            let updates = enums::Updates::Updates(types::Updates {
                updates: vec![update],
                users,
                chats,
                date: now_unix(),
                seq: 0,
            });
            self.deliver(bot, updates);
        }
        Ok(Sent {
            message_id,
            pts,
            sha256: sha,
        })
    }

    /// `channels.getMessages` for a member bot: the channel's messages by id, as handed out
    /// now (fresh file references).
    pub fn get_channel_messages(
        &self,
        bot: UserId,
        channel: &enums::InputChannel,
        ids: &[enums::InputMessage],
    ) -> Result<enums::messages::Messages, (i32, String)> {
        let channel = self.member_channel(channel, bot)?;
        let (messages, found) = self.messages_by_id(ids, &channel.log);
        let (users, _) = self.entities(&found);
        let count = found.len() as i32;
        Ok(enums::messages::Messages::ChannelMessages(
            types::messages::ChannelMessages {
                inexact: false,
                pts: channel.pts,
                count,
                offset_id_offset: None,
                messages,
                topics: vec![],
                chats: self.channel_object(channel.id).into_iter().collect(),
                users,
            },
        ))
    }

    /// The TL object of a channel, as its members see it.
    pub fn channel_object(&self, id: i64) -> Option<enums::Chat> {
        let c = self.channels.get(&id)?;
        let mut channel = tl_defaults::channel(id, c.title.clone(), c.date);
        channel.access_hash = Some(c.access_hash);
        channel.megagroup = c.megagroup;
        channel.broadcast = !c.megagroup;
        Some(enums::Chat::Channel(channel))
    }

    /// The channel an `InputChannel` names (with its access hash), if `bot` is in it:
    /// `CHANNEL_INVALID` for an unknown one, `CHANNEL_PRIVATE` when the bot is not a
    /// member, as Telegram answers.
    pub fn member_channel(
        &self,
        input: &enums::InputChannel,
        bot: UserId,
    ) -> Result<&Channel, (i32, String)> {
        let enums::InputChannel::Channel(input) = input else {
            return Err((400, "CHANNEL_INVALID".into()));
        };
        let channel = self
            .channels
            .get(&input.channel_id)
            .filter(|c| c.access_hash == input.access_hash)
            .ok_or((400, "CHANNEL_INVALID".to_owned()))?;
        if !channel.members.contains(&bot) {
            return Err((406, "CHANNEL_PRIVATE".into()));
        }
        Ok(channel)
    }
}
