//! The two frames of a delta-tracked channel event (DELTA-TAGS.md §2.6, §2.7).

use super::Algorithm;
use crate::protocol::messages::push_json_string;
use base64::Engine;
use std::fmt::Write as _;

/// The envelope with `,"__delta_seq":N` and, on conflation channels, `,"__conflation_key":"K"` spliced in before
/// its final `}`. `key` must not contain `"` or `\` ([`super::conflation::extract`] guarantees it).
pub fn full_message(envelope: &[u8], seq: u32, key: Option<&str>) -> Vec<u8> {
    let body = match envelope.last() {
        Some(b'}') => &envelope[..envelope.len() - 1],
        _ => envelope,
    };
    let mut out = Vec::with_capacity(envelope.len() + 48 + key.map_or(0, str::len));
    out.extend_from_slice(body);
    let _ = write!(VecWriter(&mut out), ",\"__delta_seq\":{seq}");
    if let Some(k) = key {
        out.extend_from_slice(b",\"__conflation_key\":\"");
        out.extend_from_slice(k.as_bytes());
        out.push(b'"');
    }
    out.push(b'}');
    out
}

/// What a `pusher:delta` frame says.
#[derive(Debug)]
pub struct DeltaFrame<'a> {
    /// Channel name.
    pub channel: &'a str,
    /// Original event name.
    pub event: &'a str,
    /// Raw delta bytes (base64-encoded here).
    pub delta: &'a [u8],
    /// Sequence of the new message.
    pub seq: u32,
    /// Algorithm, or `None` to leave it out (`omit_delta_algorithm`).
    pub algorithm: Option<Algorithm>,
    /// Conflation key on conflation channels.
    pub conflation_key: Option<&'a str>,
    /// Sequence of the base the delta applies to.
    pub base_index: u32,
}

/// `{"event":"pusher:delta","channel":C,"data":{"event":E,"delta":B64,"seq":N,"algorithm":A,"conflation_key":K,"base_index":B}}`.
pub fn delta_message(f: &DeltaFrame<'_>) -> String {
    let mut out =
        String::with_capacity(f.delta.len() * 4 / 3 + f.channel.len() + f.event.len() + 140);
    out.push_str("{\"event\":\"pusher:delta\",\"channel\":");
    push_json_string(&mut out, f.channel);
    out.push_str(",\"data\":{\"event\":");
    push_json_string(&mut out, f.event);
    out.push_str(",\"delta\":\"");
    base64::engine::general_purpose::STANDARD.encode_string(f.delta, &mut out);
    let _ = write!(out, "\",\"seq\":{}", f.seq);
    if let Some(a) = f.algorithm {
        let _ = write!(out, ",\"algorithm\":\"{}\"", a.name());
    }
    if let Some(k) = f.conflation_key {
        out.push_str(",\"conflation_key\":");
        push_json_string(&mut out, k);
    }
    let _ = write!(out, ",\"base_index\":{}}}}}", f.base_index);
    out
}

/// `pusher:delta_compression_enabled` (data is an object).
pub fn enabled_message(enabled: bool, algorithm: Algorithm) -> String {
    format!(
        "{{\"event\":\"pusher:delta_compression_enabled\",\"data\":{{\"enabled\":{enabled},\"algorithm\":\"{}\"}}}}",
        algorithm.name()
    )
}

/// The per-channel form of [`enabled_message`] (DELTA-TAGS.md §2.3), for a socket that opted in only through a
/// subscription: it tells the client the algorithm that delta frames without `algorithm` use.
pub fn channel_enabled_message(channel: &str, algorithm: Algorithm) -> String {
    let mut out = String::from("{\"event\":\"pusher:delta_compression_enabled\",\"channel\":");
    push_json_string(&mut out, channel);
    out.push_str(",\"data\":{\"enabled\":true,\"algorithm\":\"");
    out.push_str(algorithm.name());
    out.push_str("\",\"channel\":");
    push_json_string(&mut out, channel);
    out.push_str("}}");
    out
}

struct VecWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENV: &str =
        r#"{"event":"price-update","channel":"market-data","data":"{\"asset\":\"BTC\"}"}"#;

    #[test]
    fn metadata_is_spliced_byte_exactly() {
        let full = String::from_utf8(full_message(ENV.as_bytes(), 1, Some("BTC"))).unwrap();
        assert_eq!(
            full,
            r#"{"event":"price-update","channel":"market-data","data":"{\"asset\":\"BTC\"}","__delta_seq":1,"__conflation_key":"BTC"}"#
        );
        let plain = String::from_utf8(full_message(ENV.as_bytes(), 0, None)).unwrap();
        assert!(plain.ends_with(r#"}","__delta_seq":0}"#));
        // What the client's strip regexes do must give back the base.
        let stripped = full
            .replace(",\"__delta_seq\":1", "")
            .replace(",\"__conflation_key\":\"BTC\"", "");
        assert_eq!(stripped, ENV);
    }

    #[test]
    fn delta_frame_matches_the_contract_trace() {
        let delta = base64::engine::general_purpose::STANDARD
            .decode("MlcKMVNAMCxKOjJcIixcInZvbHVtZVwiOjEwMTBnQDFrLDY6NTAwfSJ9Mn5SOExLOw==")
            .unwrap();
        let text = delta_message(&DeltaFrame {
            channel: "market-data",
            event: "price-update",
            delta: &delta,
            seq: 2,
            algorithm: Some(Algorithm::Fossil),
            conflation_key: Some("BTC"),
            base_index: 1,
        });
        assert_eq!(
            text,
            r#"{"event":"pusher:delta","channel":"market-data","data":{"event":"price-update","delta":"MlcKMVNAMCxKOjJcIixcInZvbHVtZVwiOjEwMTBnQDFrLDY6NTAwfSJ9Mn5SOExLOw==","seq":2,"algorithm":"fossil","conflation_key":"BTC","base_index":1}}"#
        );
        let omitted = delta_message(&DeltaFrame {
            algorithm: None,
            conflation_key: None,
            delta: &delta,
            channel: "c",
            event: "e",
            seq: 3,
            base_index: 2,
        });
        let v: serde_json::Value = serde_json::from_str(&omitted).unwrap();
        assert!(v["data"].get("algorithm").is_none());
        assert!(v["data"].get("conflation_key").is_none());
        assert_eq!(v["data"]["base_index"], 2);
    }

    #[test]
    fn channel_enabled_reply() {
        assert_eq!(
            channel_enabled_message("ticker:BTC", Algorithm::Fossil),
            r#"{"event":"pusher:delta_compression_enabled","channel":"ticker:BTC","data":{"enabled":true,"algorithm":"fossil","channel":"ticker:BTC"}}"#
        );
    }

    #[test]
    fn enabled_reply() {
        assert_eq!(
            enabled_message(true, Algorithm::Fossil),
            r#"{"event":"pusher:delta_compression_enabled","data":{"enabled":true,"algorithm":"fossil"}}"#
        );
    }
}
