//! Arbitrary environments into the configuration parser: no panic, and neither an error
//! line nor `Debug` output ever quotes the value of a secret variable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telegram_bots_core::config::{Config, VARIABLES};

const SECRETS: [&str; 5] = [
    "DATABASE_URL",
    "ENCRYPTION_KEY",
    "INNGEST_EVENT_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "TELEGRAM_API_HASH",
];

/// What the service could print about this environment.
fn printed(env: &[(String, String)]) -> String {
    match Config::from_env(env.iter().cloned()) {
        Ok(config) => format!("{config:?}"),
        Err(errors) => errors.to_string(),
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // One value per line, assigned to the variables in order.
    let env: Vec<(String, String)> = VARIABLES
        .iter()
        .zip(text.split('\n'))
        .map(|((name, _), value)| ((*name).to_owned(), value.to_owned()))
        .collect();
    let out = printed(&env);
    for (name, value) in &env {
        let value = value.trim();
        // A URL's user and host are shown on purpose; only its password is hidden, which
        // the unit tests pin down. Short values appear in any text by coincidence.
        if !SECRETS.contains(&name.as_str()) || value.contains("://") || value.len() < 12 {
            continue;
        }
        if !out.contains(value) {
            continue;
        }
        // The value is in the output: fine only if it is there without it too (it is part
        // of a fixed message, a field name, or another variable's value).
        let without: Vec<_> = env.iter().filter(|(n, _)| n != name).cloned().collect();
        let mut replaced = without.clone();
        replaced.push((name.clone(), "!".to_owned()));
        assert!(
            printed(&without).contains(value) || printed(&replaced).contains(value),
            "{name} leaked: {out}"
        );
    }
});
