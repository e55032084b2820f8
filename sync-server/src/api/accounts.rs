//! Accounts, sessions and API tokens.
//!
//! - `POST /v1/accounts` `{name, email, password}` → 201 account.
//! - `POST /v1/sessions` `{login, password, label?}` → 201 `{token, token_id, account}`; `login`
//!   is the account name or email.
//! - `GET /v1/account` → the caller's account.
//! - `GET /v1/tokens` → `{tokens: [...]}`; `POST /v1/tokens` `{label}` → 201 with the secret,
//!   shown only this once; `DELETE /v1/tokens/{token}` → 204.

use sync_protocol::wire;
use warp::http::StatusCode;
use warp::reply::Response;

use super::answer::{json, no_content};
use super::request::{ApiRequest, authenticate, read_json};
use super::views;
use crate::app::App;
use crate::auth::{self, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN};
use crate::catalog::{Account, NewAccount, TokenId};
use crate::problem::Problem;

/// The label of tokens made by logging in without one.
pub const DEFAULT_SESSION_LABEL: &str = "session";

pub(crate) fn check_password(password: &str) -> Result<(), Problem> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(Problem::invalid_field(
            "password",
            format!("at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    if password.chars().count() > MAX_PASSWORD_LEN {
        return Err(Problem::invalid_field(
            "password",
            format!("at most {MAX_PASSWORD_LEN} characters"),
        ));
    }
    Ok(())
}

/// Account names are what people type to log in and to add members: letters, digits, `.`, `-`
/// and `_`, starting with a letter or digit, and never containing `@` (which marks an email).
pub(crate) fn check_account_name(name: &str) -> Result<(), Problem> {
    let valid = name.len() <= crate::catalog::limits::MAX_NAME_LEN
        && name.chars().next().is_some_and(char::is_alphanumeric)
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '.' || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(Problem::invalid_field(
            "name",
            "1 to 100 letters, digits, '.', '-' or '_', starting with a letter or digit",
        ))
    }
}

pub(crate) fn check_email(email: &str) -> Result<(), Problem> {
    let valid = email
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.chars().any(char::is_whitespace);
    if valid {
        Ok(())
    } else {
        Err(Problem::invalid_field("email", "not an email address"))
    }
}

pub async fn sign_up(app: &App, mut request: ApiRequest) -> Result<Response, Problem> {
    let body: wire::SignUp = read_json(&mut request).await?;
    check_account_name(&body.name)?;
    check_email(&body.email)?;
    check_password(&body.password)?;
    let password_hash = auth::hash_password(body.password)
        .await
        .map_err(Problem::internal)?;
    let account = app
        .catalog
        .create_account(NewAccount {
            name: body.name,
            email: body.email,
            password_hash,
        })
        .await?;
    tracing::info!(account = %account.id, "account created");
    Ok(json(StatusCode::CREATED, &views::account(&account)))
}

pub async fn log_in(app: &App, mut request: ApiRequest) -> Result<Response, Problem> {
    let body: wire::LogIn = read_json(&mut request).await?;
    let account = match sign_in(app, &body.login, body.password, request.client).await? {
        SignIn::Account(account) => account,
        SignIn::Refused => return Err(Problem::bad_credentials()),
        SignIn::Wait(wait) => {
            let seconds = u32::try_from(wait.as_secs().max(1)).unwrap_or(u32::MAX);
            return Err(Problem::new(wire::ProblemCode::TooManyRequests)
                .with_detail(format!(
                    "too many failed log-ins for this account or address; try again in {seconds} s"
                ))
                .with_retry_after(seconds));
        }
    };
    let label = body
        .label
        .unwrap_or_else(|| DEFAULT_SESSION_LABEL.to_owned());
    new_token(app, &account, &label).await
}

/// How a sign-in (API log-in or the sign-in page) ended.
#[derive(Debug)]
pub(crate) enum SignIn {
    Account(Account),
    /// Unknown login or wrong password: the same answer for both.
    Refused,
    /// Too many failures for this login or address; try again after this.
    Wait(std::time::Duration),
}

/// Checks a login and password, counting failures per login and per client address
/// ([`crate::pages::SignInLimiter`]): the one sign-in of the API and the account pages.
pub(crate) async fn sign_in(
    app: &App,
    login: &str,
    password: String,
    client: Option<std::net::IpAddr>,
) -> Result<SignIn, Problem> {
    if password.chars().count() > MAX_PASSWORD_LEN || login.chars().count() > 512 {
        return Ok(SignIn::Refused);
    }
    if let Some(wait) = app.sign_in_limiter.wait(login, client) {
        return Ok(SignIn::Wait(wait));
    }
    let credentials = app.catalog.account_credentials(login).await?;
    let stored = credentials.as_ref().map(|c| c.password_hash.clone());
    // Verified even for an unknown login (against a dummy hash): both take the same time.
    let verified = auth::verify_password(stored, password).await;
    match credentials {
        Some(credentials) if verified => {
            app.sign_in_limiter.succeeded(login);
            Ok(SignIn::Account(credentials.account))
        }
        _ => {
            app.sign_in_limiter.failed(login, client);
            Ok(SignIn::Refused)
        }
    }
}

/// Makes a token for `account` and answers it, its secret shown this once.
async fn new_token(app: &App, account: &Account, label: &str) -> Result<Response, Problem> {
    let secret = auth::new_token_secret();
    let token = app
        .catalog
        .create_token(account.id, label, auth::token_hash(&secret))
        .await?;
    Ok(json(
        StatusCode::CREATED,
        &wire::NewToken {
            token: secret,
            token_id: token.id.to_string(),
            label: token.label,
            account: views::account(account),
        },
    ))
}

pub async fn whoami(app: &App, request: ApiRequest) -> Result<Response, Problem> {
    let caller = authenticate(app, &request).await?;
    Ok(json(StatusCode::OK, &views::account(&caller.account)))
}

pub async fn list_tokens(app: &App, request: ApiRequest) -> Result<Response, Problem> {
    let caller = authenticate(app, &request).await?;
    let tokens = app.catalog.tokens(caller.account.id).await?;
    Ok(json(
        StatusCode::OK,
        &wire::TokenList {
            tokens: tokens.iter().map(views::token).collect(),
        },
    ))
}

pub async fn create_token(app: &App, mut request: ApiRequest) -> Result<Response, Problem> {
    let caller = authenticate(app, &request).await?;
    let body: wire::CreateToken = read_json(&mut request).await?;
    new_token(app, &caller.account, &body.label).await
}

pub async fn revoke_token(
    app: &App,
    request: ApiRequest,
    token: &str,
) -> Result<Response, Problem> {
    let caller = authenticate(app, &request).await?;
    let token: TokenId = token.parse().map_err(|_| Problem::not_found())?;
    app.catalog.revoke_token(caller.account.id, token).await?;
    // This node's streams of the token check their access now (other nodes hear of it
    // through the catalog).
    app.events.access_changed(Some(caller.account.id));
    Ok(no_content())
}
