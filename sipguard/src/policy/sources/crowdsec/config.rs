//! The `crowdsec:` section: where the Local API is, the bouncer key, how
//! often to pull, which origins to take, and (optionally) the machine
//! credentials sipguard pushes its own bans with.

use std::{os::unix::fs::PermissionsExt as _, path::Path, path::PathBuf, time::Duration};

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;

use crate::policy::config::Dur;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrowdsecConfig {
    /// The Local API's base URL, as `cscli` prints it (`http://127.0.0.1:8080`).
    pub url: String,
    /// A file holding the key `cscli bouncers add` printed.
    pub api_key_file: PathBuf,
    /// Time between two pulls of the decision stream.
    #[serde(default = "default_interval")]
    pub interval: Dur,
    /// Take only decisions of these origins (`crowdsec`, `cscli`, `CAPI`,
    /// `lists`, ...); all when absent.
    #[serde(default)]
    pub origins: Option<Vec<String>>,
    /// Push sipguard's own automatic bans to the Local API as alerts.
    #[serde(default)]
    pub machine: Option<MachineConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfig {
    /// The machine id `cscli machines add` registered.
    pub id: String,
    /// A file holding that machine's password.
    pub password_file: PathBuf,
}

fn default_interval() -> Dur {
    Dur(Duration::from_secs(10))
}

/// A field of the section that is wrong: `(key, offending text, message)`,
/// for the config's own error type to place on a line.
pub type FieldError = (&'static str, String, String);

impl CrowdsecConfig {
    pub fn validate(&self) -> Result<(), FieldError> {
        match reqwest::Url::parse(&self.url) {
            Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.has_host() => {}
            _ => {
                return Err((
                    "url",
                    self.url.clone(),
                    format!(
                        "'{}' is not an http:// or https:// URL (like http://127.0.0.1:8080)",
                        self.url
                    ),
                ))
            }
        }
        let iv = self.interval.0;
        if iv < Duration::from_secs(1) || iv > Duration::from_secs(3600) {
            return Err((
                "interval",
                "interval".into(),
                format!(
                    "{} is out of range (1s to 1h)",
                    crate::policy::config::Dur(iv)
                ),
            ));
        }
        if let Some(origins) = &self.origins {
            if origins.is_empty() {
                return Err((
                    "origins",
                    "origins".into(),
                    "is empty: remove the key to take every origin".into(),
                ));
            }
            for o in origins {
                if o.is_empty()
                    || o.contains([',', '&', '#', '?'])
                    || o.contains(char::is_whitespace)
                {
                    return Err((
                        "origins",
                        o.clone(),
                        format!("'{o}' is not an origin name (like crowdsec, cscli, CAPI)"),
                    ));
                }
            }
        }
        if let Some(m) = &self.machine {
            if m.id.is_empty() || m.id.contains(char::is_whitespace) {
                return Err((
                    "machine",
                    m.id.clone(),
                    format!("id: '{}' is not a machine id", m.id),
                ));
            }
        }
        Ok(())
    }

    /// The key, read from `api_key_file` (see [`read_secret`]).
    pub fn api_key(&self) -> Result<String> {
        read_secret(&self.api_key_file, "crowdsec.api_key_file")
    }
}

/// Reads a secret file: refused when its group or others may read or
/// write it (the key lets anyone pull the fleet's decisions, the password
/// lets anyone push bans to every router), and when it is empty. Surrounding white space
/// (the newline `echo` adds) is not part of the secret.
pub fn read_secret(path: &Path, field: &str) -> Result<String> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("{field}: cannot read {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o066 != 0 {
        bail!(
            "{field}: {} is accessible by its group or others (mode {mode:04o}); chmod 600 it",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{field}: cannot read {}", path.display()))?;
    let secret = text.trim();
    if secret.is_empty() {
        bail!("{field}: {} is empty", path.display());
    }
    Ok(secret.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The section as the config file holds it, so serde_yaml's locations
    /// are lines of a whole document.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        crowdsec: CrowdsecConfig,
    }

    fn parse(yaml: &str) -> Result<CrowdsecConfig, (Option<usize>, String)> {
        let doc: Doc = serde_yaml::from_str(yaml)
            .map_err(|e| (e.location().map(|l| l.line()), e.to_string()))?;
        doc.crowdsec
            .validate()
            .map_err(|(k, _, m)| (None, format!("{k}: {m}")))?;
        Ok(doc.crowdsec)
    }

    #[test]
    fn section_with_defaults() {
        let cs = parse("crowdsec:\n  url: http://127.0.0.1:8080/\n  api_key_file: /etc/sipguard/crowdsec.key\n")
            .unwrap();
        assert_eq!(cs.interval.0, Duration::from_secs(10));
        assert_eq!(cs.origins, None);
        assert_eq!(cs.machine, None);
        let cs = parse(
            "crowdsec:\n  url: https://lapi.example:8080\n  api_key_file: k\n  interval: 2s\n  origins: [crowdsec, cscli]\n  machine:\n    id: router-a\n    password_file: p\n",
        )
        .unwrap();
        assert_eq!(cs.interval.0, Duration::from_secs(2));
        assert_eq!(cs.origins.unwrap(), vec!["crowdsec", "cscli"]);
        assert_eq!(cs.machine.unwrap().id, "router-a");
    }

    #[test]
    fn unknown_keys_are_errors_with_their_line() {
        let (line, msg) =
            parse("crowdsec:\n  url: http://127.0.0.1:8080\n  api_key_file: k\n  intervall: 5s\n")
                .unwrap_err();
        assert_eq!(line, Some(4), "{msg}");
        assert!(msg.contains("intervall"), "{msg}");
        let (line, msg) = parse("crowdsec:\n  url: http://h\n  api_key_file: k\n  machine:\n    id: a\n    password: x\n").unwrap_err();
        assert_eq!(line, Some(6), "{msg}");
        assert!(msg.contains("password"), "{msg}");
        let (_, msg) = parse("crowdsec:\n  url: http://h\n").unwrap_err();
        assert!(msg.contains("api_key_file"), "{msg}");
    }

    #[test]
    fn bad_values_name_their_field() {
        for (yaml, field) in [
            ("crowdsec:\n  api_key_file: k\n  url: 127.0.0.1:8080\n", "url:"),
            ("crowdsec:\n  url: ftp://h\n  api_key_file: k\n", "url:"),
            ("crowdsec:\n  url: http://h\n  api_key_file: k\n  interval: 0s\n", "interval:"),
            ("crowdsec:\n  url: http://h\n  api_key_file: k\n  interval: 2h\n", "interval:"),
            ("crowdsec:\n  url: http://h\n  api_key_file: k\n  origins: []\n", "origins:"),
            ("crowdsec:\n  url: http://h\n  api_key_file: k\n  origins: [\"a,b\"]\n", "origins:"),
            ("crowdsec:\n  url: http://h\n  api_key_file: k\n  machine: {id: \"\", password_file: p}\n", "machine:"),
        ] {
            let (_, msg) = parse(yaml).unwrap_err();
            assert!(msg.starts_with(field), "{yaml}: {msg}");
        }
    }

    #[test]
    fn secret_files_readable_by_others_are_refused() {
        let key = crate::policy::testing::TestFile::new("secret", "key", "abc123\n");
        let p = &key.path;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_secret(p, "crowdsec.api_key_file")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mode 0644") && e.contains("crowdsec.api_key_file"),
            "{e}"
        );
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = read_secret(p, "k").unwrap_err().to_string();
        assert!(e.contains("mode 0640"), "{e}");
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(read_secret(p, "k").unwrap(), "abc123");
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(p, " \n").unwrap();
        assert!(read_secret(p, "k")
            .unwrap_err()
            .to_string()
            .contains("empty"));
    }
}
