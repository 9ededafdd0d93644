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
    /// `***`, and any query string dropped (libpq accepts `?password=` there too). A
    /// libpq keyword string (`host=db password=x`) keeps its keywords and hides every
    /// value but `host`, `port`, `dbname` and `user`.
    pub fn redacted(&self) -> String {
        let value = self.0.expose();
        if value.contains("://") {
            redact_url(value)
        } else {
            redact_keywords(value)
        }
    }
}

/// Credentials end at the last `@`, and the query is dropped. A password may hold
/// unencoded `/ ? # @` and a query may hold `@`: where the two cannot be told apart (a
/// `?` or `#` before the last `@`), everything after the scheme is hidden.
fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let without_query = |s: &str| s.split(['?', '#']).next().unwrap_or_default().to_owned();
    let Some(at) = rest.rfind('@') else {
        return format!("{scheme}{}", without_query(rest));
    };
    let (userinfo, host) = (&rest[..at], &rest[at + 1..]);
    if userinfo.contains(['?', '#']) {
        return format!("{scheme}***");
    }
    let user = userinfo.split(':').next().unwrap_or_default();
    let user = if user.contains(['/', '=']) {
        "***"
    } else {
        user
    };
    format!("{scheme}{user}:***@{}", without_query(host))
}

fn redact_keywords(s: &str) -> String {
    const SHOWN: [&str; 4] = ["host", "port", "dbname", "user"];
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let key: String =
            std::iter::from_fn(|| chars.next_if(|&c| c != '=' && !c.is_whitespace())).collect();
        if key.is_empty() {
            break;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'=').is_some() {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            if chars.next_if_eq(&'\'').is_some() {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next()),
                        '\'' => break,
                        c => value.push(c),
                    }
                }
            } else {
                value = std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace())).collect();
            }
        }
        if SHOWN.contains(&key.as_str()) {
            out.push(format!("{key}={value}"));
        } else {
            out.push(format!("{key}=***"));
        }
    }
    out.join(" ")
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
                "postgresql://app@db/bots?sslmode=require",
                "postgresql://app:***@db/bots",
            ),
            ("postgres://db/bots", "postgres://db/bots"),
            ("postgresql://app@db/bots", "postgresql://app:***@db/bots"),
            ("postgres://u:p:q@db/x", "postgres://u:***@db/x"),
            ("postgres://app:s3c/ret@db/x", "postgres://app:***@db/x"),
            ("postgres://app:s3c#ret@db/x", "postgres://***"),
            ("postgres://app:s3c?ret@db/x", "postgres://***"),
            ("postgres://db/x?password=s3c@ret", "postgres://***"),
            ("postgres://app:s3c?x@ret@db/x", "postgres://***"),
            ("postgres://app:s3c@ret@db/x", "postgres://app:***@db/x"),
            (
                "host=db user=app password='s3c ret\\'x' dbname=bots",
                "host=db user=app password=*** dbname=bots",
            ),
            (
                "host=db password=s3cret sslmode=require",
                "host=db password=*** sslmode=***",
            ),
        ];
        for (url, want) in cases {
            let u = SecretUrl::new(url.to_owned());
            assert_eq!(u.to_string(), want);
            assert!(!format!("{u:?}").contains("s3c") && !format!("{u:?}").contains("ret"));
        }
    }
}
