//! Key layout of the embedded table. Byte order is query order:
//!
//! - row:    `user_id 0x00 event_at(8) event_id` → seq(8)
//! - id:     `user_id 0x00 event_id`             → event_at(8)
//!
//! The change log (`log`, files outside fjall) is where an event is
//! stored: written once, in arrival order, so that delivery reads it
//! sequentially. Rows and ids are a compact index over it: a row points at
//! its change by sequence number. (Rows that
//! carried the JSON too wrote each event twice, and compacting them was
//! most of the table's CPU time.) Rows written before that change still
//! carry their JSON after the sequence number; both forms are read.
//!
//! User ids never contain 0x00 (validation refuses control characters), so
//! `user_id 0x00` is a prefix of exactly one user's keys.

use chrono::{DateTime, Utc};

/// `event_at` as 8 bytes that sort like the time: microseconds since the
/// epoch with the sign bit flipped, big-endian.
pub fn time_bytes(at: DateTime<Utc>) -> [u8; 8] {
    ((at.timestamp_micros() as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn time_from_bytes(bytes: [u8; 8]) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros((u64::from_be_bytes(bytes) ^ (1 << 63)) as i64)
}

pub fn user_prefix(user_key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(user_key.len() + 1);
    k.extend_from_slice(user_key.as_bytes());
    k.push(0);
    k
}

pub fn row_key(user_key: &str, at: DateTime<Utc>, event_id: &str) -> Vec<u8> {
    let mut k = user_prefix(user_key);
    k.extend_from_slice(&time_bytes(at));
    k.extend_from_slice(event_id.as_bytes());
    k
}

pub fn id_key(user_key: &str, event_id: &str) -> Vec<u8> {
    let mut k = user_prefix(user_key);
    k.extend_from_slice(event_id.as_bytes());
    k
}

/// The id-index key for a row key (`user 0x00 time event_id`).
pub fn id_key_of_row(row: &[u8]) -> Option<Vec<u8>> {
    let sep = row.iter().position(|b| *b == 0)?;
    let id = row.get(sep + 1 + 8..)?;
    let mut k = row[..=sep].to_vec();
    k.extend_from_slice(id);
    Some(k)
}

/// The time part of a row key.
pub fn time_of_row(row: &[u8]) -> Option<DateTime<Utc>> {
    let sep = row.iter().position(|b| *b == 0)?;
    let bytes: [u8; 8] = row.get(sep + 1..sep + 9)?.try_into().ok()?;
    time_from_bytes(bytes)
}

pub fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub fn seq_from(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// A stored row: the sequence number of its change and, in rows of
/// earlier versions, the event's JSON.
pub struct Row<'a> {
    pub seq: u64,
    pub inline: Option<&'a [u8]>,
}

pub fn decode_row(value: &[u8]) -> Result<Row<'_>, crate::Error> {
    let seq = seq_from(value).ok_or(crate::Error::Corrupt("a row shorter than its header"))?;
    let inline = Some(&value[8..]).filter(|json| !json.is_empty());
    Ok(Row { seq, inline })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn time_bytes_sort_like_times() {
        let times = [
            Utc.with_ymd_and_hms(1960, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2019, 6, 29, 16, 46, 23).unwrap(),
            Utc.with_ymd_and_hms(2019, 6, 29, 16, 46, 24).unwrap(),
        ];
        for w in times.windows(2) {
            assert!(time_bytes(w[0]) < time_bytes(w[1]));
        }
        for t in times {
            assert_eq!(time_from_bytes(time_bytes(t)), Some(t));
        }
    }

    #[test]
    fn one_user_prefix_does_not_cover_another() {
        let a = row_key("ab", Utc::now(), "e");
        assert!(a.starts_with(&user_prefix("ab")));
        assert!(!a.starts_with(&user_prefix("a")));
        let t = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(
            id_key_of_row(&row_key("u", t, "e1")),
            Some(id_key("u", "e1"))
        );
        assert_eq!(time_of_row(&row_key("u", t, "e1")), Some(t));
    }
}
