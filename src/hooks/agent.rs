//! The HTTP agent every blocking hook request goes out on (webhook deliveries, `https://`
//! callbacks): one `User-Agent`, one TLS trust (`tls_ca_file` beside the system roots), one
//! resolver that answers IP literals without a thread ([`super::resolver`]). Plain-HTTP
//! callbacks run on the shards' own rings and only share [`USER_AGENT`].

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};

use super::resolver;

/// `User-Agent` of every hook request, callbacks included.
pub const USER_AGENT: &str = concat!("ringcast/", env!("CARGO_PKG_VERSION"));

/// Where the system CA bundle lives on the common Linux families, first match wins. Used only
/// with `tls_ca_file`, to trust the system roots *and* the private CA (see [`agent`]).
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Why an agent could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read TLS CA file {}: {source}", path.display())]
    CaFileRead { path: PathBuf, source: io::Error },
    #[error("TLS CA file {} is not valid PEM: {reason}", path.display())]
    CaFilePem { path: PathBuf, reason: String },
    #[error("TLS CA file {} holds no certificate", path.display())]
    CaFileEmpty { path: PathBuf },
}

/// The HTTP agent webhook workers share (the https callback pool builds its own with
/// [`agent_with`]): keep-alive connection pool, `timeout` for a whole
/// request (connect to last response byte), redirects never followed, every status returned as
/// a response rather than an error, `User-Agent: ringcast/<version>`.
///
/// TLS is rustls. Without `tls_ca_file` the platform verifier checks certificates (the system
/// trust store, as every other program on the host). With it, the roots are the system CA
/// bundle file (`SSL_CERT_FILE` or the usual Linux paths) plus every certificate in
/// `tls_ca_file`: ureq's platform verifier cannot take extra roots, and a private CA must not
/// make public receivers unreachable. HTTP(S) proxies are taken from the environment
/// (`HTTPS_PROXY`, `NO_PROXY`...), as ureq does by default.
pub fn agent(timeout: Duration, tls_ca_file: Option<&Path>) -> Result<ureq::Agent, Error> {
    // hook_concurrency is at most 1024, but usually all workers talk to a handful of hosts.
    Ok(agent_with(timeout, trust(tls_ca_file)?, 128, 32))
}

/// Per-connection buffers of the hook agents. ureq's defaults are 128 KiB each; a storm keeps
/// one pooled connection per request in flight, and 2000 of them at 256 KiB were 500 MiB of
/// RSS, its page zeroing a large part of the storm's CPU. Hook replies are a status line and
/// a few headers.
const INPUT_BUFFER: usize = 16 * 1024;
const OUTPUT_BUFFER: usize = 8 * 1024;

/// [`agent`]'s settings with these roots, keeping up to `max_idle` idle connections
/// (`per_host` to one host).
pub fn agent_with(timeout: Duration, roots: RootCerts, max_idle: usize, per_host: usize) -> ureq::Agent {
    let tls = TlsConfig::builder().provider(TlsProvider::Rustls).root_certs(roots).build();
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .http_status_as_error(false)
        .input_buffer_size(INPUT_BUFFER)
        .output_buffer_size(OUTPUT_BUFFER)
        .user_agent(USER_AGENT)
        .max_idle_connections(max_idle)
        .max_idle_connections_per_host(per_host)
        .tls_config(tls)
        .build();
    resolver::agent(config)
}

/// The roots hook requests trust: see [`agent`].
pub fn trust(tls_ca_file: Option<&Path>) -> Result<RootCerts, Error> {
    Ok(match tls_ca_file {
        None => RootCerts::PlatformVerifier,
        Some(path) => {
            let mut certs = system_roots();
            let private = read_certs(path)?;
            if private.is_empty() {
                return Err(Error::CaFileEmpty { path: path.to_owned() });
            }
            if certs.is_empty() {
                tracing::warn!(
                    ca_file = %path.display(),
                    "no system CA bundle found: webhooks trust only the private CA"
                );
            }
            certs.extend(private);
            RootCerts::from(certs)
        }
    })
}

fn read_certs(path: &Path) -> Result<Vec<Certificate<'static>>, Error> {
    let pem = std::fs::read(path).map_err(|source| Error::CaFileRead { path: path.to_owned(), source })?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => {
                return Err(Error::CaFilePem { path: path.to_owned(), reason: e.to_string() });
            }
        }
    }
    Ok(certs)
}

/// The system CA bundle as certificates; empty if none is found or it does not parse.
fn system_roots() -> Vec<Certificate<'static>> {
    let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let candidates = env.into_iter().chain(SYSTEM_CA_BUNDLES.iter().map(PathBuf::from));
    for path in candidates {
        if let Ok(certs) = read_certs(&path)
            && !certs.is_empty()
        {
            return certs;
        }
    }
    Vec::new()
}
