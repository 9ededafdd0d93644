//! The API methods the fake DC answers, over the world.

use std::time::{Duration, Instant};

use grammers_tl_types::{
    self as tl, Deserializable, Identifiable as _, Serializable as _, enums, functions, types,
};

use super::difference;
use super::fault::FaultKind;
use super::files;
use super::tl_defaults;
use super::world::{UserId, World, now_unix};
use super::wrappers::{self, ClientInfo};

/// Who is calling: the connection, its DC and auth key.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub dc: i32,
    pub key_id: i64,
    pub conn: super::world::ConnId,
}

/// The answer to one request.
#[derive(Debug, PartialEq)]
pub struct Reply {
    /// The boxed result, or an error code and message.
    pub result: Result<Vec<u8>, (i32, String)>,
    /// Hold the answer this long first (a `stall` fault).
    pub delay: Option<Duration>,
    /// The TL name of the method, for logs.
    pub method: &'static str,
}

fn err<T>(code: i32, message: impl Into<String>) -> Result<T, (i32, String)> {
    Err((code, message.into()))
}

/// Answers one API request (`data` is the message body, constructor id first).
pub fn call(world: &mut World, caller: Caller, data: Vec<u8>) -> Reply {
    let Ok(unwrapped) = wrappers::unwrap(data) else {
        return Reply {
            result: err(400, "INPUT_REQUEST_INVALID"),
            delay: None,
            method: "?",
        };
    };
    let data = unwrapped.query;
    let id = u32::from_bytes(&data).unwrap_or(0);
    let method = tl::name_for_id(id);
    *world.stats.calls.entry(method).or_default() += 1;
    let body = &data[4..];
    if let Err(refused) = init_connection(world, caller, unwrapped.init.as_ref()) {
        return Reply {
            result: Err(refused),
            delay: None,
            method,
        };
    }
    // Any call but a file method, outside invokeWithoutUpdates, subscribes the connection.
    if !unwrapped.without_updates
        && !method.starts_with("upload.")
        && let Some(conn) = world.conns.get_mut(&caller.conn)
    {
        conn.subscribed = true;
    }
    let logged_in = world.keys.get(&caller.key_id).and_then(|k| k.bot);
    // Faults match the bot the call is about: the logged-in one, or the token's.
    let fault_bot = logged_in.or_else(|| {
        functions::auth::ImportBotAuthorization::from_bytes(body)
            .ok()
            .filter(|_| id == functions::auth::ImportBotAuthorization::CONSTRUCTOR_ID)
            .and_then(|r| world.bot_by_token(&r.bot_auth_token).map(|b| b.user_id))
    });
    let delay = world
        .take_fault(FaultKind::Stall, fault_bot, Some(method))
        .map(|f| Duration::from_millis(f.millis));
    let reply = |result| Reply {
        result,
        delay,
        method,
    };
    if let Some(f) = world.take_fault(FaultKind::FloodWait, fault_bot, Some(method)) {
        return reply(err(420, format!("FLOOD_WAIT_{}", f.seconds)));
    }
    if let Some(f) = world.take_fault(FaultKind::RpcError, fault_bot, Some(method)) {
        return reply(err(f.code, f.message));
    }
    if world
        .take_fault(FaultKind::AuthKeyUnregistered, fault_bot, Some(method))
        .is_some()
    {
        if let Some(key) = world.keys.get_mut(&caller.key_id) {
            key.bot = None;
        }
        return reply(err(401, "AUTH_KEY_UNREGISTERED"));
    }
    // A request whose body does not parse is refused like Telegram refuses it.
    let result = dispatch(world, caller, id, body, logged_in)
        .unwrap_or_else(|_| Err((400, "INPUT_REQUEST_INVALID".to_owned())));
    reply(result)
}

/// Telegram's rule that the first call on a key is wrapped in `initConnection`
/// (`CONNECTION_NOT_INITED`), and its checks of what `initConnection` says: a registered
/// `api_id`, and no empty client fields.
fn init_connection(
    world: &mut World,
    caller: Caller,
    init: Option<&ClientInfo>,
) -> Result<(), (i32, String)> {
    let registered = init.is_some_and(|i| world.apps.contains_key(&i.api_id));
    let Some(key) = world.keys.get_mut(&caller.key_id) else {
        return Ok(());
    };
    let Some(init) = init else {
        return if key.initialized {
            Ok(())
        } else {
            err(400, "CONNECTION_NOT_INITED")
        };
    };
    let empty = [
        (&init.device_model, "CONNECTION_DEVICE_MODEL_EMPTY"),
        (&init.system_version, "CONNECTION_SYSTEM_EMPTY"),
        (&init.app_version, "CONNECTION_APP_VERSION_EMPTY"),
        (&init.system_lang_code, "CONNECTION_SYSTEM_LANG_CODE_EMPTY"),
        (&init.lang_code, "CONNECTION_LANG_CODE_EMPTY"),
    ];
    if !registered {
        return err(400, "CONNECTION_API_ID_INVALID");
    }
    if let Some((_, error)) = empty.iter().find(|(field, _)| field.trim().is_empty()) {
        return err(400, *error);
    }
    key.initialized = true;
    Ok(())
}

