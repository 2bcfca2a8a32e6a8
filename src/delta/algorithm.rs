//! The two delta encodings a sockudo-js client decodes.

/// A delta algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Fossil SCM delta, with its checksum (`fossil-delta` on the client).
    Fossil,
    /// RFC 3284 VCDIFF without secondary compression, application header or Adler-32 (`@ably/vcdiff-decoder`).
    Xdelta3,
}

impl Algorithm {
    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Fossil => "fossil",
            Algorithm::Xdelta3 => "xdelta3",
        }
    }

    /// `fossil`, `xdelta3` or its alias `vcdiff` (case-insensitive).
    pub fn parse(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("fossil") {
            Some(Algorithm::Fossil)
        } else if name.eq_ignore_ascii_case("xdelta3") || name.eq_ignore_ascii_case("vcdiff") {
            Some(Algorithm::Xdelta3)
        } else {
            None
        }
    }

    /// The delta that turns `base` into `target`; `None` when the encoder fails.
    pub fn encode(self, base: &[u8], target: &[u8]) -> Option<Vec<u8>> {
        match self {
            // fossil_delta::delta(a, b) yields the delta that rebuilds `a` from `b`.
            Algorithm::Fossil => Some(fossil_delta::delta(target, base)),
            // Flags 0: no secondary compressor, no Adler-32 window checksum, and the library writes no
            // application header (only the xdelta3 command line does).
            Algorithm::Xdelta3 => xdelta3::encode(target, base),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    const F1_BASE: &str = r#"{"event":"price-update","channel":"market-data","data":"{\"asset\":\"BTC\",\"price\":\"100.00\",\"volume\":1000,\"exchange\":\"binance\",\"ts\":1700000000000}"}"#;
    const F1_TARGET: &str = r#"{"event":"price-update","channel":"market-data","data":"{\"asset\":\"BTC\",\"price\":\"100.01\",\"volume\":1005,\"exchange\":\"binance\",\"ts\":1700000000250}"}"#;
    const F1_DELTA: &str = "MlcKMVNAMCxKOjFcIixcInZvbHVtZVwiOjEwMDVnQDFrLDY6MjUwfSJ9MnpRdFRQOw==";
    const F2_BASE: &str = r#"{"event":"match_event","channel":"match:123","data":"{\"minute\":\"23.30\",\"event_type\":\"shot\",\"player\":\"Vinicius\",\"xG\":0.12}","tags":{"event_type":"shot","team":"Real Madrid"}}"#;
    const F2_TARGET: &str = r#"{"event":"match_event","channel":"match:123","data":"{\"minute\":\"24.10\",\"event_type\":\"goal\",\"player\":\"Vinicius\",\"xG\":0.87}","tags":{"event_type":"goal","team":"Real Madrid"}}"#;
    const F2_DELTA: &str = "MncKMTRAMCxTOjQuMTBcIixcImV2ZW50X3R5cGVcIjpcImdvYWxfQDFXLDI6ODdQQDI2LFM6Z29hbCIsInRlYW0iOiJSZWFsIE1hZHJpZCJ9fTNjdF9YQzs=";
    const F3_BASE: &str = r#"{"event":"status","channel":"cafe-menu","data":"{\"item\":\"Café crème\",\"price\":\"3,50 €\",\"note\":\"naïve – äöü\",\"stock\":12}"}"#;
    const F3_TARGET: &str = r#"{"event":"status","channel":"cafe-menu","data":"{\"item\":\"Café crème\",\"price\":\"3,80 €\",\"note\":\"naïve – äöü ✓\",\"stock\":11}"}"#;
    const F3_DELTA: &str = "MksKMVBAMCwxOjhfQDFRLE06IOKck1wiLFwic3RvY2tcIjoxMX0ifTM2UFFUUTs=";
    const X2_BASE: &str = r#"{"event":"sensor","channel":"iot-sensors-7","data":"{\"device_id\":\"dev-42\",\"temp\":21.5,\"humidity\":40,\"label\":\"Küche – Süd\",\"readings\":[1,2,3,4,5,6,7,8]}"}"#;
    const X2_TARGET: &str = r#"{"event":"sensor","channel":"iot-sensors-7","data":"{\"device_id\":\"dev-42\",\"temp\":21.7,\"humidity\":41,\"label\":\"Küche – Süd\",\"readings\":[1,2,3,4,5,6,7,8,9]}"}"#;
    const X1_DELTA: &str = "1sPEAAABgRoAGYEgAAgIAzE1MjUwfSJ9E1wCIQITKwcAXW8=";
    const X2_DELTA: &str = "1sPEAAABgScAJYEtABcGAjcsXCJodW1pZGl0eVwiOjQxLDldfSJ9E1oSEzwHAGs=";

    fn b64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    #[test]
    fn golden_fossil_vectors_decode_and_ours_round_trip() {
        for (base, target, golden) in [
            (F1_BASE, F1_TARGET, F1_DELTA),
            (F2_BASE, F2_TARGET, F2_DELTA),
            (F3_BASE, F3_TARGET, F3_DELTA),
        ] {
            let applied = fossil_delta::apply(base.as_bytes(), b64(golden)).unwrap();
            assert_eq!(applied, target.as_bytes());
            let ours = Algorithm::Fossil
                .encode(base.as_bytes(), target.as_bytes())
                .unwrap();
            assert_eq!(
                fossil_delta::apply(base.as_bytes(), &ours).unwrap(),
                target.as_bytes()
            );
            assert!(ours.len() < target.len());
        }
    }

    #[test]
    fn golden_vcdiff_vectors_decode_and_ours_has_the_decodable_header() {
        for (base, target, golden) in [
            (F1_BASE, F1_TARGET, X1_DELTA),
            (X2_BASE, X2_TARGET, X2_DELTA),
        ] {
            assert_eq!(
                xdelta3::decode(&b64(golden), base.as_bytes()).unwrap(),
                target.as_bytes()
            );
            let ours = Algorithm::Xdelta3
                .encode(base.as_bytes(), target.as_bytes())
                .unwrap();
            assert_eq!(
                xdelta3::decode(&ours, base.as_bytes()).unwrap(),
                target.as_bytes()
            );
            // Magic, Hdr_Indicator 0 (no secondary compression, no code table, no app header),
            // Win_Indicator 1 (VCD_SOURCE only: no Adler-32 extension).
            assert_eq!(&ours[..6], &[0xd6, 0xc3, 0xc4, 0x00, 0x00, 0x01]);
        }
    }

    #[test]
    fn names_and_aliases() {
        assert_eq!(Algorithm::parse("VCDIFF"), Some(Algorithm::Xdelta3));
        assert_eq!(Algorithm::parse("Fossil"), Some(Algorithm::Fossil));
        assert_eq!(Algorithm::parse("zstd"), None);
        assert_eq!(Algorithm::Xdelta3.name(), "xdelta3");
    }
}
