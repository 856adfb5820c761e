//! Name resolution for hook requests without a thread per request.
//!
//! ureq resolves the URL on every request, before it looks in its keep-alive pool, and with a
//! timeout set its default resolver spawns a thread for each lookup. Hook endpoints are very
//! often IP literals (`http://127.0.0.1:9000/auth`); for those a thread spawn per callback
//! was most of a callback's CPU in a connect storm. This resolver answers IP literals at once
//! and hands real names to ureq's default resolver (threaded, so its timeout still holds).

use std::net::{IpAddr, SocketAddr};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

#[derive(Debug, Default)]
pub struct LiteralFirstResolver {
    fallback: DefaultResolver,
}

impl Resolver for LiteralFirstResolver {
    fn resolve(&self, uri: &Uri, config: &Config, timeout: NextTimeout) -> Result<ResolvedSocketAddrs, ureq::Error> {
        if let Some(addr) = literal(uri) {
            let mut addrs = self.empty();
            addrs.push(addr);
            return Ok(addrs);
        }
        self.fallback.resolve(uri, config, timeout)
    }
}

/// The socket address of a URL whose host is an IP literal, port included or defaulted.
fn literal(uri: &Uri) -> Option<SocketAddr> {
    let host = uri.host()?;
    let ip: IpAddr = host.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
    let port = uri.port_u16().or_else(|| match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    })?;
    Some(SocketAddr::new(ip, port))
}

/// An agent for `config` that resolves IP literals without a thread.
pub fn agent(config: Config) -> ureq::Agent {
    ureq::Agent::with_parts(config, DefaultConnector::default(), LiteralFirstResolver::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_resolve_without_lookup() {
        let uri: Uri = "http://127.0.0.1:9000/auth".parse().unwrap();
        assert_eq!(literal(&uri), Some("127.0.0.1:9000".parse().unwrap()));
        let uri: Uri = "https://[::1]/x".parse().unwrap();
        assert_eq!(literal(&uri), Some("[::1]:443".parse().unwrap()));
        let uri: Uri = "http://localhost:80/".parse().unwrap();
        assert_eq!(literal(&uri), None);
    }
}
