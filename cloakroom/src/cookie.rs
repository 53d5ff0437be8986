//! The session cookie: its attributes, and reading it from requests.

use std::fmt::Write as _;
use std::time::Duration;

use http::header::{COOKIE, HeaderMap, HeaderValue};

use crate::error::Error;

/// What browsers keep of one cookie (name, value and attributes): a longer one is dropped, so
/// the layer never sends one, and never looks at a longer incoming value (a signed ticket is
/// under 100 bytes; a sealed session fits within this by construction).
pub(crate) const BROWSER_COOKIE_LIMIT: usize = 4096;

/// The `SameSite` attribute of the session cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SameSite {
    /// Sent only on same-site requests.
    Strict,
    /// Sent on same-site requests and top-level cross-site navigations (the default: a good
    /// balance between CSRF protection and links from other sites that keep you logged in).
    #[default]
    Lax,
    /// Sent on every request; requires `Secure`.
    None,
}

impl SameSite {
    fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "Strict",
            Self::Lax => "Lax",
            Self::None => "None",
        }
    }
}

/// The attributes of the session cookie.
///
/// Defaults follow the OWASP Session Management Cheat Sheet: a generic name (`id`), `HttpOnly`,
/// `Secure`, `SameSite=Lax`, `Path=/`, no `Domain` (host-only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieConfig {
    /// The cookie name. A `__Host-` prefix makes browsers enforce `Secure`, `Path=/` and no
    /// `Domain`; a `__Secure-` prefix enforces `Secure`.
    pub name: String,
    /// `Domain`, to share the cookie with subdomains. `None` keeps it host-only.
    pub domain: Option<String>,
    /// `Path`.
    pub path: String,
    /// `SameSite`.
    pub same_site: SameSite,
    /// `Secure`: sent only over HTTPS (browsers also allow it on `http://localhost`).
    pub secure: bool,
    /// `HttpOnly`: invisible to JavaScript.
    pub http_only: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: "id".into(),
            domain: None,
            path: "/".into(),
            same_site: SameSite::Lax,
            secure: true,
            http_only: true,
        }
    }
}

impl CookieConfig {
    /// Checks the attributes against RFC 6265 and the cookie-prefix rules.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |why: String| Err(Error::Config(why));
        if self.name.is_empty() || !self.name.bytes().all(is_token_byte) {
            return bad(format!(
                "cookie name {:?} must be a non-empty token (letters, digits and !#$%&'*+-.^_`|~)",
                self.name
            ));
        }
        for (what, value) in [("path", Some(&self.path)), ("domain", self.domain.as_ref())] {
            if let Some(value) = value
                && (value.is_empty()
                    || !value
                        .bytes()
                        .all(|b| (0x21..0x7f).contains(&b) && b != b';'))
            {
                return bad(format!(
                    "cookie {what} {value:?} must be non-empty visible ASCII without ';'"
                ));
            }
        }
        if !self.path.starts_with('/') {
            return bad(format!("cookie path {:?} must start with '/'", self.path));
        }
        if self.same_site == SameSite::None && !self.secure {
            return bad("SameSite=None requires Secure: browsers reject it otherwise".into());
        }
        if self.name.starts_with("__Host-")
            && (!self.secure || self.path != "/" || self.domain.is_some())
        {
            return bad(format!(
                "cookie {:?} has the __Host- prefix, which requires Secure, Path=/ and no Domain; \
                 browsers silently drop it otherwise",
                self.name
            ));
        }
        if self.name.starts_with("__Secure-") && !self.secure {
            return bad(format!(
                "cookie {:?} has the __Secure- prefix, which requires Secure",
                self.name
            ));
        }
        Ok(())
    }

    /// The `Set-Cookie` value that stores `value`; with `max_age` a persistent cookie, without it
    /// a cookie that ends with the browser session.
    pub(crate) fn set_cookie(&self, value: &str, max_age: Option<Duration>) -> HeaderValue {
        let mut header = format!("{}={value}", self.name);
        if let Some(max_age) = max_age {
            let _ = write!(header, "; Max-Age={}", max_age.as_secs());
        }
        self.push_attributes(&mut header);
        header_value(header)
    }

    /// The `Set-Cookie` value that deletes the cookie.
    pub(crate) fn removal(&self) -> HeaderValue {
        let mut header = format!(
            "{}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            self.name
        );
        self.push_attributes(&mut header);
        header_value(header)
    }

    fn push_attributes(&self, header: &mut String) {
        if let Some(domain) = &self.domain {
            let _ = write!(header, "; Domain={domain}");
        }
        let _ = write!(header, "; Path={}", self.path);
        if self.http_only {
            header.push_str("; HttpOnly");
        }
        if self.secure {
            header.push_str("; Secure");
        }
        let _ = write!(header, "; SameSite={}", self.same_site.as_str());
    }

    /// The session cookie as `headers` carry it, read when asked (nothing is copied: this runs
    /// on every request that uses the session).
    pub(crate) fn incoming<'a>(&'a self, headers: &'a HeaderMap) -> Incoming<'a> {
        Incoming {
            headers,
            name: &self.name,
        }
    }
}

