//! `sitegen serve`: builds, watches the sources, rebuilds incrementally and serves the output
//! on a loopback port for authors.
//!
//! Live reload is pure progressive enhancement and exists only here: the server adds a small
//! polling script to HTML responses as it sends them; the files on disk are exactly those of
//! `sitegen build`. A plain `std::net` server is enough for one author on localhost and keeps
//! the generator free of an HTTP stack.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use crate::assets::content_type;
use crate::build::{BuildOptions, build};
use crate::error::{Error, Result};

const RELOAD_SCRIPT: &str = "<script>(function(){var v=null;function poll(){fetch('/__sitegen/version').then(function(r){return r.text()}).then(function(t){if(v!==null&&t!==v){location.reload()}v=t;setTimeout(poll,700)}).catch(function(){setTimeout(poll,2000)})}poll()})();</script>";

fn rebuild(options: &BuildOptions, version: &AtomicU64) {
    match build(options) {
        Ok(report) => {
            // Browsers reload only when the output changed.
            if report.written > 0 || report.removed > 0 {
                version.fetch_add(1, Ordering::SeqCst);
            }
            eprintln!(
                "rebuilt: {} of {} pages rendered in {} ms",
                report.rendered.len(),
                report.pages,
                report.millis
            );
            for warning in &report.warnings {
                eprintln!("warning: {warning}");
            }
        }
        Err(err) => eprintln!("build failed:\n{err}"),
    }
}

/// Serves `options.out` on `127.0.0.1:port` until the process is stopped.
pub fn serve(options: BuildOptions, port: u16) -> Result<()> {
    let version = Arc::new(AtomicU64::new(0));
    rebuild(&options, &version);
    let listener = TcpListener::bind(("127.0.0.1", port))
        .map_err(|err| Error::io(format!("127.0.0.1:{port}"), err))?;
    let address = listener
        .local_addr()
        .map_err(|err| Error::io("listener", err))?;
    eprintln!("serving {} at http://{address}/", options.out.display());

    let (sender, receiver) = mpsc::channel();
    let out_dir = options
        .out
        .canonicalize()
        .unwrap_or_else(|_| options.out.clone());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reads are events too on some platforms, and the build reads every source: only
        // changes outside the output folder may trigger a rebuild, or it would trigger itself.
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
            && !event.paths.iter().all(|path| path.starts_with(&out_dir))
        {
            sender.send(()).ok();
        }
    })
    .map_err(|err| Error::Other(format!("cannot watch {}: {err}", options.source.display())))?;
    notify::Watcher::watch(
        &mut watcher,
        &options.source,
        notify::RecursiveMode::Recursive,
    )
    .map_err(|err| Error::Other(format!("cannot watch {}: {err}", options.source.display())))?;
    {
        let options = options.clone();
        let version = Arc::clone(&version);
        std::thread::spawn(move || {
            while receiver.recv().is_ok() {
                // Editors write several events per save; let them settle.
                std::thread::sleep(Duration::from_millis(80));
                while receiver.try_recv().is_ok() {}
                rebuild(&options, &version);
            }
        });
    }
    for stream in listener.incoming().flatten() {
        let out = options.out.clone();
        let version = Arc::clone(&version);
        std::thread::spawn(move || {
            handle(stream, &out, &version).ok();
        });
    }
    drop(watcher);
    Ok(())
}

fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(hex) = path.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Maps a request path to a file under `out`, refusing anything that leaves it.
pub fn resolve(out: &Path, request_path: &str) -> Option<PathBuf> {
    let path = percent_decode(request_path.split(['?', '#']).next().unwrap_or("/"));
    let mut file = out.to_owned();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            part if part.starts_with(".sitegen") || part.contains('\\') => return None,
            part => file.push(part),
        }
    }
    if path.ends_with('/') {
        file.push("index.html");
    }
    Some(file)
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    extra: &str,
    body: &[u8],
    head: bool,
) -> std::io::Result<()> {
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes())?;
    if !head {
        stream.write_all(body)?;
    }
    stream.flush()
}

fn with_reload(html: Vec<u8>) -> Vec<u8> {
    let text = String::from_utf8_lossy(&html);
    match text.rfind("</body>") {
        Some(at) => format!("{}{RELOAD_SCRIPT}{}", &text[..at], &text[at..]).into_bytes(),
        None => html,
    }
}

fn handle(mut stream: TcpStream, out: &Path, version: &AtomicU64) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("/");
    let head = method == "HEAD";
    if method != "GET" && !head {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            "",
            b"",
            false,
        );
    }
    if target.starts_with("/__sitegen/version") {
        let body = version.load(Ordering::SeqCst).to_string();
        return respond(
            &mut stream,
            "200 OK",
            "text/plain",
            "",
            body.as_bytes(),
            head,
        );
    }
    let Some(file) = resolve(out, target) else {
        return respond(
            &mut stream,
            "400 Bad Request",
            "text/plain",
            "",
            b"bad path",
            head,
        );
    };
    if file.is_dir() {
        let location = format!("Location: {}/\r\n", target.split('?').next().unwrap_or("/"));
        return respond(
            &mut stream,
            "301 Moved Permanently",
            "text/plain",
            &location,
            b"",
            head,
        );
    }
    let name = file.to_string_lossy().into_owned();
    match std::fs::read(&file) {
        Ok(bytes) => {
            let kind = content_type(&name);
            let bytes = if kind.starts_with("text/html") {
                with_reload(bytes)
            } else {
                bytes
            };
            respond(&mut stream, "200 OK", kind, "", &bytes, head)
        }
        Err(_) => {
            let body = std::fs::read(out.join("404.html")).unwrap_or_default();
            respond(
                &mut stream,
                "404 Not Found",
                "text/html; charset=utf-8",
                "",
                &with_reload(body),
                head,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_inside_out_only() {
        let out = Path::new("/srv/out");
        assert_eq!(
            resolve(out, "/docs/a/"),
            Some(PathBuf::from("/srv/out/docs/a/index.html"))
        );
        assert_eq!(
            resolve(out, "/assets/x.css?v=1"),
            Some(PathBuf::from("/srv/out/assets/x.css"))
        );
        assert_eq!(resolve(out, "/../etc/passwd"), None);
        assert_eq!(resolve(out, "/%2e%2e/etc/passwd"), None);
        assert_eq!(resolve(out, "/.sitegen/manifest.json"), None);
        assert!(with_reload(b"<body>x</body>".to_vec()).starts_with(b"<body>x<script>"));
    }
}
