//! Channel names (PROTOCOL.md 1.6, 1.10–1.12, 1.15): classification by prefix and validation.
//!
//! Classification uses **anchored** prefixes, longest first: a substring test would turn
//! `public-private-x` into a private channel or `private-encrypted-cache-x` into a plain private
//! one, and the kind decides whether a subscription needs a signature at all.

use thiserror::Error;

/// Pusher's documented maximum channel name length (the SDKs allow 200).
pub const DEFAULT_MAX_NAME_LEN: usize = 164;
/// Pusher's documented maximum user id length (presence limits, PROTOCOL.md 1.9).
pub const DEFAULT_MAX_USER_ID_LEN: usize = 128;
/// Prefix of the per-user channel pusher-js subscribes to after `pusher:signin`.
pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

/// What kind of channel a name denotes; decides authorization and client-event rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// No prefix (or `cache-`): anyone may subscribe.
    Public,
    /// `private-`: needs an HMAC of `<socket_id>:<channel>`.
    Private,
    /// `private-encrypted-`: authorized like private; payloads are end-to-end encrypted and the
    /// server only relays them.
    PrivateEncrypted,
    /// `presence-`: needs an HMAC over `<socket_id>:<channel>:<channel_data>`; tracks members.
    Presence,
    /// `#server-to-user-<id>`: only for the socket signed in as `<id>`; not HMAC-authorized.
    ServerToUser,
}

/// A channel's kind plus whether it is a cache channel (`cache-`, `private-cache-`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelType {
    pub kind: ChannelKind,
    /// Cache channels replay the last HTTP-triggered event (or `pusher:cache_miss`) on subscribe.
    pub cache: bool,
}

impl ChannelKind {
    /// Whether `pusher:subscribe` must carry a valid `auth` signature.
    ///
    /// `ServerToUser` returns `false`: pusher-js subscribes to it with `auth:""`; the gate is
    /// [`ChannelKind::requires_signin`] instead.
    pub const fn requires_auth(self) -> bool {
        matches!(
            self,
            Self::Private | Self::PrivateEncrypted | Self::Presence
        )
    }

    /// Whether subscribing requires the socket to be signed in as the user the channel names.
    pub const fn requires_signin(self) -> bool {
        matches!(self, Self::ServerToUser)
    }

    /// Whether `client-*` events may be sent on the channel: private and presence only.
    ///
    /// Never on encrypted channels: the server cannot check the ciphertext and pusher-js refuses
    /// to trigger there anyway; never on public channels, where senders are unauthenticated.
    pub const fn allows_client_events(self) -> bool {
        matches!(self, Self::Private | Self::Presence)
    }

    /// Whether the channel tracks members (`presence-`, `presence-cache-`).
    pub const fn is_presence(self) -> bool {
        matches!(self, Self::Presence)
    }
}

impl ChannelType {
    /// See [`ChannelKind::requires_auth`].
    pub const fn requires_auth(self) -> bool {
        self.kind.requires_auth()
    }

    /// See [`ChannelKind::requires_signin`].
    pub const fn requires_signin(self) -> bool {
        self.kind.requires_signin()
    }

    /// See [`ChannelKind::allows_client_events`].
    pub const fn allows_client_events(self) -> bool {
        self.kind.allows_client_events()
    }

    /// See [`ChannelKind::is_presence`].
    pub const fn is_presence(self) -> bool {
        self.kind.is_presence()
    }
}

/// Prefix table, most specific first so the first match wins.
const PREFIXES: [(&str, ChannelKind, bool); 8] = [
    (
        "private-encrypted-cache-",
        ChannelKind::PrivateEncrypted,
        true,
    ),
    ("private-encrypted-", ChannelKind::PrivateEncrypted, false),
    ("private-cache-", ChannelKind::Private, true),
    ("private-", ChannelKind::Private, false),
    ("presence-cache-", ChannelKind::Presence, true),
    ("presence-", ChannelKind::Presence, false),
    ("cache-", ChannelKind::Public, true),
    (SERVER_TO_USER_PREFIX, ChannelKind::ServerToUser, false),
];

