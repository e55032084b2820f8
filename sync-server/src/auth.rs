//! Authentication primitives: password hashing, token secrets and the bearer header.
//!
//! Passwords are hashed with argon2id (the crate's defaults: m=19 MiB, t=2, p=1) on the blocking
//! pool, so a burst of logins cannot stall the request workers. Token secrets are 256 random
//! bits, shown once; the catalog keeps only their hash ([`TokenHash`]).

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use warp::http::HeaderMap;
use warp::http::header::AUTHORIZATION;

use crate::catalog::TokenHash;

/// Every token secret starts with this, so leaked tokens are easy to recognize and scan for.
pub const TOKEN_PREFIX: &str = "cairn_";
/// The shortest password sign-up accepts.
pub const MIN_PASSWORD_LEN: usize = 8;
/// The longest password accepted, in characters (at most four times as many bytes): hashing
/// cost must stay bounded.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// A fresh token secret: the prefix and 256 random bits as 64 hex digits.
pub fn new_token_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let mut secret = String::with_capacity(TOKEN_PREFIX.len() + 64);
    secret.push_str(TOKEN_PREFIX);
    for byte in bytes {
        secret.push_str(&format!("{byte:02x}"));
    }
    secret
}

/// The hash the catalog stores for a token secret.
pub fn token_hash(secret: &str) -> TokenHash {
    TokenHash::of_secret(secret.as_bytes())
}

/// The token of an `Authorization: Bearer <token>` header, if there is a well-formed one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty() && token.len() <= 256).then_some(token)
}

/// Why a password hash could not be made.
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Hashes a password with argon2id and a random salt, on the blocking pool.
pub async fn hash_password(password: String) -> Result<String, HashError> {
    tokio::task::spawn_blocking(move || hash_password_now(&password))
        .await
        .map_err(|error| HashError(error.to_string()))?
}

fn hash_password_now(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| HashError(error.to_string()))
}

/// Checks a password against a stored PHC string, on the blocking pool. With no stored hash (an
/// unknown account) it checks against a fixed dummy, so both cases take the same time.
pub async fn verify_password(stored: Option<String>, password: String) -> bool {
    tokio::task::spawn_blocking(move || {
        let real = stored.is_some();
        let stored = match &stored {
            Some(stored) => stored.as_str(),
            None => dummy_hash(),
        };
        let verified = PasswordHash::new(stored)
            .map(|hash| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            })
            .unwrap_or(false);
        verified && real
    })
    .await
    .unwrap_or(false)
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password_now("not a real password").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_secrets_are_long_random_and_prefixed() {
        let a = new_token_secret();
        let b = new_token_secret();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
        assert_ne!(token_hash(&a), token_hash(&b));
    }

    #[test]
    fn bearer_header_parsing() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), None);
        headers.insert(AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer_token(&headers), Some("abc"));
        headers.insert(AUTHORIZATION, "bearer  abc ".parse().unwrap());
        assert_eq!(bearer_token(&headers), Some("abc"));
        headers.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&headers), None);
        headers.insert(AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer_token(&headers), None);
    }

    #[tokio::test]
    async fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(Some(hash.clone()), "correct horse".into()).await);
        assert!(!verify_password(Some(hash), "wrong".into()).await);
        assert!(!verify_password(None, "not a real password".into()).await);
    }
}
