//! Newtypes for WeChat's identifiers, parsed once at the edge so the domain never sees a
//! malformed one.

use std::fmt;

use super::error::Error;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Checks the shape; the error message names the argument so a client can fix it.
            pub fn parse(s: &str) -> Result<Self, Error> {
                let check: fn(&str) -> bool = $check;
                if check(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(Error::BadRequest(format!(concat!($what, " has the wrong shape"))))
                }
            }

            /// The identifier as WeChat spells it.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The identifier, moved out.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn token_chars(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

id_type!(
    /// A WeChat appid: `wx` followed by 16 letters or digits.
    AppId,
    "appId",
    |s| s.len() == 18 && s.starts_with("wx") && s.bytes().all(|b| b.is_ascii_alphanumeric())
);
id_type!(
    /// An openid: one person as seen by one app.
    OpenId,
    "openId",
    |s| token_chars(s, 64)
);
id_type!(
    /// A unionid: one person across the apps of one open platform.
    UnionId,
    "unionId",
    |s| token_chars(s, 64)
);

/// A user's id, as wxunion stored it (a UUIDv7).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    /// Wraps an id read from storage or minted by it.
    pub fn new(id: impl Into<String>) -> Self {
        UserId(id.into())
    }

    /// Checks the shape of an id a client sent.
    pub fn parse(s: &str) -> Result<Self, Error> {
        if !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            Ok(UserId(s.to_owned()))
        } else {
            Err(Error::BadRequest("user id has the wrong shape".into()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A login code from `wx.login` or an OAuth redirect: single use, opaque to us.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginCode(String);

impl LoginCode {
    /// Rejects empty or absurd codes before spending a WeChat call on them.
    pub fn parse(s: &str) -> Result<Self, Error> {
        if s.trim().is_empty() {
            return Err(Error::BadRequest("code must not be empty".into()));
        }
        if s.len() > 256 || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::BadRequest("code has the wrong shape".into()));
        }
        Ok(Self(s.to_owned()))
    }

    /// The code as sent to WeChat.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LoginCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LoginCode(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_id_must_be_wx_plus_sixteen_alphanumerics() {
        assert!(AppId::parse("wx1111111111111111").is_ok());
        assert!(AppId::parse("wxabcdef0123456789").is_ok());
        assert!(AppId::parse("wx111").is_err());
        assert!(AppId::parse("xx1111111111111111").is_err());
        assert!(AppId::parse("wx11111111111111'1").is_err());
    }

    #[test]
    fn open_id_rejects_empty_and_odd_characters() {
        assert!(OpenId::parse("oKeNO44zXYi_sp9WqKZaHQwWvdmU").is_ok());
        assert!(OpenId::parse("").is_err());
        assert!(OpenId::parse("a b").is_err());
        assert!(OpenId::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn login_code_rejects_blank_and_control_characters() {
        assert!(LoginCode::parse("081abcDEF").is_ok());
        assert!(matches!(LoginCode::parse("  "), Err(Error::BadRequest(m)) if m.contains("empty")));
        assert!(LoginCode::parse("a\nb").is_err());
    }

    #[test]
    fn login_code_debug_hides_the_code() {
        let c = LoginCode::parse("secretcode").unwrap();
        assert!(!format!("{c:?}").contains("secretcode"));
    }
}
