//! Network namespaces joined by veth pairs: separate hosts for tests of several servers
//! talking to each other (edges pulling from an origin). Needs root and `ip` (iproute2),
//! which CI has. Each namespace has its own loopback and ports, so a server in one listens
//! on fixed ports without meeting another test's.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Client, launched, test_pattern_args};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Namespaces made for one test, deleted on drop (also when the test panics).
pub struct Namespaces {
    names: Vec<String>,
}

fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` (install iproute2): {e}"));
    assert!(
        output.status.success(),
        "ip {} failed (these tests need root): {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Namespaces {
    /// `count` namespaces, named after this test process and a counter, loopback up.
    pub fn new(count: usize) -> Namespaces {
        let set = NEXT.fetch_add(1, Ordering::Relaxed);
        let names: Vec<String> = (0..count).map(|i| format!("rc{}-{set}-{i}", std::process::id())).collect();
        let mut made = Namespaces { names: Vec::new() };
        for name in &names {
            ip(&["netns", "add", name]);
            made.names.push(name.clone());
            ip(&["-n", name, "link", "set", "lo", "up"]);
        }
        made
    }

    pub fn name(&self, index: usize) -> &str {
        &self.names[index]
    }

    /// Joins namespaces `a` and `b` with a veth pair: `a` gets `{subnet}.1/24`, `b`
    /// `{subnet}.2/24` (such as `10.201.1`).
    pub fn link(&self, a: usize, b: usize, subnet: &str) {
        let (left, right) = (format!("to{b}"), format!("to{a}"));
        let (ns_a, ns_b) = (self.name(a), self.name(b));
        ip(&["link", "add", &left, "netns", ns_a, "type", "veth", "peer", "name", &right, "netns", ns_b]);
        for (ns, device, host) in [(ns_a, &left, 1), (ns_b, &right, 2)] {
            ip(&["-n", ns, "addr", "add", &format!("{subnet}.{host}/24"), "dev", device]);
            ip(&["-n", ns, "link", "set", device, "up"]);
        }
    }

    /// What runs a command in namespace `index`.
    pub fn launcher(&self, index: usize) -> [&str; 4] {
        ["ip", "netns", "exec", self.name(index)]
    }

    /// Runs `program args` in namespace `index`, killed on drop.
    pub fn spawn(&self, index: usize, program: &str, args: &[String], description: &str) -> Client {
        let mut all: Vec<String> = ["netns", "exec", self.name(index), program].map(str::to_owned).to_vec();
        all.extend_from_slice(args);
        Client::spawn("ip", &all, format!("{description} in {}", self.name(index)))
    }

    /// An ffmpeg test pattern published to `url` from namespace `index` for `seconds`.
    pub fn publish(&self, index: usize, url: &str, seconds: u32) -> Client {
        let mut args = test_pattern_args(seconds, (320, 240));
        args.extend(["-f", "flv", url].map(str::to_owned));
        self.spawn(index, "ffmpeg", &args, &format!("publisher of {url}"))
    }

    /// An ffmpeg player of `url` in namespace `index` that stays until killed.
    pub fn play(&self, index: usize, url: &str) -> Client {
        let args =
            ["-hide_banner", "-loglevel", "error", "-i", url, "-c", "copy", "-f", "null", "-"].map(str::to_owned);
        self.spawn(index, "ffmpeg", &args, &format!("player of {url}"))
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of each veth pair, and so the pair.
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).stdin(Stdio::null()).status();
        }
    }
}

/// `GET path` on an admin API at `addr`, from namespace `launcher` (empty: here), as JSON.
pub fn api_json(launcher: &[&str], addr: std::net::SocketAddr, path: &str) -> serde_json::Value {
    let url = format!("http://{addr}{path}");
    let output = launched(launcher, "curl")
        .args(["-s", "-m", "5", &url])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl: {e}"));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{url}: no JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)))
}
