//! `updates.getState` and `updates.getDifference` as Telegram documents them
//! (core.telegram.org/method/updates.getDifference, /api/updates): `pts_total_limit` is a
//! threshold past which the answer is `differenceTooLong`, slices have a fixed size, and
//! an intermediate state is that of the slice's last update.

use grammers_tl_types::{enums, functions, types};

use super::world::{UserId, World, now_unix};

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

pub fn get_difference(
    world: &World,
    bot: UserId,
    req: &functions::updates::GetDifference,
) -> enums::updates::Difference {
    let b = &world.bots[&bot];
    if req.pts >= b.pts {
        return enums::updates::Difference::Empty(types::updates::DifferenceEmpty {
            date: now_unix(),
            seq: b.seq,
        });
    }
    // "if pts + pts_total_limit < remote pts, updates.differenceTooLong will be returned";
    // the server has a limit of its own.
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
    let pending: Vec<_> = b.log.iter().filter(|e| e.pts > req.pts).collect();
    let slice = world.settings.difference_slice;
    let entries: Vec<_> = pending.iter().take(slice).map(|e| (*e).clone()).collect();
    let (users, chats) = world.entities(&entries);
    let new_messages = entries
        .iter()
        .map(|e| enums::Message::Message(e.message.clone()))
        .collect();
    if pending.len() > slice {
        let last = entries.last().expect("a slice is never empty");
        return enums::updates::Difference::Slice(types::updates::DifferenceSlice {
            new_messages,
            new_encrypted_messages: vec![],
            other_updates: vec![],
            chats,
            users,
            intermediate_state: enums::updates::State::State(types::updates::State {
                pts: last.pts,
                qts: 0,
                date: last.message.date,
                seq: b.seq,
                unread_count: 0,
            }),
        });
    }
    enums::updates::Difference::Difference(types::updates::Difference {
        new_messages,
        new_encrypted_messages: vec![],
        other_updates: vec![],
        chats,
        users,
        state: state(world, bot),
    })
}
