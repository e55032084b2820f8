//! The user's configuration: access tokens per server, in `~/.config/cairn/config.toml`.
//!
//! Where: `$CAIRN_CONFIG` if set (a file path), else `$XDG_CONFIG_HOME/cairn/config.toml`, else
//! `$HOME/.config/cairn/config.toml`. The file holds secrets, so it is created with mode 0600 in
//! a folder created with mode 0700, and a file that other users can read (any group or other
//! permission bit) is refused with an error saying how to fix it, rather than used.
//!
//! ```toml
//! default_server = "https://cairn.example.com"
//!
//! [servers."https://cairn.example.com"]
//! token = "…"
//! account = "ada@example.com"
//! ```

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::atomic::Mode;
use super::config::write_toml;
use crate::error::{ClientError, io_error};

/// The environment variable naming the config file directly.
pub const CONFIG_ENV: &str = "CAIRN_CONFIG";

/// Credentials for one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerCredentials {
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

/// The whole user config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_server: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub servers: BTreeMap<String, ServerCredentials>,
}

impl UserConfig {
    /// The token for `server`, if logged in there.
    pub fn token(&self, server: &str) -> Option<&str> {
        self.servers
            .get(server.trim_end_matches('/'))
            .map(|credentials| credentials.token.as_str())
    }
}

/// The config file's path from the process environment.
pub fn config_path() -> Result<PathBuf, ClientError> {
    config_path_from(|name| std::env::var_os(name))
}

/// The config file's path, with the environment given as a function (for tests: the process
/// environment cannot be changed safely in a multithreaded test binary).
pub fn config_path_from(env: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, ClientError> {
    let set = |name: &str| env(name).filter(|value| !value.is_empty());
    if let Some(path) = set(CONFIG_ENV) {
        return Ok(PathBuf::from(path));
    }
    // XDG: a relative XDG_CONFIG_HOME is invalid and must be ignored.
    if let Some(dir) = set("XDG_CONFIG_HOME").map(PathBuf::from)
        && dir.is_absolute()
    {
        return Ok(dir.join("cairn").join("config.toml"));
    }
    match set("HOME") {
        Some(home) => Ok(PathBuf::from(home)
            .join(".config")
            .join("cairn")
            .join("config.toml")),
        None => Err(ClientError::NoConfigHome),
    }
}

/// Reads the config at `path`; `None` when there is none yet. Refuses a file readable by others.
pub fn load(path: &Path) -> Result<Option<UserConfig>, ClientError> {
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(ClientError::io("read", path, error)),
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ClientError::InsecureConfig {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = fs::read_to_string(path).map_err(io_error("read", path))?;
    let config = toml::from_str(&text).map_err(|error| ClientError::Config {
        path: path.to_path_buf(),
        detail: error.to_string(),
    })?;
    Ok(Some(config))
}

/// Writes the config at `path` atomically, mode 0600, creating its folder with mode 0700.
pub fn save(path: &Path, config: &UserConfig) -> Result<(), ClientError> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.exists()
    {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io_error("create folder", parent))?;
    }
    write_toml(path, config, Mode::Exact(0o600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_precedence() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| OsString::from(value))
            }
        };
        assert_eq!(
            config_path_from(env(&[
                ("CAIRN_CONFIG", "/c/x.toml"),
                ("XDG_CONFIG_HOME", "/xdg"),
                ("HOME", "/h")
            ]))
            .unwrap(),
            PathBuf::from("/c/x.toml")
        );
        assert_eq!(
            config_path_from(env(&[("XDG_CONFIG_HOME", "/xdg"), ("HOME", "/h")])).unwrap(),
            PathBuf::from("/xdg/cairn/config.toml")
        );
        assert_eq!(
            config_path_from(env(&[("XDG_CONFIG_HOME", "relative"), ("HOME", "/h")])).unwrap(),
            PathBuf::from("/h/.config/cairn/config.toml")
        );
        assert_eq!(
            config_path_from(env(&[("CAIRN_CONFIG", ""), ("HOME", "/h")])).unwrap(),
            PathBuf::from("/h/.config/cairn/config.toml")
        );
        assert!(matches!(
            config_path_from(env(&[])),
            Err(ClientError::NoConfigHome)
        ));
    }
}
