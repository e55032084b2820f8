//! Server-side syntax highlighting with syntect, emitting CSS classes (`hl-*`), never inline
//! styles. The syntax set is loaded once, on the first code block that needs it.

use std::sync::OnceLock;

use syntect::html::{ClassStyle, ClassedHTMLGenerator};
use syntect::parsing::SyntaxSet;
use syntect::util::LinesWithEndings;

fn syntax_set() -> &'static SyntaxSet {
    static SET: OnceLock<SyntaxSet> = OnceLock::new();
    SET.get_or_init(SyntaxSet::load_defaults_newlines)
}

/// Loads the syntax definitions if they are not loaded yet.
pub fn preload() {
    syntax_set();
}

/// Language names authors use that syntect knows by another token.
fn token_for(language: &str) -> &str {
    match language {
        "sh" | "shell" | "console" | "bash" => "bash",
        "js" | "javascript" => "js",
        "rs" => "rust",
        other => other,
    }
}

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            other => out.push(other),
        }
    }
    out
}

/// A `<pre>` block for a fenced code block; unknown languages are escaped plain text.
pub fn code_block(language: &str, code: &str) -> String {
    let language_attr = if language.is_empty() {
        String::new()
    } else {
        format!(" data-lang=\"{}\"", escape(language))
    };
    let plain = || {
        format!(
            "<pre class=\"code\"{language_attr} tabindex=\"0\"><code>{}</code></pre>\n",
            escape(code)
        )
    };
    if language.is_empty() || matches!(language, "text" | "plain" | "http") {
        return plain();
    }
    let set = syntax_set();
    let Some(syntax) = set.find_syntax_by_token(token_for(language)) else {
        return plain();
    };
    let mut generator = ClassedHTMLGenerator::new_with_class_style(
        syntax,
        set,
        ClassStyle::SpacedPrefixed { prefix: "hl-" },
    );
    for line in LinesWithEndings::from(code) {
        if generator
            .parse_html_for_line_which_includes_newline(line)
            .is_err()
        {
            return plain();
        }
    }
    format!(
        "<pre class=\"code\"{language_attr} tabindex=\"0\"><code>{}</code></pre>\n",
        generator.finalize()
    )
}
