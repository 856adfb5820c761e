//! Credentials out of logs, metrics, API answers and config errors: the one place that decides
//! what of a hook URL or header may be shown.
//!
//! Webhook and callback URLs carry secrets in two places, `user:password@` and query values
//! (`?key=...`, bintu/nginx-rtmp style); header values (`Authorization: Bearer ...`) are
//! secrets by their nature. Everything that prints one of these goes through here, so a new
//! log line cannot forget a case the others handle.

/// What replaces a secret.
pub const MASK: &str = "***";

/// `url` fit to print: a userinfo password becomes `***` (`http://user:***@host/`), a userinfo
/// without a password too (`http://***@host/`: a lone userinfo is usually a token), every
/// query value becomes `***` with its key kept (`?key=***&debug`), and a fragment becomes
/// `#***`. Scheme, host, port and path stay, so an operator can still tell sinks apart.
///
/// Works on any text, URL or not: what it does not recognise it leaves alone, so it never
/// fails and never panics.
pub fn url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(authority_end);
    let mut out = String::with_capacity(url.len());
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    // The last '@' ends the userinfo: a password may hold an unescaped '@'.
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if scheme.is_some() => {
            if let Some((user, _password)) = userinfo.split_once(':') {
                out.push_str(user);
                out.push(':');
            }
            out.push_str(MASK);
            out.push('@');
            out.push_str(host);
        }
        _ => out.push_str(authority),
    }
    let (before_fragment, fragment) = match after.split_once('#') {
        Some((before, fragment)) => (before, Some(fragment)),
        None => (after, None),
    };
    let (path, query) = match before_fragment.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (before_fragment, None),
    };
    out.push_str(path);
    if let Some(query) = query {
        out.push('?');
        out.push_str(&query_values(query));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        if !fragment.is_empty() {
            out.push_str(MASK);
        }
    }
    out
}

/// `a=1&b&c=` with every value masked: `a=***&b&c=***`. Keys stay: they say what is configured
/// without saying what it is.
fn query_values(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((key, _value)) => {
                out.push_str(key);
                out.push('=');
                out.push_str(MASK);
            }
            None => out.push_str(pair),
        }
    }
    out
}

/// `text` (an error message, a redirect reason) with every occurrence of `url` replaced by its
/// redacted form: for messages built by code that did not know the URL was secret (an HTTP
/// client's error quoting the URI it failed on).
pub fn in_text(text: &str, url: &str) -> String {
    if url.is_empty() || !text.contains(url) {
        return text.to_owned();
    }
    text.replace(url, &self::url(url))
}

/// A request header as shown by the admin API: `Name: ***`. The name says what is configured;
/// the value is write-only (set it again to change it).
pub fn header(name: &str) -> String {
    format!("{name}: {MASK}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_query_values_and_fragments_are_masked() {
        let cases = [
            ("http://user:pw@example.com/hook", "http://user:***@example.com/hook"),
            // The last '@' ends the userinfo.
            ("https://user:p@ss@example.com:8443/", "https://user:***@example.com:8443/"),
            ("http://tok3n@example.com", "http://***@example.com"),
            ("HTTP://u:@h", "HTTP://u:***@h"),
            ("http://h/p?key=s3cret&x=1", "http://h/p?key=***&x=***"),
            ("http://h/p?flag&empty=", "http://h/p?flag&empty=***"),
            ("http://h?a=1#frag", "http://h?a=***#***"),
            ("http://h/p#", "http://h/p#"),
            ("http://u:pw@h:1/p?k=v#f", "http://u:***@h:1/p?k=***#***"),
        ];
        for (given, shown) in cases {
            assert_eq!(url(given), shown, "{given}");
        }
    }

    #[test]
    fn urls_without_secrets_are_unchanged() {
        for plain in ["http://127.0.0.1:9000/on_publish", "https://example.com", "http://[::1]:80/a/b", ""] {
            assert_eq!(url(plain), plain);
        }
        // Not a URL: an '@' outside an authority is not a userinfo.
        assert_eq!(url("/opt/hooks/a@b.sh"), "/opt/hooks/a@b.sh");
        assert_eq!(url("mail@example.com"), "mail@example.com");
    }

    #[test]
    fn secrets_in_text_are_replaced() {
        let secret = "http://u:pw@h/p?key=k";
        assert_eq!(in_text(&format!("bad uri: {secret}: no"), secret), "bad uri: http://u:***@h/p?key=***: no");
        assert_eq!(in_text("io: refused", secret), "io: refused");
        assert_eq!(in_text("x", ""), "x");
    }

    #[test]
    fn headers_keep_their_name() {
        assert_eq!(header("Authorization"), "Authorization: ***");
    }
}
