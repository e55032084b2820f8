//! The user config file: where it lives, its permissions, refusing a readable one.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use sync_client::ClientError;
use sync_client::stores::user_config::{ServerCredentials, UserConfig, load, save};

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn created_private_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xdg/cairn/config.toml");
    assert_eq!(load(&path).unwrap(), None);
    let mut config = UserConfig {
        default_server: Some("https://cairn.test".to_owned()),
        ..UserConfig::default()
    };
    config.servers.insert(
        "https://cairn.test".to_owned(),
        ServerCredentials {
            token: "secret-token".to_owned(),
            account: Some("ada@example.com".to_owned()),
        },
    );
    save(&path, &config).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    let loaded = load(&path).unwrap().unwrap();
    assert_eq!(loaded, config);
    assert_eq!(loaded.token("https://cairn.test/"), Some("secret-token"));
    // Saving again keeps the mode exact, whatever the umask.
    save(&path, &loaded).unwrap();
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn a_config_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    save(&path, &UserConfig::default()).unwrap();
    for loose in [0o644, 0o640, 0o604, 0o660] {
        fs::set_permissions(&path, fs::Permissions::from_mode(loose)).unwrap();
        let error = load(&path).unwrap_err();
        assert!(
            matches!(error, ClientError::InsecureConfig { mode, .. } if mode == loose),
            "{error:?}"
        );
        // The fix (`chmod 600`) is the binary's to word (src/bin/cairn/errors.rs tests it).
        let message = error.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
    assert!(load(&path).unwrap().is_some());
}

#[test]
fn a_malformed_config_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    fs::write(&path, "servers = 3\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let error = load(&path).unwrap_err();
    assert!(matches!(error, ClientError::Config { .. }));
    assert!(error.to_string().contains("config.toml"));
}
