//! The start page, sign-up, sign-in and sign-out, the account page (password, sessions) and
//! API tokens.

use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use super::forms::{Form, FormErrors};
use super::render::{PageError, context, page, redirect};
use super::session::{self, SESSION_COOKIE, SESSION_LIFETIME};
use super::{PageRequest, Visitor};
use crate::api::accounts::{self as rules, SignIn};
use crate::app::App;
use crate::auth;
use crate::catalog::{Account, CatalogError, Field, NewAccount, TokenId, limits};
use crate::problem::Problem;

/// Fixed notes a redirect may ask a page to show (`?done=`): never text from the URL itself.
fn note(request: &PageRequest) -> Option<&'static str> {
    let done = query_value(request, "done")?;
    Some(match done.as_str() {
        "signed-out" => "You are signed out.",
        "signed-out-everywhere" => "You are signed out on every browser.",
        "password-changed" => "Your password is changed. Other browsers were signed out.",
        "token-revoked" => "The token is revoked: it no longer works anywhere.",
        "team-created" => "The team is created. You are its owner.",
        "member-added" => "The member is added.",
        "role-changed" => "The role is changed.",
        "member-removed" => "The member is removed.",
        "left" => "You left the team.",
        "restored" => "The version is restored as the new head.",
        _ => return None,
    })
}

/// One query parameter's value, percent-decoded.
pub fn query_value(request: &PageRequest, name: &str) -> Option<String> {
    request
        .query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| {
            let value = value.replace('+', " ");
            percent_encoding::percent_decode_str(&value)
                .decode_utf8()
                .ok()
                .map(|value| value.into_owned())
        })
}

/// The context of a page, with the `?done=` note of `request` when it is shown first (a form
/// shown again after a refused post has no request to take a note from).
pub fn context_with_note(
    visitor: &Visitor,
    request: Option<&PageRequest>,
    title: &str,
    section: &str,
) -> tera::Context {
    let mut context = context(visitor, title, section);
    if let Some(note) = request.and_then(note) {
        context.insert("note", note);
    }
    context
}

pub fn start(visitor: &Visitor, request: &PageRequest) -> Result<Response, PageError> {
    let context = context_with_note(
        visitor,
        Some(request),
        "Team sync for API projects",
        "start",
    );
    page(StatusCode::OK, "start.html", &context)
}

pub fn sign_up_form(visitor: &Visitor, request: &PageRequest) -> Result<Response, PageError> {
    if visitor.signed_in.is_some() {
        return Ok(redirect("/account"));
    }
    let context = context_with_note(visitor, Some(request), "Sign up", "sign-up");
    page(StatusCode::OK, "sign_up.html", &context)
}

pub async fn sign_up(app: &App, visitor: &Visitor, form: Form) -> Result<Response, PageError> {
    let mut errors = FormErrors::default();
    errors.check(&form, "name", |name| {
        if name.is_empty() {
            return Err(Problem::invalid_field("name", "enter an account name"));
        }
        rules::check_account_name(name)
    });
    errors.check(&form, "email", |email| {
        if email.is_empty() {
            return Err(Problem::invalid_field("email", "enter your email address"));
        }
        if email.chars().count() > limits::MAX_EMAIL_LEN {
            return Err(Problem::invalid_field(
                "email",
                format!("at most {} characters", limits::MAX_EMAIL_LEN),
            ));
        }
        rules::check_email(email)
    });
    if let Some(reason) = form.bad("password") {
        errors.field("password", reason);
    } else if form.raw("password").is_empty() {
        errors.field("password", "Enter a password");
    } else if let Err(problem) = rules::check_password(form.raw("password")) {
        errors.field("password", super::forms::field_message(&problem));
    }
    if errors.is_empty() {
        let password_hash = auth::hash_password(form.raw("password").to_owned())
            .await
            .map_err(Problem::internal)?;
        match app
            .catalog
            .create_account(NewAccount {
                name: form.get("name").to_owned(),
                email: form.get("email").to_owned(),
                password_hash,
            })
            .await
        {
            Ok(account) => {
                tracing::info!(account = %account.id, "account created (pages)");
                return start_session(app, visitor, &account, "/account/teams").await;
            }
            Err(CatalogError::AlreadyExists { field, .. }) => {
                let (name, message) = if field == Field::Email {
                    (
                        "email",
                        "An account with this email exists already: sign in instead",
                    )
                } else {
                    ("name", "This name is taken: choose another")
                };
                errors.field(name, message);
            }
            Err(error) => errors.problem(&Problem::from(error), &["name", "email"]),
        }
    }
    let mut context = context(visitor, "Sign up", "sign-up");
    context.insert("values", &form.kept(&["name", "email"]));
    context.insert("errors", &errors);
    page(StatusCode::UNPROCESSABLE_ENTITY, "sign_up.html", &context)
}

