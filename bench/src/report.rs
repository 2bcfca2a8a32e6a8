//! The final report: one struct, printed as an aligned table or as JSON.

use crate::stats::LatencySummary;
use serde::Serialize;

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub scenario: String,
    pub target: String,
    pub connections: usize,
    pub channels: usize,
    pub private: bool,
    pub sources: usize,
    pub workers: usize,
    pub subscribed: u64,
    pub connect_errors: u64,
    pub connect_secs: Option<f64>,
    // publishing / deliveries
    pub rate: Option<f64>,
    pub payload_bytes: Option<usize>,
    pub events_sent: Option<u64>,
    pub publish_errors: Option<u64>,
    pub expected_deliveries: Option<u64>,
    pub delivered: Option<u64>,
    pub missing: Option<u64>,
    pub extra: Option<u64>,
    pub connections_short: Option<u64>,
    pub closed_early: Option<u64>,
    pub measured_secs: Option<f64>,
    /// Start of the measurement and latest delivery (ns on CLOCK_MONOTONIC, comparable between generator
    /// processes: the rate of a fan-out spread over several is their deliveries over max(last) - first).
    pub first_event_ns: Option<u64>,
    pub last_delivery_ns: Option<u64>,
    pub events_per_sec: Option<f64>,
    pub deliveries_per_sec: Option<f64>,
    pub latency: Option<LatencySummary>,
    // server resources (from --server-pid)
    pub server_cpu_us: Option<u64>,
    pub server_cpu_percent: Option<f64>,
    pub server_cpu_us_per_delivery: Option<f64>,
    /// CPU of the cluster bus broker (--bus-pid) over the same window.
    pub bus_cpu_us: Option<u64>,
    pub bus_cpu_us_per_delivery: Option<f64>,
    /// WebSocket payload bytes received per delivery (delta frames are smaller than full ones).
    pub wire_bytes_per_delivery: Option<f64>,
    pub server_rss_before_bytes: Option<u64>,
    pub server_rss_after_bytes: Option<u64>,
    pub server_rss_per_connection_bytes: Option<f64>,
    pub server_cpu_us_per_connect: Option<f64>,
    // churn
    pub connects: Option<u64>,
    pub connects_per_sec: Option<f64>,
    pub generator_cpu_us: Option<u64>,
    pub ok: bool,
    pub problems: Vec<String>,
}

impl Report {
    pub fn problem(&mut self, p: impl Into<String>) {
        self.problems.push(p.into());
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// `key  value` lines for every field that has a value; latency flattened.
    pub fn to_table(&self) -> String {
        let mut rows: Vec<(String, String)> = Vec::new();
        let ordered = serde_json::to_string(self)
            .ok()
            .and_then(|s| serde_json::from_str::<Ordered>(&s).ok());
        if let Some(Ordered(map)) = ordered {
            for (k, v) in map {
                match v {
                    serde_json::Value::Null => {}
                    serde_json::Value::Object(inner) => {
                        for (ik, iv) in inner {
                            rows.push((format!("{k}.{ik}"), fmt_value(&iv)));
                        }
                    }
                    serde_json::Value::Array(items) => {
                        for (i, item) in items.iter().enumerate() {
                            rows.push((format!("{k}[{i}]"), fmt_value(item)));
                        }
                    }
                    other => rows.push((k, fmt_value(&other))),
                }
            }
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("{k:<width$}  {v}\n"))
            .collect()
    }
}

fn fmt_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.3}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// A JSON object's entries in document order (serde_json's `Map` sorts keys by default).
struct Ordered(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some(e) = m.next_entry::<String, serde_json::Value>()? {
                    out.push(e);
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V)
    }
}
