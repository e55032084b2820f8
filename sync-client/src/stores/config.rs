//! `.cairn/config.toml`: which server and project a working copy syncs with.

use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::atomic::{Mode, Replace, write_atomic};
use crate::error::ClientError;

/// The version of the `.cairn/` layout this client writes and reads.
pub const LAYOUT_VERSION: u32 = 1;

/// `.cairn/config.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkingCopyConfig {
    /// The `.cairn/` layout version.
    pub layout: u32,
    /// The server's base URL, e.g. `https://cairn.example.com`.
    pub server: String,
    /// The project's id on that server.
    pub project: String,
}

impl WorkingCopyConfig {
    /// Checks a server URL and project id as given on the command line.
    pub fn new(server: &str, project: &str) -> Result<Self, ClientError> {
        let server = server.trim_end_matches('/');
        let valid_scheme = server.starts_with("https://") || server.starts_with("http://");
        let has_host = server
            .split_once("://")
            .is_some_and(|(_, rest)| !rest.is_empty());
        if !valid_scheme || !has_host || server.chars().any(char::is_whitespace) {
            return Err(ClientError::InvalidServerUrl {
                server: server.to_owned(),
            });
        }
        if project.is_empty()
            || project.len() > 128
            || !project
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ClientError::InvalidProjectId {
                project: project.to_owned(),
            });
        }
        Ok(Self {
            layout: LAYOUT_VERSION,
            server: server.to_owned(),
            project: project.to_owned(),
        })
    }
}

/// Writes `value` as TOML at `path`, atomically, with `mode`: the working copy's config and the
/// user's token file.
pub(super) fn write_toml(
    path: &Path,
    value: &impl Serialize,
    mode: Mode,
) -> Result<(), ClientError> {
    let text = toml::to_string(value).map_err(|error| ClientError::Config {
        path: path.to_path_buf(),
        detail: error.to_string(),
    })?;
    write_atomic(path, text.as_bytes(), mode, Replace::Overwrite)?;
    Ok(())
}

pub(super) fn write(path: &Path, config: &WorkingCopyConfig) -> Result<(), ClientError> {
    write_toml(path, config, Mode::Umask(0o644))
}

/// Reads the config; a missing or damaged one is `CorruptState`, one of another layout version
/// `UnsupportedLayout`.
pub(super) fn read(path: &Path) -> Result<WorkingCopyConfig, ClientError> {
    let text = fs::read_to_string(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => ClientError::CorruptState {
            path: path.to_path_buf(),
            detail: "the file is missing".to_owned(),
        },
        io::ErrorKind::InvalidData => ClientError::CorruptState {
            path: path.to_path_buf(),
            detail: "the file is not UTF-8".to_owned(),
        },
        _ => ClientError::io("read", path, error),
    })?;
    let config: WorkingCopyConfig =
        toml::from_str(&text).map_err(|error| ClientError::CorruptState {
            path: path.to_path_buf(),
            detail: error.to_string(),
        })?;
    if config.layout != LAYOUT_VERSION {
        return Err(ClientError::UnsupportedLayout {
            path: path.to_path_buf(),
            found: config.layout,
            supported: LAYOUT_VERSION,
        });
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_arguments_are_checked() {
        assert!(WorkingCopyConfig::new("https://cairn.example.com/", "p1").is_ok());
        assert_eq!(
            WorkingCopyConfig::new("https://cairn.example.com/", "p1")
                .unwrap()
                .server,
            "https://cairn.example.com"
        );
        assert!(WorkingCopyConfig::new("ftp://x", "p1").is_err());
        assert!(WorkingCopyConfig::new("https://", "p1").is_err());
        assert!(WorkingCopyConfig::new("https://x", "").is_err());
        assert!(WorkingCopyConfig::new("https://x", "a/b").is_err());
    }

    #[test]
    fn another_layout_is_refused_by_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let mut config = WorkingCopyConfig::new("https://x.test", "p").unwrap();
        config.layout = LAYOUT_VERSION + 1;
        write(&path, &config).unwrap();
        assert!(matches!(
            read(&path),
            Err(ClientError::UnsupportedLayout { found, supported, .. })
                if found == LAYOUT_VERSION + 1 && supported == LAYOUT_VERSION
        ));
    }
}
