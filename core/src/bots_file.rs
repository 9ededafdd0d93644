//! The bots file: TOML with one `[[bot]]` table per bot, holding `workspace_id` and
//! `token`. The source of bots until the PostgreSQL store takes over. Errors name the
//! line and never quote a token.

use std::collections::BTreeSet;
use std::fmt;

use crate::secret::Secret;

/// One bot to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BotEntry {
    pub workspace_id: String,
    pub token: Secret<String>,
}

/// What is wrong with a bots file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BotsFileError(pub String);

impl fmt::Display for BotsFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bots file: {}", self.0)
    }
}

impl std::error::Error for BotsFileError {}

/// `123456:AbC-d_e`: the bot's numeric id, a colon, then URL-safe characters.
pub fn is_token(token: &str) -> bool {
    check_token(token).is_ok()
}

/// [`is_token`], saying what is wrong. The message never quotes the token.
pub fn check_token(token: &str) -> Result<(), String> {
    let Some((id, secret)) = token.split_once(':') else {
        return Err("a bot token looks like 123456789:AbC-dEf_gh (no colon found)".into());
    };
    if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err("a bot token starts with the bot's numeric id before the colon".into());
    }
    if secret.is_empty()
        || !secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("after the colon a bot token has only letters, digits, '-' and '_'".into());
    }
    Ok(())
}

pub fn parse(text: &str) -> Result<Vec<BotEntry>, BotsFileError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        // toml's own message quotes the offending line, which may hold a token.
        let line = e.span().map_or(0, |span| {
            text[..span.start.min(text.len())].lines().count().max(1)
        });
        BotsFileError(format!("not valid TOML near line {line}"))
    })?;
    if let Some(other) = table.keys().find(|k| k.as_str() != "bot") {
        return Err(BotsFileError(format!(
            "unknown key {other:?} (expected [[bot]] tables)"
        )));
    }
    let bots = match table.get("bot") {
        None => return Ok(Vec::new()),
        Some(toml::Value::Array(bots)) => bots,
        Some(_) => return Err(BotsFileError("`bot` must be [[bot]] tables".into())),
    };
    let mut seen = BTreeSet::new();
    let mut entries = Vec::with_capacity(bots.len());
    for (i, bot) in bots.iter().enumerate() {
        let n = i + 1;
        let toml::Value::Table(bot) = bot else {
            return Err(BotsFileError(format!("bot {n} is not a table")));
        };
        if let Some(other) = bot
            .keys()
            .find(|k| !matches!(k.as_str(), "workspace_id" | "token"))
        {
            return Err(BotsFileError(format!("bot {n}: unknown key {other:?}")));
        }
        let workspace_id = match bot.get("workspace_id") {
            Some(toml::Value::String(id))
                if !id.trim().is_empty()
                    && id.len() <= 128
                    && !id.chars().any(char::is_control) =>
            {
                id.trim().to_owned()
            }
            Some(_) => {
                return Err(BotsFileError(format!(
                    "bot {n}: workspace_id must be a non-empty string of at most 128 characters"
                )));
            }
            None => return Err(BotsFileError(format!("bot {n}: workspace_id is missing"))),
        };
        let token = match bot.get("token") {
            Some(toml::Value::String(token)) if is_token(token.trim()) => token.trim().to_owned(),
            Some(_) => {
                return Err(BotsFileError(format!(
                    "bot {n} ({workspace_id}): token is not a bot token (digits, ':', then letters, digits, - or _)"
                )));
            }
            None => {
                return Err(BotsFileError(format!(
                    "bot {n} ({workspace_id}): token is missing"
                )));
            }
        };
        if !seen.insert(workspace_id.clone()) {
            return Err(BotsFileError(format!(
                "bot {n}: workspace_id {workspace_id:?} appears twice"
            )));
        }
        entries.push(BotEntry {
            workspace_id,
            token: Secret::new(token),
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bots_are_read_in_order() {
        let text = "# fleet\n[[bot]]\nworkspace_id = \"ws_1\"\ntoken = \"7000001:AAaa-bb_cc\"\n\n[[bot]]\nworkspace_id = 'ws_2'\ntoken = '7000002:BBbb'\n";
        let bots = parse(text).unwrap();
        assert_eq!(bots.len(), 2);
        assert_eq!(
            (
                bots[1].workspace_id.as_str(),
                bots[1].token.expose().as_str()
            ),
            ("ws_2", "7000002:BBbb")
        );
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn token_shapes_are_explained_without_quoting_the_token() {
        assert!(check_token("7000001:AAbc-d_e").is_ok());
        for bad in [
            "",
            "AAsecretpart",
            ":AAsecretpart",
            "12a:AAsecretpart",
            "1:",
            "1:AAsecret part",
        ] {
            let e = check_token(bad).unwrap_err();
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn mistakes_are_named_and_tokens_never_quoted() {
        let secret = "7000001:SeCrEt";
        let cases = [
            (
                format!("[[bot]]\nworkspace_id = \"ws\"\ntoken = \"{secret} x\"\n"),
                "bot 1 (ws): token is not a bot token",
            ),
            (
                format!("[[bot]]\ntoken = \"{secret}\"\n"),
                "bot 1: workspace_id is missing",
            ),
            (
                format!("[[bot]]\nworkspace_id = \"ws\"\ntokn = \"{secret}\"\n"),
                "bot 1: unknown key \"tokn\"",
            ),
            (
                format!("[[bot]]\nworkspace_id = \"ws\"\ntoken = \"{secret}\n"),
                "not valid TOML near line 3",
            ),
            (
                format!(
                    "[[bot]]\nworkspace_id = \"a\"\ntoken = \"{secret}\"\n[[bot]]\nworkspace_id = \"a\"\ntoken = \"{secret}\"\n"
                ),
                "appears twice",
            ),
            ("[bots]\n".to_owned(), "unknown key \"bots\""),
        ];
        for (text, want) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{err} should say {want}");
            assert!(!err.contains("SeCrEt"), "token leaked: {err}");
        }
    }
}
