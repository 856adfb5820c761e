//! Checks the layering invariants of ARCHITECTURE.md on the source text (an import that
//! breaks one compiles fine): `protocol/` never touches a socket, a clock or a runtime; the
//! hub knows no wire format; a connection's lifecycle owns no socket and knows no wire
//! format; each layer imports only the layers below it.

use std::fs;
use std::path::Path;

/// Paths a sans-IO module must not name.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "tokio_uring",
    "std::net",
    "std::fs",
    "std::thread",
    "std::time",
    "Instant::now",
    "SystemTime",
    "socket2",
    "crossbeam",
    "libc::",
    "crate::server",
    "crate::session",
    "crate::hub",
    "crate::config",
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The Rust files under `src/<dir>` (or the one file `src/<dir>`), and the lines whose code
/// (not comments) names one of `forbidden`.
fn offences(dir: &str, forbidden: &[&str]) -> (Vec<std::path::PathBuf>, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
    let mut files = Vec::new();
    if root.is_dir() {
        rust_files(&root, &mut files);
    } else {
        files.push(root.clone());
    }
    let mut found = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).expect("readable source");
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if forbidden.iter().any(|forbidden| code.contains(forbidden)) {
                found.push(format!("{}:{}: {}", file.display(), number + 1, line.trim()));
            }
        }
    }
    (files, found)
}

#[test]
fn the_hub_knows_no_wire_format() {
    let (files, found) = offences("hub", &["protocol::rtmp", "rtmp::", "crate::session"]);
    assert!(!files.is_empty());
    assert!(found.is_empty(), "hub/ must not build a protocol's wire form:\n{}", found.join("\n"));
}

#[test]
fn a_lifecycle_owns_no_socket_and_knows_no_wire_format() {
    let (files, found) =
        offences("session/lifecycle.rs", &["protocol::rtmp", "tokio_uring", "TcpStream", "std::net::Tcp"]);
    assert!(!files.is_empty());
    assert!(found.is_empty(), "session/lifecycle.rs must stay protocol-neutral:\n{}", found.join("\n"));
}

#[test]
fn protocol_imports_no_runtime_socket_or_clock() {
    let (files, offences) = offences("protocol", FORBIDDEN);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/protocol");
    assert!(files.len() >= 5, "expected the protocol sources under {root:?}");
    assert!(offences.is_empty(), "protocol/ must stay sans-IO:\n{}", offences.join("\n"));
}

/// The crate's layers from the top; each may import only layers after it (`src/lib.rs`).
/// `protocol`, `redact` and `logging` are leaves.
const LAYERS: &[&str] = &["server", "api", "session", "hooks", "hub", "config", "protocol", "redact", "logging"];

#[test]
fn layers_import_only_the_layers_below_them() {
    let mut found = Vec::new();
    for (index, layer) in LAYERS.iter().enumerate() {
        let source = if Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(layer).is_dir() {
            layer.to_string()
        } else {
            format!("{layer}.rs")
        };
        let above: Vec<String> = LAYERS[..index].iter().map(|upper| format!("crate::{upper}")).collect();
        let above: Vec<&str> = above.iter().map(String::as_str).collect();
        let (files, offences) = offences(&source, &above);
        assert!(!files.is_empty(), "no sources for layer {layer}");
        found.extend(offences);
    }
    assert!(found.is_empty(), "a layer imports one above it (src/lib.rs lists the order):\n{}", found.join("\n"));
}
