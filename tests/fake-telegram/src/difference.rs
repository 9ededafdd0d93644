//! `updates.getState`, `updates.getDifference` and `updates.getChannelDifference` as
//! Telegram documents them (core.telegram.org/method/updates.getDifference, /api/updates):
//!
//! - `pts_total_limit` is a threshold past which the answer is `differenceTooLong`, as is
//!   the server's own `difference_limit`; slices have a fixed size (`difference_slice`),
//!   and an intermediate state is that of the slice's last event, date included;
//! - `new_messages` carries new messages, `other_updates` the box's other events
//!   (deletions) and one `updateChannelTooLong` for each supergroup or channel of the bot
//!   with messages since the given date, which the client then fetches with
//!   `updates.getChannelDifference`;
//! - a channel's difference is `channelDifferenceEmpty`, `channelDifference` (`final` once
//!   it reaches the channel's pts, at most `limit` messages each) or
//!   `channelDifferenceTooLong` past `channel_difference_limit`.

use grammers_tl_types::{enums, functions, types};

use super::messages::{Event, LogEntry};
use super::tl_defaults;
use super::world::{UserId, World, now_unix};

/// Most messages a `channelDifferenceTooLong` carries (the latest ones).
const TOO_LONG_MESSAGES: usize = 10;

/// The bot's common update state now.
pub fn state(world: &World, bot: UserId) -> enums::updates::State {
    let b = &world.bots[&bot];
    enums::updates::State::State(types::updates::State {
        pts: b.pts,
        qts: 0,
        date: b.date,
        seq: b.seq,
        unread_count: 0,
    })
}

/// `updateChannelTooLong` for each channel of the bot with messages since `date`, with
/// the pts to start from for a client that has none.
fn channels_to_fetch(world: &World, bot: UserId, date: i32) -> Vec<enums::Update> {
    world
        .channels
        .values()
        .filter(|c| c.members.contains(&bot))
        .filter_map(|c| {
            let first_new = c.log.iter().position(|e| e.date >= date)?;
            let pts = first_new
                .checked_sub(1)
                .map_or(1, |before| c.log[before].pts);
            Some(enums::Update::ChannelTooLong(types::UpdateChannelTooLong {
                channel_id: c.id,
                pts: Some(pts),
            }))
        })
        .collect()
}

/// The messages among `entries` (as handed out), and the other events as updates.
fn split(world: &World, entries: &[LogEntry]) -> (Vec<enums::Message>, Vec<enums::Update>) {
    let mut messages = Vec::new();
    let mut others = Vec::new();
    for entry in entries {
        match &entry.event {
            Event::Message { message, .. } => messages.push(world.handed_out(message)),
            Event::Deleted(_) => others.push(world.update_of(entry)),
        }
    }
    (messages, others)
}

pub fn get_difference(
    world: &World,
    bot: UserId,
    req: &functions::updates::GetDifference,
) -> enums::updates::Difference {
    let b = &world.bots[&bot];
    let channels = channels_to_fetch(world, bot, req.date);
    if req.pts >= b.pts && channels.is_empty() {
        return enums::updates::Difference::Empty(types::updates::DifferenceEmpty {
            date: now_unix(),
            seq: b.seq,
        });
    }
    // "if pts + pts_total_limit < remote pts, updates.differenceTooLong will be returned".
    let behind = i64::from(b.pts) - i64::from(req.pts);
    let limit = req
        .pts_total_limit
        .unwrap_or(i32::MAX)
        .min(world.settings.difference_limit);
    if behind > i64::from(limit) {
        return enums::updates::Difference::TooLong(types::updates::DifferenceTooLong {
            pts: b.pts,
        });
    }
    let pending: Vec<&LogEntry> = b.log.iter().filter(|e| e.pts > req.pts).collect();
    let slice = world.settings.difference_slice;
    let entries: Vec<LogEntry> = pending.iter().take(slice).map(|e| (*e).clone()).collect();
    let (users, chats) = world.entities(&entries);
    let (new_messages, mut other_updates) = split(world, &entries);
    if pending.len() > slice {
        let last = entries.last().expect("a slice is never empty");
        return enums::updates::Difference::Slice(types::updates::DifferenceSlice {
            new_messages,
            new_encrypted_messages: vec![],
            other_updates,
            chats,
            users,
            intermediate_state: enums::updates::State::State(types::updates::State {
                pts: last.pts,
                qts: 0,
                date: last.date,
                seq: b.seq,
                unread_count: 0,
            }),
        });
    }
    // As Telegram does, the chats the updates name come along (a client needs their
    // access hashes to ask for their differences).
    let mut chats = chats;
    for update in &channels {
        if let enums::Update::ChannelTooLong(u) = update
            && let Some(chat) = world.channel_object(u.channel_id)
            && !chats.contains(&chat)
        {
            chats.push(chat);
        }
    }
    other_updates.extend(channels);
    enums::updates::Difference::Difference(types::updates::Difference {
        new_messages,
        new_encrypted_messages: vec![],
        other_updates,
        chats,
        users,
        state: state(world, bot),
    })
}

pub fn get_channel_difference(
    world: &World,
    bot: UserId,
    req: &functions::updates::GetChannelDifference,
) -> Result<enums::updates::ChannelDifference, (i32, String)> {
    let channel = world.member_channel(&req.channel, bot)?;
    if req.pts >= channel.pts {
        return Ok(enums::updates::ChannelDifference::Empty(
            types::updates::ChannelDifferenceEmpty {
                r#final: true,
                pts: channel.pts,
                timeout: None,
            },
        ));
    }
    let channel_chat = world.channel_object(channel.id).into_iter().collect();
    if channel.pts - req.pts > world.settings.channel_difference_limit {
        let latest = &channel.log[channel.log.len().saturating_sub(TOO_LONG_MESSAGES)..];
        let (users, _) = world.entities(latest);
        let (messages, _) = split(world, latest);
        let peer = enums::Peer::Channel(types::PeerChannel {
            channel_id: channel.id,
        });
        let top = channel.next_message_id - 1;
        let dialog = tl_defaults::dialog(peer, top, Some(channel.pts));
        return Ok(enums::updates::ChannelDifference::TooLong(
            types::updates::ChannelDifferenceTooLong {
                r#final: true,
                timeout: None,
                dialog: enums::Dialog::Dialog(dialog),
                messages,
                chats: channel_chat,
                users,
            },
        ));
    }
    let limit = usize::try_from(req.limit.clamp(1, 100_000)).expect("positive");
    let pending: Vec<&LogEntry> = channel.log.iter().filter(|e| e.pts > req.pts).collect();
    let entries: Vec<LogEntry> = pending.iter().take(limit).map(|e| (*e).clone()).collect();
    let is_final = pending.len() <= limit;
    let pts = if is_final {
        channel.pts
    } else {
        entries.last().expect("limit is at least 1").pts
    };
    let (users, _) = world.entities(&entries);
    let (new_messages, other_updates) = split(world, &entries);
    Ok(enums::updates::ChannelDifference::Difference(
        types::updates::ChannelDifference {
            r#final: is_final,
            pts,
            timeout: None,
            new_messages,
            other_updates,
            chats: channel_chat,
            users,
        },
    ))
}
