//! Redis Cluster hash slots (CRC16/XMODEM of the key, or of its `{hash tag}`, modulo 16384), so that
//! sharded pub/sub commands can be grouped per slot: one pipeline or `SSUBSCRIBE` may only name channels
//! of one slot.

pub(crate) const SLOTS: u16 = 16384;

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= (byte as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The part of `key` that is hashed: the text between the first `{` and the next `}` when non-empty.
fn hashed_part(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|&b| b == b'}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

pub(crate) fn slot(key: &[u8]) -> u16 {
    crc16(hashed_part(key)) % SLOTS
}

/// Indexes of `keys` grouped by slot; groups in order of first appearance, indexes in order inside each.
pub(crate) fn group_by_slot<'a>(keys: impl IntoIterator<Item = &'a [u8]>) -> Vec<Vec<usize>> {
    let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
    let mut index_of_slot = std::collections::HashMap::new();
    for (i, key) in keys.into_iter().enumerate() {
        let s = slot(key);
        let g = *index_of_slot.entry(s).or_insert_with(|| {
            groups.push((s, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(i);
    }
    groups.into_iter().map(|(_, members)| members).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_redis_reference_values() {
        // Values from `CLUSTER KEYSLOT` (and the Redis Cluster specification's CRC16 test vector).
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}")); // empty tag: whole key
        assert_ne!(slot(b"foo{}{bar}"), slot(b"bar"));
    }

    #[test]
    fn groups_keep_first_appearance_order() {
        let keys: [&[u8]; 5] = [b"foo", b"bar", b"{foo}x", b"bar", b"foo"];
        assert_eq!(group_by_slot(keys), vec![vec![0, 2, 4], vec![1, 3]]);
    }
}
