//! Socket ids (PROTOCOL.md 1.14): `<digits>.<digits>`, unique per connection and unpredictable.
//!
//! Unpredictability matters: the socket id is the only replay protection in every subscription
//! and sign-in HMAC (`<socket_id>:<channel>`), so a guessable id would let an auth signature
//! captured for one connection be reused on another.

use rand::Rng;

/// Exclusive upper bound of each half, as soketi does (two random ints in `0..1e10`).
const PART_BOUND: u64 = 10_000_000_000;

/// Longest socket id [`is_valid`] accepts. Generated ids are at most 21 bytes; the margin admits
/// ids minted by other Pusher-compatible servers while bounding what we hash and store.
pub const MAX_LEN: usize = 64;

/// A fresh socket id: two independent uniform values in `0..10^10`, formatted `a.b`.
///
/// Uses `rand::rng()`, a CSPRNG seeded from the OS and periodically reseeded, because the id
/// must not be predictable (see module docs). ~66 bits of entropy makes collisions negligible.
pub fn generate() -> String {
    let mut rng = rand::rng();
    let a = rng.random_range(0..PART_BOUND);
    let b = rng.random_range(0..PART_BOUND);
    format!("{a}.{b}")
}

/// Whether `s` matches `^\d+\.\d+$` (ASCII digits only) and is at most [`MAX_LEN`] bytes.
///
/// The HTTP API must reject malformed `socket_id`s with 400 (poxa: `"123456"` -> 400).
pub fn is_valid(s: &str) -> bool {
    if s.len() > MAX_LEN {
        return false;
    }
    match s.split_once('.') {
        Some((left, right)) => is_digits(left) && is_digits(right),
        None => false,
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_ids_are_valid_and_in_range() {
        for _ in 0..1000 {
            let id = generate();
            assert!(is_valid(&id), "{id}");
            let (a, b) = id.split_once('.').expect("generated id has a dot");
            assert!(a.parse::<u64>().expect("digits") < PART_BOUND);
            assert!(b.parse::<u64>().expect("digits") < PART_BOUND);
        }
    }

    #[test]
    fn generated_ids_do_not_repeat() {
        let ids: HashSet<String> = (0..10_000).map(|_| generate()).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn accepts_the_documented_shapes() {
        assert!(is_valid("123.456"));
        assert!(is_valid("1234.1234"));
        assert!(is_valid("0.0"));
        assert!(is_valid(&format!("{}.{}", "9".repeat(31), "9".repeat(32))));
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            "123456",
            ".",
            "123.",
            ".456",
            "1.2.3",
            "12a.34",
            "12.34 ",
            " 12.34",
            "-1.2",
            "+1.2",
            "1,2",
            "١٢.٣٤", // Arabic-Indic digits are Unicode digits but not `\d` in ASCII mode
        ] {
            assert!(!is_valid(bad), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn rejects_overlong_ids() {
        let long = format!("{}.{}", "1".repeat(32), "1".repeat(32));
        assert_eq!(long.len(), 65);
        assert!(!is_valid(&long));
    }
}