/// Classify a channel name by its anchored prefix. Does not validate the name; call
/// [`validate_name`] first for untrusted input.
pub fn classify(name: &str) -> ChannelType {
    for (prefix, kind, cache) in PREFIXES {
        if name.starts_with(prefix) {
            return ChannelType { kind, cache };
        }
    }
    ChannelType {
        kind: ChannelKind::Public,
        cache: false,
    }
}

/// Why a channel name was rejected. Messages are shown to clients/app developers.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChannelNameError {
    #[error("channel name must not be empty")]
    Empty,
    #[error("channel name is {len} characters long; the maximum is {max}")]
    TooLong { len: usize, max: usize },
    #[error(
        "channel name contains invalid character {ch:?} at position {position}; \
         allowed are A-Z, a-z, 0-9 and _ - = @ , . ;"
    )]
    InvalidCharacter { ch: char, position: usize },
    #[error(
        "channel names starting with '#' are reserved; the only allowed form is \
         '#server-to-user-<user id>'"
    )]
    ReservedPrefix,
}

/// Why a user id was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UserIdError {
    #[error("user id must not be empty")]
    Empty,
    #[error("user id is {len} characters long; the maximum is {max}")]
    TooLong { len: usize, max: usize },
    #[error(
        "user id contains invalid character {ch:?} at position {position}; \
         allowed are A-Z, a-z, 0-9 and _ - = @ , . ;"
    )]
    InvalidCharacter { ch: char, position: usize },
}

/// The Pusher channel-name alphabet `[A-Za-z0-9_\-=@,.;]`, shared by user ids.
const fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '=' | '@' | ',' | '.' | ';')
}

/// First character outside the alphabet, with its byte offset. Everything before it is ASCII,
/// so the byte offset is also the character position.
fn first_invalid(s: &str) -> Option<(char, usize)> {
    s.char_indices()
        .find(|&(_, c)| !is_name_char(c))
        .map(|(i, c)| (c, i))
}

/// Validate a channel name: non-empty, at most `max_len` bytes, only `[A-Za-z0-9_\-=@,.;]`.
///
/// `#` is reserved (apps cannot create such channels) except for the exact prefix
/// `#server-to-user-` followed by a non-empty valid user id, which pusher-js subscribes to after
/// sign-in. Commas and semicolons are allowed: rejecting them is a known bug in other servers.
pub fn validate_name(name: &str, max_len: usize) -> Result<(), ChannelNameError> {
    if name.is_empty() {
        return Err(ChannelNameError::Empty);
    }
    if name.len() > max_len {
        return Err(ChannelNameError::TooLong {
            len: name.len(),
            max: max_len,
        });
    }
    let (rest, offset) = if name.starts_with('#') {
        match name.strip_prefix(SERVER_TO_USER_PREFIX) {
            Some(user_id) if !user_id.is_empty() => (user_id, SERVER_TO_USER_PREFIX.len()),
            _ => return Err(ChannelNameError::ReservedPrefix),
        }
    } else {
        (name, 0)
    };
    match first_invalid(rest) {
        Some((ch, i)) => Err(ChannelNameError::InvalidCharacter {
            ch,
            position: offset + i,
        }),
        None => Ok(()),
    }
}

/// Validate a user id (sign-in `id`, presence `user_id`): same alphabet as channel names, so it
/// can always be embedded in `#server-to-user-<id>`; non-empty; at most `max_len` bytes.
pub fn validate_user_id(id: &str, max_len: usize) -> Result<(), UserIdError> {
    if id.is_empty() {
        return Err(UserIdError::Empty);
    }
    if id.len() > max_len {
        return Err(UserIdError::TooLong {
            len: id.len(),
            max: max_len,
        });
    }
    match first_invalid(id) {
        Some((ch, position)) => Err(UserIdError::InvalidCharacter { ch, position }),
        None => Ok(()),
    }
}

