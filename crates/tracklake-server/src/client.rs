//! Who is calling: the client address and user agent that fill in an event's
//! `ip_address` and `user_agent` when it leaves them out.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, header};
use ipnet::IpNet;
use tracklake_event::RequestContext;

/// The article's `request.remote_ip`: the peer address, or — only when the
/// peer is a trusted proxy — the nearest untrusted address in
/// `X-Forwarded-For`.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer_ip = peer.ip().to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer_ip) {
        return peer_ip;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .collect();
    // Walk from the nearest hop outwards; the first untrusted one is the client.
    forwarded
        .iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .or(forwarded.first())
        .copied()
        .unwrap_or(peer_ip)
}

pub fn request_context(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> RequestContext {
    RequestContext {
        ip_address: Some(client_ip(peer, headers, trusted)),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let peer: SocketAddr = "198.51.100.7:5000".parse().unwrap();
        assert_eq!(client_ip(peer, &headers("1.2.3.4"), &[]), peer.ip());
    }

    #[test]
    fn forwarded_for_is_used_from_trusted_proxies() {
        let peer: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        // a client-forged first hop is skipped in favour of the last untrusted one
        let ip = client_ip(peer, &headers("6.6.6.6, 203.0.113.5, 10.0.0.9"), &trusted);
        assert_eq!(ip, "203.0.113.5".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(peer, &HeaderMap::new(), &trusted), peer.ip());
    }

    #[test]
    fn ipv4_mapped_peers_are_plain_ipv4() {
        let peer: SocketAddr = "[::ffff:192.0.2.1]:80".parse().unwrap();
        assert_eq!(
            client_ip(peer, &HeaderMap::new(), &[]),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }
}