/// Where to go after signing in: the page that asked for it, if it is one of ours.
fn next_page(next: &str) -> &str {
    let ours = next.starts_with("/account")
        && !next.starts_with("//")
        && !next.contains("\\")
        && !next.chars().any(char::is_control);
    if ours { next } else { "/account/projects" }
}

pub fn sign_in_form(visitor: &Visitor, request: &PageRequest) -> Result<Response, PageError> {
    if visitor.signed_in.is_some() {
        return Ok(redirect("/account/projects"));
    }
    let mut context = context_with_note(visitor, Some(request), "Sign in", "sign-in");
    let next = query_value(request, "next").unwrap_or_default();
    context.insert("next", next_page(&next));
    page(StatusCode::OK, "sign_in.html", &context)
}

pub async fn sign_in(
    app: &App,
    visitor: &Visitor,
    request: &PageRequest,
    form: Form,
) -> Result<Response, PageError> {
    let mut errors = FormErrors::default();
    errors.check(&form, "login", |login| {
        if login.is_empty() {
            Err(Problem::invalid_field(
                "login",
                "enter your account name or email",
            ))
        } else {
            Ok(())
        }
    });
    if form.raw("password").is_empty() {
        errors.field("password", "Enter your password");
    }
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    if errors.is_empty() {
        match rules::sign_in(
            app,
            form.get("login"),
            form.raw("password").to_owned(),
            request.client,
        )
        .await?
        {
            SignIn::Account(account) => {
                return start_session(app, visitor, &account, next_page(form.get("next"))).await;
            }
            SignIn::Refused => {
                status = StatusCode::UNAUTHORIZED;
                errors.form = Some(
                    "The account name (or email) and password do not match an account.".to_owned(),
                );
            }
            SignIn::Wait(wait) => return Err(PageError::TooMany(wait)),
        }
    }
    let mut context = context(visitor, "Sign in", "sign-in");
    context.insert("values", &form.kept(&["login"]));
    context.insert("next", next_page(form.get("next")));
    context.insert("errors", &errors);
    page(status, "sign_in.html", &context)
}

/// Makes a session for `account`, sets its cookie and goes to `next`.
async fn start_session(
    app: &App,
    visitor: &Visitor,
    account: &Account,
    next: &str,
) -> Result<Response, PageError> {
    let secret = session::new_secret();
    app.catalog
        .create_session(
            account.id,
            session::session_hash(&secret),
            session::expiry_from_now(),
        )
        .await?;
    let mut response = redirect(next);
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(
            SESSION_COOKIE,
            Some(&secret),
            SESSION_LIFETIME,
            visitor.secure,
        ),
    );
    Ok(response)
}

/// Ends this browser's session and clears its cookie.
pub async fn sign_out(app: &App, visitor: &Visitor) -> Result<Response, PageError> {
    if visitor.signed_in.is_some() {
        app.catalog
            .end_session(&session::session_hash(&visitor.secret))
            .await?;
    }
    Ok(signed_out("/account/sign-in?done=signed-out", visitor))
}

pub async fn sign_out_everywhere(app: &App, visitor: &Visitor) -> Result<Response, PageError> {
    let me = signed_in(visitor)?;
    app.catalog.end_sessions(me.id).await?;
    Ok(signed_out(
        "/account/sign-in?done=signed-out-everywhere",
        visitor,
    ))
}

fn signed_out(location: &str, visitor: &Visitor) -> Response {
    let mut response = redirect(location);
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(SESSION_COOKIE, None, SESSION_LIFETIME, visitor.secure),
    );
    response
}

/// The signed-in account (the dispatcher lets only signed-in visitors reach these pages).
pub fn signed_in(visitor: &Visitor) -> Result<&Account, PageError> {
    visitor
        .signed_in
        .as_ref()
        .map(|signed_in| &signed_in.account)
        .ok_or(PageError::NotFound)
}

pub async fn overview(
    app: &App,
    visitor: &Visitor,
    request: &PageRequest,
) -> Result<Response, PageError> {
    account_page(
        app,
        visitor,
        Some(request),
        FormErrors::default(),
        StatusCode::OK,
    )
    .await
}

async fn account_page(
    app: &App,
    visitor: &Visitor,
    request: Option<&PageRequest>,
    errors: FormErrors,
    status: StatusCode,
) -> Result<Response, PageError> {
    let me = signed_in(visitor)?;
    let sessions = app.catalog.sessions(me.id).await?;
    let mut context = context_with_note(visitor, request, "Your account", "account");
    context.insert("account", &crate::api::views::account(me));
    context.insert("sessions", &sessions.len());
    context.insert("errors", &errors);
    context.insert("min_password", &auth::MIN_PASSWORD_LEN);
    page(status, "account.html", &context)
}

