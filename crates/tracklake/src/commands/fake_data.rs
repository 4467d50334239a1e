//! Fake but plausible events, for `tracklake seed` and the load generator.

use std::net::Ipv4Addr;

use chrono::{DateTime, Utc};
use fake::Fake;
use fake::faker::internet::en::IPv4;
use fake::faker::lorem::en::Words;
use rand::RngExt;
use rand::seq::IndexedRandom;
use serde_json::{Value, json};

use super::user_id_json;

const AGENTS_FILE: &str = include_str!("../../data/user-agents.txt");

/// The shipped list of current browser user agents.
pub fn user_agents() -> Vec<&'static str> {
    AGENTS_FILE
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// A random public IPv4 address (the fake-data crate draws from all 2^32,
/// about 14% private or reserved; those are redrawn).
pub fn public_ipv4(rng: &mut impl rand::Rng) -> Ipv4Addr {
    loop {
        let ip: Ipv4Addr = IPv4().fake_with_rng(rng);
        if is_public(ip) {
            return ip;
        }
    }
}

fn is_public(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_unspecified()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (18..20).contains(&b)))
}

/// One event of `event_type` for `user`, at a random time in the `days`
/// before `now`, with properties fitting its type.
pub fn event(
    rng: &mut impl rand::Rng,
    agents: &[&str],
    user: &str,
    event_type: &str,
    days: u32,
    now: DateTime<Utc>,
) -> Value {
    let back = rng.random_range(0..i64::from(days.max(1)) * 86_400_000);
    let properties = match event_type {
        "material-view" => {
            let words: Vec<String> = Words(2..5).fake_with_rng(rng);
            json!({"material_id": rng.random_range(1..=500), "title": words.join(" ")})
        }
        "login" => {
            json!({"method": *["password", "sso", "magic-link"].choose(rng).unwrap_or(&"password")})
        }
        _ => json!({}),
    };
    json!({
        "event_id": uuid::Uuid::now_v7().to_string(),
        "user_id": user_id_json(user),
        "event_type": event_type,
        "event_at": (now - chrono::Duration::milliseconds(back)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "ip_address": public_ipv4(rng).to_string(),
        "user_agent": agents.choose(rng).copied().unwrap_or("Mozilla/5.0"),
        "properties": properties,
    })
}

/// A `seed`-like event for a random user of `1..=users` (30 % `login`,
/// 70 % `material-view`) on the day before `end`, validated and
/// device-parsed as ingest would: what the benchmarks put in tables and
/// lakes.
pub fn validated_event(
    rng: &mut impl rand::Rng,
    validator: &tracklake_event::Validator,
    agents: &[&str],
    users: u64,
    end: DateTime<Utc>,
) -> anyhow::Result<tracklake_event::Event> {
    let user = rng.random_range(1..=users).to_string();
    let kind = if rng.random_bool(0.3) {
        "login"
    } else {
        "material-view"
    };
    let Value::Object(map) = event(rng, agents, &user, kind, 1, end) else {
        unreachable!("events are objects")
    };
    validator
        .validate(map, &tracklake_event::RequestContext::default(), Utc::now())
        .map_err(|r| anyhow::anyhow!("a fake event was rejected: {r:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_public() {
        let mut rng = rand::rng();
        for _ in 0..5000 {
            let ip = public_ipv4(&mut rng);
            assert!(is_public(ip), "{ip}");
        }
        assert!(!is_public("10.1.2.3".parse().unwrap()));
        assert!(!is_public("100.64.0.1".parse().unwrap()));
        assert!(is_public("11.174.250.238".parse().unwrap()));
    }

    #[test]
    fn events_fall_in_the_window() {
        let mut rng = rand::rng();
        let agents = user_agents();
        assert!(agents.len() >= 20);
        let now = Utc::now();
        for _ in 0..200 {
            let e = event(&mut rng, &agents, "1", "login", 7, now);
            let at = DateTime::parse_from_rfc3339(e["event_at"].as_str().unwrap()).unwrap();
            assert!(at <= now && at > now - chrono::Duration::days(7));
            assert_eq!(e["user_id"], 1);
        }
    }
}
