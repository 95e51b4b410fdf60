//! JSON views of events for people and scripts: ids as hex, addresses as
//! text, packet bytes as hex (the Avro form has them as raw bytes).

use serde_json::{Map, Value};
use tapwire_schemas::AnyEvent;

/// The event as JSON.
pub fn event(event: &AnyEvent) -> Value {
    // `AnyEvent` serializes as the event it holds.
    let raw = serde_json::to_value(event);
    // Our types only hold strings, numbers, maps and sequences: serde_json
    // cannot fail on them.
    let mut value = raw.unwrap_or(Value::Null);
    humanize(&mut value);
    value
}

fn bytes_of(value: &Value) -> Option<Vec<u8>> {
    value
        .as_array()?
        .iter()
        .map(|v| v.as_u64().and_then(|n| u8::try_from(n).ok()))
        .collect()
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Some(std::net::Ipv4Addr::from(v4).to_string())
    } else {
        <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|v6| std::net::Ipv6Addr::from(v6).to_string())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn humanize(value: &mut Value) {
    match value {
        Value::Object(map) => humanize_object(map),
        Value::Array(items) => items.iter_mut().for_each(humanize),
        _ => {}
    }
}

fn humanize_object(map: &mut Map<String, Value>) {
    for (key, value) in map.iter_mut() {
        match key.as_str() {
            "id" | "data" => {
                if let Some(bytes) = bytes_of(value) {
                    *value = Value::String(hex(&bytes));
                }
            }
            "ip" => {
                if let Some(text) = bytes_of(value).as_deref().and_then(ip_text) {
                    *value = Value::String(text);
                }
            }
            "ips" | "addresses" | "cluster_ips" => {
                if let Value::Array(items) = value {
                    for item in items {
                        if let Some(text) = bytes_of(item).as_deref().and_then(ip_text) {
                            *item = Value::String(text);
                        }
                    }
                }
            }
            _ => humanize(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapwire_schemas::samples;

    #[test]
    fn ids_and_addresses_read_as_text() {
        let header = samples::header("n", "s", 8, 5);
        let id = header.id.to_hex();
        let json = event(&AnyEvent::L4Event(samples::l4_flow(header, 8)));
        assert_eq!(json["header"]["id"], Value::String(id));
        assert_eq!(json["src"]["ip"], "fd00::1:8");
        assert_eq!(json["dst"]["port"], 8080);
        assert_eq!(json["kind"], "network_flow");
    }
}
