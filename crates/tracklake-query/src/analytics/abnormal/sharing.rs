//! Account sharing: one account used from several networks or devices at
//! once. A user's score is the most distinct IP networks (IPv4 /24, IPv6
//! /48 by default) and the most distinct devices (`type/os/browser`) among
//! their events in any window of `window_secs` that starts at one of their
//! events; two networks minutes apart are two places at once, the
//! simultaneous or impossible sessions a shared login makes.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Ev, EventRow, UserEvents};
use crate::analytics::params::TimeRange;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SharingConfig {
    /// The window within which several networks or devices count as "at once".
    pub window_secs: u64,
    /// Flag a user seen from this many networks within a window…
    pub min_networks: u32,
    /// …or on this many devices.
    pub min_devices: u32,
    /// The network of an IPv4 address: its first this many bits.
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
}

impl Default for SharingConfig {
    fn default() -> Self {
        SharingConfig {
            window_secs: 600,
            min_networks: 3,
            min_devices: 3,
            ipv4_prefix: 24,
            ipv6_prefix: 48,
        }
    }
}

impl SharingConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.window_secs == 0 || self.min_networks < 2 || self.min_devices < 2 {
            return Err("analytics.sharing: window_secs must be at least 1, min_networks and min_devices at least 2".into());
        }
        if self.ipv4_prefix > 32 || self.ipv6_prefix > 128 {
            return Err(
                "analytics.sharing: ipv4_prefix is at most 32, ipv6_prefix at most 128".into(),
            );
        }
        Ok(())
    }

    /// The network an address is counted as.
    pub fn network(&self, ip: IpAddr) -> ipnet::IpNet {
        let bits = if ip.is_ipv4() {
            self.ipv4_prefix
        } else {
            self.ipv6_prefix
        };
        ipnet::IpNet::new(ip, bits)
            .map(|n| n.trunc())
            .unwrap_or_else(|_| ip.into())
    }

    /// The score in SQL (Athena and tracklake): every window, by a self-join.
    pub fn sql(&self, range: &TimeRange) -> String {
        format!(
            "WITH e AS (\n  SELECT user_id, event_at,\n    CASE WHEN strpos(ip_address, ':') > 0 THEN ip_prefix(ip_address, {v6}) ELSE ip_prefix(ip_address, {v4}) END AS network,\n    \
             concat_ws('/', device_type, device_os, device_browser) AS device\n  FROM events WHERE {range}\n),\n\
             windows AS (\n  SELECT a.user_id, a.event_at AS window_start,\n    count(DISTINCT b.network) AS networks, count(DISTINCT b.device) AS devices\n  \
             FROM e a JOIN e b ON b.user_id = a.user_id AND b.event_at >= a.event_at AND b.event_at <= a.event_at + INTERVAL '{window}' SECOND\n  \
             GROUP BY a.user_id, a.event_at\n)\n\
             SELECT user_id, max(networks) AS networks, max(devices) AS devices\nFROM windows GROUP BY user_id\n\
             HAVING max(networks) >= {n} OR max(devices) >= {d}\nORDER BY user_id",
            v6 = self.ipv6_prefix,
            v4 = self.ipv4_prefix,
            range = range.sql("event_at"),
            window = self.window_secs,
            n = self.min_networks,
            d = self.min_devices,
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SharingUser {
    pub user_id: String,
    /// At least 1 when flagged: the larger of networks / min_networks and
    /// devices / min_devices.
    pub score: f64,
    pub networks: u32,
    pub devices: u32,
    /// The window with the most networks (then devices).
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// The evidence: the window's addresses, devices and events.
    pub ip_addresses: Vec<String>,
    pub devices_seen: Vec<String>,
    pub events: Vec<EventRow>,
    /// This user's activity feed.
    pub activity: String,
}

/// The user's busiest window, if it crosses a threshold.
pub(super) fn score(
    config: &SharingConfig,
    user_id: &str,
    user: &UserEvents,
) -> Option<SharingUser> {
    let window = i64::try_from(config.window_secs)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000);
    // Networks numbered within the user, for counting.
    let network = |e: &Ev| e.ip.map(|ip| config.network(ip));
    let mut nets: Vec<ipnet::IpNet> = user.events.iter().filter_map(network).collect();
    nets.sort_unstable();
    nets.dedup();
    let net_ids: Vec<Option<usize>> = user
        .events
        .iter()
        .map(|e| network(e).and_then(|n| nets.binary_search(&n).ok()))
        .collect();
    let (networks, net_start, net_end) =
        busiest(&user.events, window, nets.len(), |i, _| net_ids[i]);
    let (devices, dev_start, dev_end) =
        busiest(&user.events, window, user.devices.len(), |_, e| {
            Some(e.device as usize)
        });
    let score = f64::max(
        f64::from(networks) / f64::from(config.min_networks),
        f64::from(devices) / f64::from(config.min_devices),
    );
    if score < 1.0 {
        return None;
    }
    let (start, end) = if networks >= config.min_networks {
        (net_start, net_end)
    } else {
        (dev_start, dev_end)
    };
    let in_window = &user.events[start..end];
    let mut ips: Vec<String> = in_window
        .iter()
        .filter_map(|e| e.ip)
        .map(|ip| ip.to_string())
        .collect();
    ips.sort();
    ips.dedup();
    let mut devices_seen: Vec<String> = in_window
        .iter()
        .map(|e| user.devices[e.device as usize].to_string())
        .collect();
    devices_seen.sort();
    devices_seen.dedup();
    Some(SharingUser {
        user_id: user_id.to_owned(),
        score,
        networks,
        devices,
        window_start: super::time(in_window[0].at),
        window_end: super::time(in_window[0].at.saturating_add(window)),
        ip_addresses: ips,
        devices_seen,
        events: user.rows(start..end),
        activity: super::activity_link(user_id),
    })
}

/// The most distinct keys among the events of any window `[t, t + window]`
/// that starts at an event, and the first such window (`start..end` of the
/// time-sorted events); `key` numbers an event's key below `keys`.
fn busiest(
    events: &[Ev],
    window: i64,
    keys: usize,
    key: impl Fn(usize, &Ev) -> Option<usize>,
) -> (u32, usize, usize) {
    let mut count = vec![0u32; keys];
    let (mut distinct, mut best, mut end) = (0u32, (0u32, 0, 0), 0);
    for start in 0..events.len() {
        while end < events.len() && events[end].at <= events[start].at.saturating_add(window) {
            if let Some(k) = key(end, &events[end]) {
                count[k] += 1;
                distinct += u32::from(count[k] == 1);
            }
            end += 1;
        }
        if distinct > best.0 {
            best = (distinct, start, end);
        }
        if let Some(k) = key(start, &events[start]) {
            count[k] -= 1;
            distinct -= u32::from(count[k] == 0);
        }
    }
    best
}