/// The answer, or the body did not parse.
type Answer = Result<Result<Vec<u8>, (i32, String)>, tl::deserialize::Error>;

fn ok(bytes: Vec<u8>) -> Answer {
    Ok(Ok(bytes))
}

fn rpc_err(code: i32, message: impl Into<String>) -> Answer {
    Ok(Err((code, message.into())))
}

fn dispatch(
    world: &mut World,
    caller: Caller,
    id: u32,
    body: &[u8],
    logged_in: Option<UserId>,
) -> Answer {
    use functions::{auth, channels, help, messages, updates, upload, users};
    // Everything but the configuration and logging in needs a logged-in key.
    let needs_login = !matches!(
        id,
        help::GetConfig::CONSTRUCTOR_ID
            | auth::ImportBotAuthorization::CONSTRUCTOR_ID
            | auth::ImportAuthorization::CONSTRUCTOR_ID
    );
    let bot = match logged_in {
        Some(bot) => Some(bot),
        None if needs_login && (is_known(id) || user_only(tl::name_for_id(id))) => {
            return rpc_err(401, "AUTH_KEY_UNREGISTERED");
        }
        None => None,
    };
    match id {
        help::GetConfig::CONSTRUCTOR_ID => ok(config(world, caller.dc).to_bytes()),
        auth::ImportBotAuthorization::CONSTRUCTOR_ID => import_bot_authorization(
            world,
            caller,
            auth::ImportBotAuthorization::from_bytes(body)?,
        ),
        auth::ExportAuthorization::CONSTRUCTOR_ID => {
            let req = auth::ExportAuthorization::from_bytes(body)?;
            if !world.dcs.contains_key(&req.dc_id) {
                return rpc_err(400, "DC_ID_INVALID");
            }
            let bytes = super::crypto::random::<32>().to_vec();
            let bot = bot.expect("checked above");
            world.exported.insert(bytes.clone(), (bot, req.dc_id));
            ok(enums::auth::ExportedAuthorization::Authorization(
                types::auth::ExportedAuthorization { id: bot, bytes },
            )
            .to_bytes())
        }
        auth::ImportAuthorization::CONSTRUCTOR_ID => {
            let req = auth::ImportAuthorization::from_bytes(body)?;
            match world.exported.remove(&req.bytes) {
                Some((user, dc)) if user == req.id && dc == caller.dc => {
                    world.log_in(caller.key_id, user);
                    ok(authorization(world, user))
                }
                _ => rpc_err(400, "AUTH_BYTES_INVALID"),
            }
        }
        users::GetUsers::CONSTRUCTOR_ID => {
            let req = users::GetUsers::from_bytes(body)?;
            let bot = bot.expect("checked above");
            let found: Vec<enums::User> = req
                .id
                .iter()
                .filter_map(|input| match input {
                    enums::InputUser::UserSelf => Some(world.bot_user(&world.bots[&bot], true)),
                    enums::InputUser::User(u) => world.user_object(u.user_id),
                    _ => None,
                })
                .collect();
            ok(found.to_bytes())
        }
        users::GetFullUser::CONSTRUCTOR_ID => {
            let req = users::GetFullUser::from_bytes(body)?;
            let bot = bot.expect("checked above");
            let (target, user) = match req.id {
                enums::InputUser::UserSelf => (bot, world.bot_user(&world.bots[&bot], true)),
                enums::InputUser::User(u) => match world.user_object(u.user_id) {
                    Some(user) => (u.user_id, user),
                    None => return rpc_err(400, "USER_ID_INVALID"),
                },
                _ => return rpc_err(400, "USER_ID_INVALID"),
            };
            let full = tl_defaults::user_full(
                target,
                enums::PeerSettings::Settings(tl_defaults::peer_settings()),
                enums::PeerNotifySettings::Settings(tl_defaults::peer_notify_settings()),
                0,
            );
            ok(enums::users::UserFull::Full(types::users::UserFull {
                full_user: enums::UserFull::Full(full),
                chats: vec![],
                users: vec![user],
            })
            .to_bytes())
        }
        updates::GetState::CONSTRUCTOR_ID => {
            ok(difference::state(world, bot.expect("checked above")).to_bytes())
        }
        updates::GetChannelDifference::CONSTRUCTOR_ID => Ok(difference::get_channel_difference(
            world,
            bot.expect("checked above"),
            &updates::GetChannelDifference::from_bytes(body)?,
        )
        .map(|d| d.to_bytes())),
        updates::GetDifference::CONSTRUCTOR_ID => ok(difference::get_difference(
            world,
            bot.expect("checked above"),
            &updates::GetDifference::from_bytes(body)?,
        )
        .to_bytes()),
        upload::GetFile::CONSTRUCTOR_ID => Ok(files::get_file(
            world,
            caller.dc,
            bot,
            upload::GetFile::from_bytes(body)?,
        )),
        messages::GetMessages::CONSTRUCTOR_ID => {
            let req = messages::GetMessages::from_bytes(body)?;
            ok(world
                .get_messages(bot.expect("checked above"), &req.id)
                .to_bytes())
        }
        channels::GetMessages::CONSTRUCTOR_ID => {
            let req = channels::GetMessages::from_bytes(body)?;
            Ok(world
                .get_channel_messages(bot.expect("checked above"), &req.channel, &req.id)
                .map(|m| m.to_bytes()))
        }
        _ if bot.is_some() && user_only(tl::name_for_id(id)) => rpc_err(400, "BOT_METHOD_INVALID"),
        _ => rpc_err(400, "INPUT_METHOD_INVALID"),
    }
}

