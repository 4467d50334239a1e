//! What of a user's IP address leaves the per-user table: the article
//! treated addresses as sensitive data. `keep` writes them as they are;
//! `truncate` keeps the network (IPv4 /24, IPv6 /48); `hash` replaces each
//! address with a keyed pseudonym, the same for the same address, so the
//! account-sharing report still counts distinct addresses. The table keeps
//! the address for the user's own activity feed; the lake and SQL see what
//! this says.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::Event;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpMode {
    #[default]
    Keep,
    Truncate,
    Hash,
}

/// `[privacy]` in the config file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacyConfig {
    pub ip: IpMode,
    /// The HMAC key for `ip = "hash"`, as hex (at least 32 digits). Empty:
    /// one is made at first start and kept in `<data_dir>/privacy.key`.
    pub ip_hash_key: String,
    /// Top-level `properties` never stored anywhere (dropped at ingest).
    pub drop_properties: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Privacy {
    mode: IpMode,
    key: Option<Key>,
}

#[derive(Clone)]
struct Key(hmac::Key);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(…)")
    }
}

impl Privacy {
    /// Keeps every address (the default).
    pub fn keep() -> Privacy {
        Privacy::default()
    }

    pub fn new(config: &PrivacyConfig, data_dir: &Path) -> Result<Privacy, String> {
        let key = match config.ip {
            IpMode::Hash => Some(Key(hmac::Key::new(
                hmac::HMAC_SHA256,
                &hash_key(config, data_dir)?,
            ))),
            _ => None,
        };
        Ok(Privacy {
            mode: config.ip,
            key,
        })
    }

    /// The event as it may leave the table.
    pub fn apply(&self, event: &mut Event) {
        if let Some(ip) = event.ip_address {
            event.ip_address = Some(self.address(ip));
        }
    }

    pub fn address(&self, ip: IpAddr) -> IpAddr {
        match (self.mode, &self.key) {
            (IpMode::Keep, _) => ip,
            (IpMode::Truncate, _) => truncate(ip),
            (IpMode::Hash, Some(Key(key))) => pseudonym(key, ip),
            (IpMode::Hash, None) => unreachable!("a hash key is made in Privacy::new"),
        }
    }
}

fn truncate(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4(Ipv4Addr::new(a, b, c, 0))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
        }
    }
}

/// An address in the unique-local range `fd00::/8` made of the HMAC of the
/// address: a valid IP (the lake's column stays an address), never routable,
/// the same for the same address and key.
fn pseudonym(key: &hmac::Key, ip: IpAddr) -> IpAddr {
    let text = ip.to_string();
    let tag = hmac::sign(key, text.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&tag.as_ref()[..16]);
    bytes[0] = 0xfd;
    IpAddr::V6(Ipv6Addr::from(bytes))
}

/// The configured key, or the one kept in the data directory (made once).
fn hash_key(config: &PrivacyConfig, data_dir: &Path) -> Result<Vec<u8>, String> {
    let from_hex = |text: &str, whence: &str| -> Result<Vec<u8>, String> {
        let text = text.trim();
        if text.len() < 32 || !text.len().is_multiple_of(2) {
            return Err(format!(
                "{whence}: the IP hash key must be at least 32 hex digits"
            ));
        }
        (0..text.len())
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(&text[i..i + 2], 16).map_err(|_| format!("{whence}: not hex"))
            })
            .collect()
    };
    if !config.ip_hash_key.is_empty() {
        return from_hex(&config.ip_hash_key, "privacy.ip_hash_key");
    }
    let path = data_dir.join("privacy.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => from_hex(&text, &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
                .map_err(|_| "no randomness for the IP hash key".to_owned())?;
            let text: String = key.iter().map(|b| format!("{b:02x}")).collect();
            std::fs::create_dir_all(data_dir).map_err(|e| e.to_string())?;
            write_private(&path, &text).map_err(|e| format!("writing {}: {e}", path.display()))?;
            Ok(key.to_vec())
        }
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn truncation_keeps_the_network() {
        let p = Privacy::new(
            &PrivacyConfig {
                ip: IpMode::Truncate,
                ..Default::default()
            },
            Path::new("/nonexistent"),
        )
        .unwrap();
        assert_eq!(p.address(ip("203.0.113.77")), ip("203.0.113.0"));
        assert_eq!(p.address(ip("2001:db8:abcd:12::1")), ip("2001:db8:abcd::"));
    }

    #[test]
    fn hashing_is_stable_keyed_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let config = PrivacyConfig {
            ip: IpMode::Hash,
            ..Default::default()
        };
        let a = Privacy::new(&config, dir.path()).unwrap();
        let x = a.address(ip("203.0.113.77"));
        assert_eq!(x, a.address(ip("203.0.113.77")));
        assert_ne!(x, a.address(ip("203.0.113.78")));
        assert!(x.to_string().starts_with("fd"), "{x}");
        // The made key is kept: a restart maps addresses the same way.
        let b = Privacy::new(&config, dir.path()).unwrap();
        assert_eq!(b.address(ip("203.0.113.77")), x);
        // Another key, another pseudonym.
        let other = PrivacyConfig {
            ip_hash_key: "00".repeat(32),
            ..config
        };
        assert_ne!(
            Privacy::new(&other, dir.path())
                .unwrap()
                .address(ip("203.0.113.77")),
            x
        );
        let short = PrivacyConfig {
            ip_hash_key: "abcd".into(),
            ..other
        };
        assert!(Privacy::new(&short, dir.path()).is_err());
    }
}
