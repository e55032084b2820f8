//! Server-side syntax highlighting with syntect, emitting CSS classes (`hl-*`), never inline
//! styles. The syntax set is loaded once, on the first code block that needs it. syntect runs
//! its grammars on Oniguruma (its default engine): with the pure-Rust fancy-regex, regex
//! matching was about a third of a cold build's CPU time (perf, 10,000 pages).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use syntect::html::{ClassStyle, ClassedHTMLGenerator};
use syntect::parsing::SyntaxSet;
use syntect::util::LinesWithEndings;

fn syntax_set() -> &'static SyntaxSet {
    static SET: OnceLock<SyntaxSet> = OnceLock::new();
    SET.get_or_init(SyntaxSet::load_defaults_newlines)
}

/// Changes whenever the same code block would be highlighted differently, so an incremental
/// build never reuses blocks highlighted the old way (it is part of the build's global hash).
pub const HIGHLIGHT_VERSION: u32 = 3;

/// Language names authors use that syntect knows by another token.
fn token_for(language: &str) -> &str {
    match language {
        "sh" | "shell" | "bash" => "bash",
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

/// How many bytes of highlighted blocks [`cached_code_block`] keeps at most.
const CACHE_BYTES: usize = 8 << 20;

/// Highlighted blocks by (language, code), for blocks that recur across pages (the same
/// command or configuration shown on several pages is highlighted once per build). Bounded:
/// once full it keeps what it has and highlights the rest every time.
#[derive(Default)]
struct BlockCache {
    blocks: HashMap<(String, String), String>,
    bytes: usize,
}

/// [`code_block`], through a cache shared by the build's threads.
pub fn cached_code_block(language: &str, code: &str) -> String {
    static CACHE: OnceLock<Mutex<BlockCache>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    let key = (language.to_owned(), code.to_owned());
    if let Some(html) = cache.lock().ok().and_then(|c| c.blocks.get(&key).cloned()) {
        return html;
    }
    let html = code_block(language, code);
    if let Ok(mut cache) = cache.lock() {
        let size = key.0.len() + key.1.len() + html.len();
        if cache.bytes + size <= CACHE_BYTES {
            cache.bytes += size;
            cache.blocks.insert(key, html.clone());
        }
    }
    html
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
    if language == "console" {
        return format!(
            "<pre class=\"code\"{language_attr} tabindex=\"0\"><code>{}</code></pre>\n",
            console(code)
        );
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

/// A terminal session: lines starting with a `$ ` prompt are commands, highlighted as shell
/// (each on its own); every other line is the program's output, left as it is.
fn console(code: &str) -> String {
    let set = syntax_set();
    let bash = set.find_syntax_by_token("bash");
    let mut out = String::with_capacity(code.len() * 2);
    for line in LinesWithEndings::from(code) {
        match (line.strip_prefix("$ "), bash) {
            (Some(command), Some(syntax)) => {
                let mut generator = ClassedHTMLGenerator::new_with_class_style(
                    syntax,
                    set,
                    ClassStyle::SpacedPrefixed { prefix: "hl-" },
                );
                let line_end = if command.ends_with('\n') { "" } else { "\n" };
                let parsed = generator
                    .parse_html_for_line_which_includes_newline(&format!("{command}{line_end}"));
                out.push_str("<span class=\"hl-prompt\">$ </span>");
                match parsed {
                    Ok(()) => {
                        let html = generator.finalize();
                        // The newline added for the parser is not the block's.
                        out.push_str(if line_end.is_empty() {
                            &html
                        } else {
                            html.strip_suffix('\n').unwrap_or(&html)
                        });
                    }
                    Err(_) => out.push_str(&escape(command)),
                }
            }
            _ => out.push_str(&escape(line)),
        }
    }
    out
}

/// Highlighted blocks already in a page's previous output, by (language, code).
pub type Reuse = HashMap<(String, String), String>;

fn unescape_exact(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let (entity, ch) = [
            ("&amp;", '&'),
            ("&lt;", '<'),
            ("&gt;", '>'),
            ("&quot;", '"'),
            ("&#39;", '\''),
            ("&#x27;", '\''),
            ("&#x2F;", '/'),
        ]
        .into_iter()
        .find(|(entity, _)| rest.starts_with(entity))?;
        out.push(ch);
        rest = &rest[entity.len()..];
    }
    out.push_str(rest);
    Some(out)
}

fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for ch in html.chars() {
        match ch {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(ch),
            _ => {}
        }
    }
    out
}

/// Finds the code blocks [`code_block`] wrote into `html`, so an incremental build can reuse
/// them instead of highlighting again. Highlighting is deterministic for a given generator
/// version (part of the build's global hash), so reuse gives the same bytes. A block whose
/// text cannot be recovered exactly is skipped.
pub fn blocks_in(html: &str) -> Reuse {
    const START: &str = "<pre class=\"code\"";
    const OPEN: &str = " tabindex=\"0\"><code>";
    const CLOSE: &str = "</code></pre>\n";
    let mut blocks = HashMap::new();
    let mut rest = html;
    while let Some(start) = rest.find(START) {
        rest = &rest[start..];
        let Some(end) = rest.find(CLOSE) else { break };
        let block = &rest[..end + CLOSE.len()];
        rest = &rest[end + CLOSE.len()..];
        let Some(open) = block.find(OPEN) else {
            continue;
        };
        let attributes = &block[START.len()..open];
        let language = match attributes.strip_prefix(" data-lang=\"") {
            Some(value) => match value.strip_suffix('"').and_then(unescape_exact) {
                Some(language) => language,
                None => continue,
            },
            None if attributes.is_empty() => String::new(),
            None => continue,
        };
        let content = &block[open + OPEN.len()..block.len() - CLOSE.len()];
        let Some(code) = unescape_exact(&strip_tags(content)) else {
            continue;
        };
        blocks.insert((language, code), block.to_owned());
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip() {
        let samples = [
            ("rust", "fn main() {\n    let s = \"<&>\";\n}\n"),
            ("", "plain <text> & more\n"),
            ("json", "{\"a\": [1, 2]}\n"),
            ("bash", "echo 'x' > /dev/null\n"),
        ];
        let mut html = String::from("<main>");
        for (language, code) in samples {
            html.push_str(&code_block(language, code));
        }
        let blocks = blocks_in(&html);
        for (language, code) in samples {
            assert_eq!(
                blocks.get(&(language.to_owned(), code.to_owned())),
                Some(&code_block(language, code)),
                "{language}"
            );
        }
    }
}

#[cfg(test)]
mod console_tests {
    use super::*;

    #[test]
    fn console_highlights_commands_and_leaves_output_alone() {
        let html = code_block(
            "console",
            "$ cairn login --server http://x\nPassword for alice: ; not shell\n$ echo hi\n",
        );
        // The output line is escaped text, with no highlighting spans.
        assert!(
            html.contains("</span>Password for alice: ; not shell\n<span class=\"hl-prompt\">"),
            "{html}"
        );
        // Each command has its prompt and shell highlighting.
        assert_eq!(
            html.matches("<span class=\"hl-prompt\">$ </span>").count(),
            2
        );
        assert!(html.contains("hl-source hl-shell"), "{html}");
        // Nothing is lost: the text of the block is the code.
        assert_eq!(
            strip_tags(&html),
            "$ cairn login --server http://x\nPassword for alice: ; not shell\n$ echo hi\n\n"
        );
    }
}
