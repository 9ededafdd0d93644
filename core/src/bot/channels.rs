//! Supergroups and channels: each numbers its updates with a pts of its own, so a bot
//! applies their updates by that channel's pts (a message pushed twice is handed on
//! once), and fills a channel's gap, an `updateChannelTooLong` or what it missed while
//! away (announced in the common difference) with `updates.getChannelDifference`. A
//! channel's trouble never touches the connection or the other chats.

use grammers_tl_types::{Deserializable as _, Serializable as _, enums, functions, types};

use super::{Bot, Call, Warning};
use crate::record::ChannelState;
use crate::rpc_error::RpcError;
use crate::updates::{self, ChannelEvent, PtsCheck};

/// Messages asked for per `updates.getChannelDifference`.
const CHANNEL_DIFFERENCE_LIMIT: i32 = 100;

impl Bot {
    /// Learns the access hashes of the channels among `chats`.
    pub(super) fn learn_channels(&mut self, chats: &[enums::Chat]) {
        for (id, access_hash) in updates::channel_hashes(chats) {
            if let Some(c) = self.record.channels.iter_mut().find(|c| c.id == id)
                && c.access_hash != access_hash
            {
                c.access_hash = access_hash;
                self.commits.channels_changed();
            }
            self.channel_hashes.retain(|(known, _)| *known != id);
            self.channel_hashes.push((id, access_hash));
        }
    }

    /// Applies supergroup and channel events by each channel's pts rule.
    pub(super) fn on_channel_events(&mut self, events: Vec<ChannelEvent>) {
        for event in events {
            match event {
                ChannelEvent::Update {
                    channel_id,
                    pts,
                    pts_count,
                    message,
                } => self.on_channel_update(channel_id, pts, pts_count, message),
                ChannelEvent::TooLong { channel_id, pts } => {
                    if self.record.channel(channel_id).is_none() {
                        let Some(pts) = pts else { continue };
                        self.add_channel(channel_id, pts);
                    }
                    self.start_channel_difference(channel_id);
                }
            }
        }
    }

    fn on_channel_update(
        &mut self,
        id: i64,
        pts: i32,
        pts_count: i32,
        message: Option<crate::updates::IncomingMessage>,
    ) {
        if self.channel_syncs.contains(&id) {
            return; // its difference in flight brings it
        }
        let Some(local) = self.record.channel(id).map(|c| c.pts) else {
            // The first word from this channel: nothing before it can be asked for.
            self.add_channel(id, pts);
            if let Some(message) = message {
                self.commits.push_message(message);
            }
            return;
        };
        match updates::check_pts(local, pts, pts_count) {
            PtsCheck::Apply => {
                self.set_channel_pts(id, pts);
                if let Some(message) = message {
                    self.commits.push_message(message);
                }
            }
            PtsCheck::Duplicate => {}
            PtsCheck::Gap => self.start_channel_difference(id),
        }
    }

    fn add_channel(&mut self, id: i64, pts: i32) {
        let access_hash = self
            .channel_hashes
            .iter()
            .find(|(known, _)| *known == id)
            .map_or(0, |(_, hash)| *hash);
        self.record.channels.push(ChannelState {
            id,
            access_hash,
            pts,
        });
        self.record.channels.sort_by_key(|c| c.id);
        self.commits.channels_changed();
    }

    fn set_channel_pts(&mut self, id: i64, pts: i32) {
        if let Some(c) = self.record.channels.iter_mut().find(|c| c.id == id)
            && c.pts != pts
        {
            c.pts = pts;
            self.commits.channels_changed();
        }
    }

    fn start_channel_difference(&mut self, id: i64) {
        if self.channel_syncs.contains(&id) {
            return;
        }
        let Some(channel) = self.record.channel(id).copied() else {
            return;
        };
        self.channel_syncs.push(id);
        let request = functions::updates::GetChannelDifference {
            force: false,
            channel: enums::InputChannel::Channel(types::InputChannel {
                channel_id: channel.id,
                access_hash: channel.access_hash,
            }),
            filter: enums::ChannelMessagesFilter::Empty,
            pts: channel.pts,
            limit: CHANNEL_DIFFERENCE_LIMIT,
        };
        self.invoke(Call::GetChannelDifference(id), request.to_bytes());
    }

    pub(super) fn on_channel_difference(&mut self, id: i64, body: &[u8]) {
        self.channel_syncs.retain(|c| *c != id);
        let Ok(difference) = enums::updates::ChannelDifference::from_bytes(body) else {
            self.warn(Warning::Unparsable {
                what: "updates.ChannelDifference",
            });
            return;
        };
        let (pts, messages, more) = match difference {
            enums::updates::ChannelDifference::Empty(d) => (Some(d.pts), vec![], false),
            enums::updates::ChannelDifference::Difference(d) => {
                self.learn_channels(&d.chats);
                (Some(d.pts), d.new_messages, !d.r#final)
            }
            enums::updates::ChannelDifference::TooLong(d) => {
                // Telegram keeps no more for this channel: the latest messages, and its
                // pts from here on.
                self.learn_channels(&d.chats);
                let pts = match &d.dialog {
                    enums::Dialog::Dialog(dialog) => dialog.pts,
                    _ => None,
                };
                let skipped = pts.zip(self.record.channel(id)).map(|(p, c)| p - c.pts);
                self.warn(Warning::UpdatesSkipped {
                    pts: skipped.unwrap_or(0),
                });
                (pts, d.messages, false)
            }
        };
        for message in messages.iter().filter_map(updates::incoming) {
            self.commits.push_message(message);
        }
        if let Some(pts) = pts {
            self.set_channel_pts(id, pts);
        }
        if more {
            self.start_channel_difference(id);
        }
    }

    /// A channel's difference failed: the channel is forgotten if the bot may no longer
    /// read it, and otherwise fetched again on its next update. The connection and the
    /// other chats go on.
    pub(super) fn on_channel_error(&mut self, id: i64, error: RpcError) {
        self.channel_syncs.retain(|c| *c != id);
        let gone = matches!(
            error.name.as_str(),
            "CHANNEL_PRIVATE"
                | "CHANNEL_INVALID"
                | "CHANNEL_PUBLIC_GROUP_NA"
                | "USER_BANNED_IN_CHANNEL"
        );
        if gone {
            self.record.channels.retain(|c| c.id != id);
            self.commits.channels_changed();
        }
        self.warn(Warning::ChannelSyncFailed {
            channel_id: id,
            error: error.to_string(),
            forgotten: gone,
        });
    }
}