pub async fn change_password(
    app: &App,
    visitor: &Visitor,
    request: &PageRequest,
    form: Form,
) -> Result<Response, PageError> {
    let me = signed_in(visitor)?.clone();
    let mut errors = FormErrors::default();
    if let Some(reason) = form.bad("new_password") {
        errors.field("new_password", reason);
    } else if let Err(problem) = rules::check_password(form.raw("new_password")) {
        errors.field("new_password", super::forms::field_message(&problem));
    }
    if form.raw("current_password").is_empty() {
        errors.field("current_password", "Enter your current password");
    }
    if errors.is_empty() {
        match rules::sign_in(
            app,
            &me.name,
            form.raw("current_password").to_owned(),
            request.client,
        )
        .await?
        {
            SignIn::Account(_) => {
                let hash = auth::hash_password(form.raw("new_password").to_owned())
                    .await
                    .map_err(Problem::internal)?;
                app.catalog.set_password_hash(me.id, &hash).await?;
                // Every browser signed in with the old password is signed out; this one
                // gets a new session.
                app.catalog.end_sessions(me.id).await?;
                return start_session(app, visitor, &me, "/account?done=password-changed").await;
            }
            SignIn::Refused => {
                errors.field("current_password", "This is not your current password")
            }
            SignIn::Wait(wait) => return Err(PageError::TooMany(wait)),
        }
    }
    account_page(app, visitor, None, errors, StatusCode::UNPROCESSABLE_ENTITY).await
}

pub async fn tokens(
    app: &App,
    visitor: &Visitor,
    request: &PageRequest,
) -> Result<Response, PageError> {
    tokens_page(
        app,
        visitor,
        Some(request),
        &Form::default(),
        FormErrors::default(),
        StatusCode::OK,
    )
    .await
}

async fn tokens_page(
    app: &App,
    visitor: &Visitor,
    request: Option<&PageRequest>,
    form: &Form,
    errors: FormErrors,
    status: StatusCode,
) -> Result<Response, PageError> {
    let me = signed_in(visitor)?;
    let mut tokens = app.catalog.tokens(me.id).await?;
    // Newest first; revoked ones after the live ones.
    tokens.sort_by(|a, b| {
        (a.revoked.is_some(), std::cmp::Reverse(a.created))
            .cmp(&(b.revoked.is_some(), std::cmp::Reverse(b.created)))
    });
    let mut context = context_with_note(visitor, request, "API tokens", "tokens");
    context.insert(
        "tokens",
        &tokens
            .iter()
            .map(crate::api::views::token)
            .collect::<Vec<_>>(),
    );
    context.insert("values", &form.kept(&["label"]));
    context.insert("errors", &errors);
    context.insert("max_label", &limits::MAX_TOKEN_LABEL_LEN);
    page(status, "tokens.html", &context)
}

pub async fn create_token(app: &App, visitor: &Visitor, form: Form) -> Result<Response, PageError> {
    let me = signed_in(visitor)?;
    let mut errors = FormErrors::default();
    errors.check(&form, "label", |label| {
        if label.is_empty() {
            Err(Problem::invalid_field(
                "label",
                "name the token, for example \"laptop\" or \"CI\"",
            ))
        } else if label.chars().count() > limits::MAX_TOKEN_LABEL_LEN {
            Err(Problem::invalid_field(
                "label",
                format!("at most {} characters", limits::MAX_TOKEN_LABEL_LEN),
            ))
        } else {
            Ok(())
        }
    });
    if !errors.is_empty() {
        return tokens_page(
            app,
            visitor,
            None,
            &form,
            errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let secret = auth::new_token_secret();
    let token = app
        .catalog
        .create_token(me.id, form.get("label"), auth::token_hash(&secret))
        .await?;
    let mut context = context(visitor, "Token created", "tokens");
    context.insert("token", &crate::api::views::token(&token));
    context.insert("secret", &secret);
    // The secret is on this page only: it must not be cached anywhere (`no-store` is set on
    // every page).
    let mut response = page(StatusCode::CREATED, "token_created.html", &context)?;
    response
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

pub async fn revoke_token(
    app: &App,
    visitor: &Visitor,
    token: &str,
) -> Result<Response, PageError> {
    let me = signed_in(visitor)?;
    let token: TokenId = token.parse().map_err(|_| PageError::NotFound)?;
    app.catalog
        .revoke_token(me.id, token)
        .await
        .map_err(|error| match error {
            CatalogError::NotFound { .. } => PageError::NotFound,
            other => other.into(),
        })?;
    app.events.access_changed(Some(me.id));
    Ok(redirect("/account/tokens?done=token-revoked"))
}
