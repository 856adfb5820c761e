//! Checks the first invariant of ARCHITECTURE.md: `protocol/` never touches a socket, a
//! clock or a runtime. A protocol module that imported one would compile fine and quietly
//! stop being testable byte-for-byte, so the check is on the source text.

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

#[test]
fn protocol_imports_no_runtime_socket_or_clock() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/protocol");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() >= 5, "expected the protocol sources under {root:?}");
    let mut offences = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).expect("readable source");
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for forbidden in FORBIDDEN {
                if code.contains(forbidden) {
                    offences.push(format!("{}:{}: {}", file.display(), number + 1, line.trim()));
                }
            }
        }
    }
    assert!(offences.is_empty(), "protocol/ must stay sans-IO:\n{}", offences.join("\n"));
}
