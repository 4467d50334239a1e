//! Credentials and region from the AWS shared files (`~/.aws/credentials`,
//! `~/.aws/config`), for an S3 lake when the environment does not set them.
//! object_store reads the environment and instance roles but not these
//! files; the format is a small INI, read here rather than pulling in the
//! whole AWS SDK for it.

use std::collections::HashMap;
use std::path::PathBuf;

/// What the shared files say for one profile.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Profile {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub region: Option<String>,
}

/// The profile named by `AWS_PROFILE` (default `default`) from the files
/// named by `AWS_SHARED_CREDENTIALS_FILE` / `AWS_CONFIG_FILE` (default
/// under `~/.aws`). Missing files give an empty profile.
pub fn load() -> Profile {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let path = |var: &str, name: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".aws").join(name))
    };
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    from_files(
        &read(path("AWS_SHARED_CREDENTIALS_FILE", "credentials")),
        &read(path("AWS_CONFIG_FILE", "config")),
        &profile,
    )
}

/// Reads `profile` from the two files' texts. In the config file a profile
/// other than `default` is written `[profile NAME]`.
pub fn from_files(credentials: &str, config: &str, profile: &str) -> Profile {
    let creds = section(credentials, profile);
    let config_name = if profile == "default" {
        profile.to_owned()
    } else {
        format!("profile {profile}")
    };
    let conf = section(config, &config_name);
    let get = |map: &HashMap<String, String>, key: &str| map.get(key).cloned();
    Profile {
        access_key_id: get(&creds, "aws_access_key_id").or_else(|| get(&conf, "aws_access_key_id")),
        secret_access_key: get(&creds, "aws_secret_access_key")
            .or_else(|| get(&conf, "aws_secret_access_key")),
        session_token: get(&creds, "aws_session_token").or_else(|| get(&conf, "aws_session_token")),
        region: get(&conf, "region").or_else(|| get(&creds, "region")),
    }
}

/// The `key = value` pairs of `[name]`.
fn section(text: &str, name: &str) -> HashMap<String, String> {
    let mut current = false;
    let mut pairs = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = header.trim() == name;
        } else if current && let Some((k, v)) = line.split_once('=') {
            pairs.insert(k.trim().to_lowercase(), v.trim().to_owned());
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREDENTIALS: &str = "[default]\naws_access_key_id = AKIDEFAULT\naws_secret_access_key = secret1\n\n\
                               # a comment\n[work]\naws_access_key_id=AKIWORK\naws_secret_access_key=secret2\naws_session_token = tok\n";
    const CONFIG: &str = "[default]\nregion = eu-west-1\n[profile work]\nregion = us-west-2\n";

    #[test]
    fn reads_the_default_profile() {
        let p = from_files(CREDENTIALS, CONFIG, "default");
        assert_eq!(p.access_key_id.as_deref(), Some("AKIDEFAULT"));
        assert_eq!(p.secret_access_key.as_deref(), Some("secret1"));
        assert_eq!(p.session_token, None);
        assert_eq!(p.region.as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn reads_a_named_profile_with_its_config_section() {
        let p = from_files(CREDENTIALS, CONFIG, "work");
        assert_eq!(p.access_key_id.as_deref(), Some("AKIWORK"));
        assert_eq!(p.session_token.as_deref(), Some("tok"));
        assert_eq!(p.region.as_deref(), Some("us-west-2"));
    }

    #[test]
    fn missing_files_or_profiles_are_empty() {
        assert_eq!(from_files("", "", "default"), Profile::default());
        assert_eq!(
            from_files(CREDENTIALS, CONFIG, "nobody"),
            Profile::default()
        );
    }
}