fn is_known(id: u32) -> bool {
    use functions::{auth, channels, messages, updates, upload, users};
    matches!(
        id,
        auth::ExportAuthorization::CONSTRUCTOR_ID
            | messages::GetMessages::CONSTRUCTOR_ID
            | channels::GetMessages::CONSTRUCTOR_ID
            | users::GetUsers::CONSTRUCTOR_ID
            | users::GetFullUser::CONSTRUCTOR_ID
            | updates::GetState::CONSTRUCTOR_ID
            | updates::GetDifference::CONSTRUCTOR_ID
            | updates::GetChannelDifference::CONSTRUCTOR_ID
            | upload::GetFile::CONSTRUCTOR_ID
    )
}

/// Methods Telegram answers `BOT_METHOD_INVALID` when a bot calls them: what only a
/// user account does (signing in by phone, its account, contacts, dialogs and history,
/// joining chats, stories, folders). The rest of the schema the fake DC does not serve
/// answers `INPUT_METHOD_INVALID`.
fn user_only(method: &str) -> bool {
    const NAMESPACES: [&str; 7] = [
        "account.",
        "contacts.",
        "stories.",
        "chatlists.",
        "folders.",
        "premium.",
        "smsjobs.",
    ];
    const METHODS: [&str; 24] = [
        "auth.sendCode",
        "auth.resendCode",
        "auth.cancelCode",
        "auth.signIn",
        "auth.signUp",
        "auth.checkPassword",
        "auth.requestPasswordRecovery",
        "auth.recoverPassword",
        "auth.exportLoginToken",
        "auth.importLoginToken",
        "auth.acceptLoginToken",
        "auth.resetAuthorizations",
        "messages.getDialogs",
        "messages.getPinnedDialogs",
        "messages.getPeerDialogs",
        "messages.getHistory",
        "messages.search",
        "messages.searchGlobal",
        "messages.readHistory",
        "messages.getAllChats",
        "messages.importChatInvite",
        "messages.getDialogFilters",
        "channels.joinChannel",
        "channels.readHistory",
    ];
    // Bots resolve usernames like anyone.
    (NAMESPACES.iter().any(|ns| method.starts_with(ns)) && method != "contacts.resolveUsername")
        || METHODS.contains(&method)
}

fn config(world: &World, this_dc: i32) -> enums::Config {
    let now = now_unix();
    let options = world
        .dcs
        .iter()
        .map(|(id, addr)| {
            let mut option =
                tl_defaults::dc_option(*id, addr.ip().to_string(), i32::from(addr.port()));
            option.ipv6 = addr.is_ipv6();
            enums::DcOption::Option(option)
        })
        .collect();
    enums::Config::Config(tl_defaults::config(now, now + 3600, this_dc, options))
}

fn authorization(world: &World, bot: UserId) -> Vec<u8> {
    enums::auth::Authorization::Authorization(types::auth::Authorization {
        setup_password_required: false,
        otherwise_relogin_days: None,
        tmp_sessions: None,
        future_auth_token: None,
        user: world.bot_user(&world.bots[&bot], true),
    })
    .to_bytes()
}

fn import_bot_authorization(
    world: &mut World,
    caller: Caller,
    req: functions::auth::ImportBotAuthorization,
) -> Answer {
    if world.apps.get(&req.api_id) != Some(&req.api_hash) {
        return rpc_err(400, "API_ID_INVALID");
    }
    let Some(bot) = world
        .bot_by_token(&req.bot_auth_token)
        .filter(|b| !b.revoked)
    else {
        return rpc_err(400, "ACCESS_TOKEN_INVALID");
    };
    let (bot_id, home) = (bot.user_id, bot.home_dc);
    if home != caller.dc {
        return rpc_err(303, format!("USER_MIGRATE_{home}"));
    }
    // Repeated logins draw FLOOD_WAIT on their own, as Telegram's do.
    let (limit, window) = (world.settings.login_limit, world.settings.login_window);
    let now = Instant::now();
    let bot = world.bots.get_mut(&bot_id).expect("looked up");
    bot.recent_logins
        .retain(|at| now.duration_since(*at) < window);
    if bot.recent_logins.len() >= limit as usize {
        let oldest = bot.recent_logins[0];
        let wait = window.saturating_sub(now.duration_since(oldest));
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return rpc_err(420, format!("FLOOD_WAIT_{}", seconds.max(1)));
    }
    bot.recent_logins.push(now);
    world.log_in(caller.key_id, bot_id);
    *world.stats.logins.entry(bot_id).or_default() += 1;
    ok(authorization(world, bot_id))
}
