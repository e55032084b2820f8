//! Form posts: the body read within its limit, decoded strictly, its CSRF token checked, and the
//! errors a form shows beside its fields.
//!
//! Every `POST` page is read here before its handler runs, so no handler can skip the check.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use serde::Serialize;

use super::render::PageError;
use super::session;
use super::{PageRequest, Visitor};
use crate::problem::Problem;

/// The largest form body: the longest field (a password) is 1,024 characters.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// A decoded form: each field's last value.
#[derive(Debug, Default, Clone)]
pub struct Form {
    fields: BTreeMap<String, String>,
    /// Fields whose value was not valid UTF-8 or held a control character other than line
    /// breaks and tabs: they read as empty and fail their check with this message.
    bad: BTreeMap<String, &'static str>,
}

impl Form {
    /// The field's value, trimmed of surrounding whitespace ("" when absent).
    pub fn get(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", |value| value.trim())
    }

    /// The field's value exactly as sent (passwords are not trimmed).
    pub fn raw(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }

    /// Why a field's bytes were refused, if they were.
    pub fn bad(&self, name: &str) -> Option<&'static str> {
        self.bad.get(name).copied()
    }

    /// The values to show again in the form (never the passwords).
    pub fn kept(&self, names: &[&str]) -> BTreeMap<String, String> {
        names
            .iter()
            .map(|name| ((*name).to_owned(), self.get(name).to_owned()))
            .collect()
    }
}

/// The errors of one form: per field, and for the form as a whole.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FormErrors {
    pub fields: BTreeMap<String, String>,
    /// The same errors in the order they were found (the form's order), for the summary.
    pub summary: Vec<(String, String)>,
    /// What is wrong with the whole form (a failed sign-in, the last owner...).
    pub form: Option<String>,
}

impl FormErrors {
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.form.is_none()
    }

    /// Records `field`'s error (the first one stays).
    pub fn field(&mut self, field: &str, message: impl Into<String>) {
        if !self.fields.contains_key(field) {
            let message = message.into();
            self.summary.push((field.to_owned(), message.clone()));
            self.fields.insert(field.to_owned(), message);
        }
    }

    /// Checks `field` with `check` (the API's own rule) unless its bytes were already refused.
    pub fn check(
        &mut self,
        form: &Form,
        field: &str,
        check: impl FnOnce(&str) -> Result<(), Problem>,
    ) {
        if let Some(reason) = form.bad(field) {
            self.field(field, reason);
            return;
        }
        if let Err(problem) = check(form.get(field)) {
            self.field(field, field_message(&problem));
        }
    }

    /// Records a problem the API answered: on its field when it names one of `fields`, else
    /// on the form.
    pub fn problem(&mut self, problem: &Problem, fields: &[&str]) {
        match problem.document.field.as_deref() {
            Some(field) if fields.contains(&field) => self.field(field, field_message(problem)),
            _ => self.form = Some(problem.document.detail.clone()),
        }
    }
}

/// The message of an `invalid-field` problem without its `field: ` prefix, capitalized.
pub fn field_message(problem: &Problem) -> String {
    let detail = &problem.document.detail;
    let message = match &problem.document.field {
        Some(field) => detail.strip_prefix(&format!("{field}: ")).unwrap_or(detail),
        None => detail,
    };
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Refuses a post from another site, then reads and decodes the form and checks its CSRF
/// token against the visitor's secret.
pub async fn read(request: &mut PageRequest, visitor: &Visitor) -> Result<Form, PageError> {
    if session::cross_site(&request.headers) {
        return Err(PageError::BadForm(
            "This form was sent from another site. Open the page here and send it again."
                .to_owned(),
        ));
    }
    let declared = request
        .headers
        .get(warp::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_FORM_BYTES as u64) {
        return Err(PageError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = request.body.next().await {
        let chunk = chunk.map_err(|error| {
            PageError::Problem(Problem::bad_request(format!("reading the form: {error}")))
        })?;
        if body.len() + chunk.len() > MAX_FORM_BYTES {
            return Err(PageError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    let form = decode(&body);
    // A visitor without a cookie (minted for this answer) cannot have sent a valid token.
    if visitor.minted || !session::csrf_matches(&visitor.secret, form.raw("csrf")) {
        return Err(PageError::BadForm(
            "This form's security token is missing or out of date (were you signed out?). \
             Reload the page and send it again."
                .to_owned(),
        ));
    }
    Ok(form)
}

/// Decodes `application/x-www-form-urlencoded` strictly: a value that is not UTF-8 once
/// percent-decoded, or holds a control character, is refused rather than repaired.
pub fn decode(body: &[u8]) -> Form {
    let mut form = Form::default();
    for pair in body
        .split(|byte| *byte == b'&')
        .filter(|pair| !pair.is_empty())
    {
        let (key, value) = match pair.iter().position(|byte| *byte == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &[][..]),
        };
        let Ok(key) = decode_component(key) else {
            continue;
        };
        match decode_component(value) {
            Ok(value)
                if !value
                    .chars()
                    .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) =>
            {
                form.bad.remove(&key);
                form.fields.insert(key, value);
            }
            Ok(_) => {
                form.fields.insert(key.clone(), String::new());
                form.bad.insert(key, "Control characters are not allowed");
            }
            Err(()) => {
                form.fields.insert(key.clone(), String::new());
                form.bad.insert(key, "Not valid UTF-8 text");
            }
        }
    }
    form
}

fn decode_component(bytes: &[u8]) -> Result<String, ()> {
    let spaced: Vec<u8> = bytes
        .iter()
        .map(|byte| if *byte == b'+' { b' ' } else { *byte })
        .collect();
    let decoded: Vec<u8> = percent_encoding::percent_decode(&spaced).collect();
    String::from_utf8(decoded).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_strictly() {
        let form = decode(b"name=Ada+L%C3%B6v&empty=&bad=%FF%FE&nul=a%00b&flag&name2=x%3Dy");
        assert_eq!(form.get("name"), "Ada Löv");
        assert_eq!(form.get("empty"), "");
        assert_eq!(form.get("bad"), "");
        assert_eq!(form.bad("bad"), Some("Not valid UTF-8 text"));
        assert_eq!(form.bad("nul"), Some("Control characters are not allowed"));
        assert_eq!(form.get("flag"), "");
        assert_eq!(form.get("name2"), "x=y");
        assert_eq!(form.get("absent"), "");
    }

    #[test]
    fn field_messages_drop_the_field_name() {
        let problem = Problem::invalid_field("name", "at most 100 characters");
        assert_eq!(field_message(&problem), "At most 100 characters");
        let mut errors = FormErrors::default();
        errors.problem(&problem, &["name"]);
        assert_eq!(errors.fields["name"], "At most 100 characters");
        errors.problem(&Problem::already_exists("taken"), &["name"]);
        assert_eq!(errors.form.as_deref(), Some("taken"));
    }
}
