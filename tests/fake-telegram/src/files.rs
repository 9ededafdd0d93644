//! Stored files and `upload.getFile`. A bot downloads only files from messages it received;
//! each message handed out (pushed, in a difference, by `messages.getMessages`) carries a
//! fresh file reference, which expires `file_reference_ttl` later
//! (`FILE_REFERENCE_EXPIRED`: fetch the message again for a new one).

use std::collections::BTreeSet;
use std::sync::Arc;

use grammers_tl_types::{Serializable as _, enums, functions, types};

use super::fault::FaultKind;
use super::salts::now_millis;
use super::world::{UserId, World};

#[derive(Clone, Debug)]
pub struct StoredFile {
    pub id: i64,
    pub access_hash: i64,
    pub dc: i32,
    pub bytes: Arc<Vec<u8>>,
    /// The bots that received it in a message (only they may download it).
    pub receivers: BTreeSet<UserId>,
    /// What makes this file's references unforgeable.
    pub reference_secret: [u8; 8],
}

/// A file reference: the file's secret and when it was handed out (Unix milliseconds).
fn reference(secret: &[u8; 8], issued_ms: i64) -> Vec<u8> {
    let mut r = secret.to_vec();
    r.extend(issued_ms.to_le_bytes());
    r
}

impl World {
    /// A file reference for file `id`, handed out now.
    pub fn file_reference(&self, id: i64) -> Option<Vec<u8>> {
        let file = self.files.get(&id)?;
        Some(reference(&file.reference_secret, now_millis()))
    }

    /// A message as it leaves the fake DC: its file, if any, with a fresh reference.
    pub fn handed_out(&self, message: &types::Message) -> enums::Message {
        let mut message = message.clone();
        if let Some(enums::MessageMedia::Document(media)) = &mut message.media
            && let Some(enums::Document::Document(doc)) = &mut media.document
            && let Some(fresh) = self.file_reference(doc.id)
        {
            doc.file_reference = fresh;
        }
        enums::Message::Message(message)
    }
}

pub type Answer = Result<Vec<u8>, (i32, String)>;

fn refuse(code: i32, message: impl Into<String>) -> Answer {
    Err((code, message.into()))
}

/// `upload.getFile` with Telegram's rules: only a receiver's, with a live reference, on
/// the file's DC; offset and limit multiples of 4 KiB (1 KiB with `precise`), limit at
/// most 1 MiB and dividing it, no request across a 1 MiB boundary.
pub fn get_file(
    world: &mut World,
    dc: i32,
    bot: Option<UserId>,
    req: functions::upload::GetFile,
) -> Answer {
    const MIB: i64 = 1024 * 1024;
    let enums::InputFileLocation::InputDocumentFileLocation(loc) = req.location else {
        return refuse(400, "LOCATION_INVALID");
    };
    let Some(file) = world
        .files
        .get(&loc.id)
        .filter(|f| f.access_hash == loc.access_hash)
        .filter(|f| bot.is_some_and(|b| f.receivers.contains(&b)))
        .cloned()
    else {
        return refuse(400, "FILE_ID_INVALID");
    };
    if file.dc != dc {
        return refuse(303, format!("FILE_MIGRATE_{}", file.dc));
    }
    let issued_ms = match loc.file_reference.split_at_checked(8) {
        Some((secret, issued)) if secret == file.reference_secret && issued.len() == 8 => {
            i64::from_le_bytes(issued.try_into().expect("8 bytes"))
        }
        _ => return refuse(400, "FILE_REFERENCE_INVALID"),
    };
    let ttl = world.settings.file_reference_ttl.as_millis() as i64;
    if now_millis().saturating_sub(issued_ms) >= ttl
        || world
            .take_fault(FaultKind::FileReferenceExpired, bot, Some("upload.getFile"))
            .is_some()
    {
        return refuse(400, "FILE_REFERENCE_EXPIRED");
    }
    let (offset, limit) = (req.offset, i64::from(req.limit));
    let unit = if req.precise { 1024 } else { 4096 };
    if offset < 0 || offset % unit != 0 {
        return refuse(400, "OFFSET_INVALID");
    }
    let limit_ok =
        limit > 0 && limit % unit == 0 && limit <= MIB && (req.precise || MIB % limit == 0);
    // Within one MiB: the chunk may not run past the end of the MiB it starts in.
    if !limit_ok || offset % MIB + limit > MIB {
        return refuse(400, "LIMIT_INVALID");
    }
    let bytes = &file.bytes;
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let end = usize::try_from(offset.saturating_add(limit))
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    if end == bytes.len() && start < end {
        world.stats.files_served += 1;
        if let Some(bot) = bot {
            *world.stats.files_served_by_bot.entry(bot).or_default() += 1;
        }
    }
    Ok(enums::upload::File::File(types::upload::File {
        r#type: enums::storage::FileType::FileUnknown,
        mtime: 0,
        bytes: bytes[start..end].to_vec(),
    })
    .to_bytes())
}