/// The session cookie as a request sent it: every value sent under its name (a browser may send
/// several when another site on a parent domain sets one with the same name).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Incoming<'a> {
    headers: &'a HeaderMap,
    name: &'a str,
}

impl<'a> Incoming<'a> {
    fn sent(self) -> impl Iterator<Item = &'a str> {
        self.headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|header| header.to_str().ok())
            .flat_map(|text| text.split(';'))
            .filter_map(move |pair| {
                let (name, value) = pair.split_once('=')?;
                (name.trim() == self.name).then_some(value)
            })
    }

    /// Whether any cookie of that name was sent, usable or not (the layer then clears it).
    pub(crate) fn present(self) -> bool {
        self.sent().next().is_some()
    }

    /// The values worth verifying: oversized ones are skipped.
    pub(crate) fn values(self) -> impl Iterator<Item = &'a str> {
        self.sent()
            .filter(|value| value.len() <= BROWSER_COOKIE_LIMIT)
            .map(|value| value.trim().trim_matches('"'))
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn header_value(text: String) -> HeaderValue {
    // Every part was validated (name, path, domain) or generated (base64url, digits), so this
    // cannot fail; an empty value would only mean a bug, never a panic.
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe() {
        let config = CookieConfig::default();
        config.validate().unwrap();
        assert_eq!(
            config.set_cookie("v", None),
            "id=v; Path=/; HttpOnly; Secure; SameSite=Lax"
        );
        assert_eq!(
            config.set_cookie("v", Some(Duration::from_secs(60))),
            "id=v; Max-Age=60; Path=/; HttpOnly; Secure; SameSite=Lax"
        );
        assert_eq!(
            config.removal(),
            "id=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; HttpOnly; Secure; SameSite=Lax"
        );
    }

    #[test]
    fn prefix_rules() {
        let host = CookieConfig {
            name: "__Host-id".into(),
            ..CookieConfig::default()
        };
        host.validate().unwrap();
        for bad in [
            CookieConfig {
                secure: false,
                ..host.clone()
            },
            CookieConfig {
                path: "/app".into(),
                ..host.clone()
            },
            CookieConfig {
                domain: Some("example.com".into()),
                ..host.clone()
            },
            CookieConfig {
                name: "__Secure-id".into(),
                secure: false,
                ..host.clone()
            },
            CookieConfig {
                same_site: SameSite::None,
                secure: false,
                ..CookieConfig::default()
            },
            CookieConfig {
                name: "a b".into(),
                ..CookieConfig::default()
            },
            CookieConfig {
                path: "/x;evil".into(),
                ..CookieConfig::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn finds_every_value_under_the_name() {
        let config = CookieConfig::default();
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; id=first; idx=no"));
        headers.append(COOKIE, HeaderValue::from_static("id=\"second\""));
        let incoming = config.incoming(&headers);
        assert_eq!(incoming.values().collect::<Vec<_>>(), ["first", "second"]);
        assert!(incoming.present());

        let mut huge = HeaderMap::new();
        let value = format!("id={}", "x".repeat(BROWSER_COOKIE_LIMIT + 1));
        huge.append(COOKIE, HeaderValue::try_from(value).unwrap());
        let incoming = config.incoming(&huge);
        assert_eq!(incoming.values().count(), 0);
        assert!(incoming.present());
    }
}
