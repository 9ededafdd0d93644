//! A wrapper that keeps secrets out of `Debug`, `Display` and therefore out of logs,
//! panic messages and error values.

use std::fmt;

/// A value that must never be printed: a key, a token, a password.
///
/// `Debug` and `Display` both print `[redacted]`; the value is reached only through
/// [`Secret::expose`], which makes every place that handles the plain value easy to find.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The plain value. Call it only where the value leaves for its one legitimate use
    /// (a request header, a cipher), never to format it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A URL whose password, if any, is a secret: `Debug`/`Display` show it as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(Secret<String>);

impl SecretUrl {
    pub fn new(url: String) -> Self {
        Self(Secret::new(url))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The URL with the password (between `user:` and `@` in the authority) replaced by
    /// `***`, and any query string dropped (libpq accepts `?password=` there too).
    pub fn redacted(&self) -> String {
        redact_url(self.0.expose())
    }
}

fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, mut tail) = rest.split_at(authority_end);
    if let Some(q) = tail.find('?') {
        tail = &tail[..q];
    }
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{authority}{tail}"),
        None => format!("{authority}{tail}"),
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats_its_value() {
        let s = Secret::new("hunter2".to_owned());
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn url_password_and_query_are_hidden() {
        let cases = [
            (
                "postgres://app:s3cr%40t@db:5432/bots",
                "postgres://app:***@db:5432/bots",
            ),
            (
                "postgresql://app@db/bots?password=s3cret",
                "postgresql://app@db/bots",
            ),
            ("postgres://db/bots", "postgres://db/bots"),
            ("postgres://u:p:q@h@db/x", "postgres://u:***@db/x"),
        ];
        for (url, want) in cases {
            let u = SecretUrl::new(url.to_owned());
            assert_eq!(u.to_string(), want);
            assert!(!format!("{u:?}").contains("s3c"));
        }
    }
}