/// The user id of a `#server-to-user-<id>` channel, or `None` for any other name (or an empty id).
pub fn server_to_user_id(name: &str) -> Option<&str> {
    name.strip_prefix(SERVER_TO_USER_PREFIX)
        .filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChannelKind::*;

    fn ty(kind: ChannelKind, cache: bool) -> ChannelType {
        ChannelType { kind, cache }
    }

    #[test]
    fn classifies_every_documented_prefix() {
        let cases = [
            ("my-channel", ty(Public, false)),
            ("cache-news", ty(Public, true)),
            ("private-foobar", ty(Private, false)),
            ("private-cache-foobar", ty(Private, true)),
            ("private-encrypted-foobar", ty(PrivateEncrypted, false)),
            ("private-encrypted-cache-foobar", ty(PrivateEncrypted, true)),
            ("presence-foobar", ty(Presence, false)),
            ("presence-cache-foobar", ty(Presence, true)),
            ("#server-to-user-42", ty(ServerToUser, false)),
        ];
        for (name, expected) in cases {
            assert_eq!(classify(name), expected, "{name}");
        }
    }

    #[test]
    fn prefixes_are_anchored_not_substrings() {
        assert_eq!(classify("public-private-x"), ty(Public, false));
        assert_eq!(classify("my-presence-x"), ty(Public, false));
        assert_eq!(classify("x-cache-y"), ty(Public, false));
        assert_eq!(classify("x#server-to-user-1"), ty(Public, false));
        // Prefixes are case-sensitive, as in pusher-js.
        assert_eq!(classify("Private-x"), ty(Public, false));
        assert_eq!(classify("PRESENCE-x"), ty(Public, false));
        // "private-encryptedX" is not the encrypted prefix (no dash), so it is plain private.
        assert_eq!(classify("private-encryptedx"), ty(Private, false));
        assert_eq!(classify("private-cachex"), ty(Private, false));
    }

    #[test]
    fn authorization_rules_per_kind() {
        assert!(!classify("news").requires_auth());
        assert!(!classify("cache-news").requires_auth());
        assert!(classify("private-a").requires_auth());
        assert!(classify("private-cache-a").requires_auth());
        assert!(classify("private-encrypted-a").requires_auth());
        assert!(classify("presence-a").requires_auth());
        assert!(classify("presence-cache-a").requires_auth());
        let s2u = classify("#server-to-user-1");
        assert!(!s2u.requires_auth());
        assert!(s2u.requires_signin());
        assert!(!classify("private-a").requires_signin());
    }

    #[test]
    fn client_events_only_on_private_and_presence_never_encrypted() {
        assert!(classify("private-a").allows_client_events());
        assert!(classify("private-cache-a").allows_client_events());
        assert!(classify("presence-a").allows_client_events());
        assert!(classify("presence-cache-a").allows_client_events());
        assert!(!classify("private-encrypted-a").allows_client_events());
        assert!(!classify("private-encrypted-cache-a").allows_client_events());
        assert!(!classify("public").allows_client_events());
        assert!(!classify("cache-a").allows_client_events());
        assert!(!classify("#server-to-user-1").allows_client_events());
    }

    #[test]
    fn presence_detection() {
        assert!(classify("presence-a").is_presence());
        assert!(classify("presence-cache-a").is_presence());
        assert!(!classify("private-a").is_presence());
        assert!(!classify("presencex").is_presence());
    }

    #[test]
    fn accepts_full_alphabet_including_commas_and_semicolons() {
        let max = DEFAULT_MAX_NAME_LEN;
        for ok in [
            "a",
            "private-foobar",
            "presence-room_1",
            "ABCxyz0123456789_-=@,.;",
            "a,b;c",
            "private-encrypted-cache-x",
            "#server-to-user-42",
            "#server-to-user-user@example.com",
        ] {
            assert_eq!(validate_name(ok, max), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_empty_names() {
        assert_eq!(validate_name("", 164), Err(ChannelNameError::Empty));
    }

    #[test]
    fn length_limit_is_inclusive() {
        let at_limit = "a".repeat(164);
        assert_eq!(validate_name(&at_limit, 164), Ok(()));
        let over = "a".repeat(165);
        assert_eq!(
            validate_name(&over, 164),
            Err(ChannelNameError::TooLong { len: 165, max: 164 })
        );
        // The whole name counts, including the server-to-user prefix.
        let s2u = format!("#server-to-user-{}", "u".repeat(200 - 16));
        assert_eq!(s2u.len(), 200);
        assert_eq!(validate_name(&s2u, 200), Ok(()));
        assert!(matches!(
            validate_name(&s2u, 199),
            Err(ChannelNameError::TooLong { len: 200, max: 199 })
        ));
    }

    #[test]
    fn reports_first_invalid_character_and_position() {
        let cases = [
            ("channel:invalid", ':', 7),
            ("a b", ' ', 1),
            ("foo/bar", '/', 3),
            ("foo#bar", '#', 3),
            ("x*", '*', 1),
            ("café", 'é', 3),
            ("a\u{0}", '\u{0}', 1),
            ("private-a\nb", '\n', 9),
        ];
        for (name, ch, position) in cases {
            assert_eq!(
                validate_name(name, 164),
                Err(ChannelNameError::InvalidCharacter { ch, position }),
                "{name:?}"
            );
        }
    }

    #[test]
    fn hash_is_reserved_except_exact_server_to_user_prefix() {
        for bad in [
            "#",
            "#foo",
            "#server-to-user-",
            "#server-to-user",
            "#SERVER-TO-USER-1",
            "##server-to-user-1",
        ] {
            assert_eq!(
                validate_name(bad, 164),
                Err(ChannelNameError::ReservedPrefix),
                "{bad:?}"
            );
        }
        // The user id part must itself be valid; position is within the full name.
        assert_eq!(
            validate_name("#server-to-user-a#b", 164),
            Err(ChannelNameError::InvalidCharacter {
                ch: '#',
                position: 17
            })
        );
        assert_eq!(
            validate_name("#server-to-user-a b", 164),
            Err(ChannelNameError::InvalidCharacter {
                ch: ' ',
                position: 17
            })
        );
    }

    #[test]
    fn error_messages_are_user_facing() {
        assert_eq!(
            ChannelNameError::TooLong { len: 200, max: 164 }.to_string(),
            "channel name is 200 characters long; the maximum is 164"
        );
        let msg = ChannelNameError::InvalidCharacter {
            ch: ':',
            position: 7,
        }
        .to_string();
        assert!(msg.contains("':'") && msg.contains("position 7"), "{msg}");
        assert!(ChannelNameError::ReservedPrefix
            .to_string()
            .contains("#server-to-user-"));
    }

    #[test]
    fn user_ids_share_the_channel_alphabet() {
        assert_eq!(validate_user_id("12345", 128), Ok(()));
        assert_eq!(validate_user_id("user@example.com", 128), Ok(()));
        assert_eq!(validate_user_id("a=b,c;d_e-f", 128), Ok(()));
        assert_eq!(validate_user_id("", 128), Err(UserIdError::Empty));
        assert_eq!(
            validate_user_id(&"1".repeat(129), 128),
            Err(UserIdError::TooLong { len: 129, max: 128 })
        );
        assert_eq!(validate_user_id(&"1".repeat(128), 128), Ok(()));
        assert_eq!(
            validate_user_id("a#b", 128),
            Err(UserIdError::InvalidCharacter {
                ch: '#',
                position: 1
            })
        );
        assert_eq!(
            validate_user_id("John Doe", 128),
            Err(UserIdError::InvalidCharacter {
                ch: ' ',
                position: 4
            })
        );
    }

    #[test]
    fn extracts_server_to_user_id() {
        assert_eq!(server_to_user_id("#server-to-user-42"), Some("42"));
        assert_eq!(server_to_user_id("#server-to-user-a-b"), Some("a-b"));
        assert_eq!(server_to_user_id("#server-to-user-"), None);
        assert_eq!(server_to_user_id("server-to-user-42"), None);
        assert_eq!(server_to_user_id("private-42"), None);
        assert_eq!(server_to_user_id("x#server-to-user-42"), None);
    }
}
