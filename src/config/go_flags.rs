//! go-rtmp's command line, accepted as it is: its single-dash flags (`-listen :1935`,
//! `-hook-webhook EVENT=URL`, ...) are rewritten to ringcast's own before clap reads them
//! (docs/hooks.md, "go-rtmp's command line").
//!
//! Clap reads `-hook-webhook` as the short flags `-h -o -o -k ...`, so without this it prints
//! the help page. Go's `flag` package takes `-name value`, `-name=value`, `--name value` and
//! `--name=value` alike; so does this rewrite, for go-rtmp's names only. Everything else
//! passes through untouched, so ringcast's own flags and their errors are unchanged.

use std::ffi::OsString;

/// go-rtmp's flag names and ringcast's flag for each (the same meaning, docs/hooks.md).
const ALIASES: &[(&str, &str)] = &[
    ("listen", "--rtmp-listen"),
    ("hook-webhook", "--hook-webhook"),
    ("hook-script", "--hook-script"),
    ("hook-stdio-format", "--hook-stdio-format"),
    ("hook-timeout", "--hook-timeout"),
    ("hook-concurrency", "--hook-concurrency"),
];

/// ringcast's flags that take no value: the word after any other flag is its value, never a
/// flag, so it is not rewritten even if it looks like one.
const SWITCHES: &[&str] = &["--check", "--help", "-h", "--version", "-V"];

/// ringcast's spelling of a go-rtmp flag (`-listen` or `--listen`, with or without `=value`),
/// or `None` if `arg` is not one.
fn alias_of(arg: &str) -> Option<String> {
    let name = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    let (name, value) = match name.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (name, None),
    };
    let (_, ours) = ALIASES.iter().find(|(go, _)| *go == name)?;
    Some(match value {
        Some(value) => format!("{ours}={value}"),
        None => (*ours).to_owned(),
    })
}

/// `args` (program name first) with go-rtmp's flags spelled as ringcast's.
pub fn rewrite<I, T>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut out = Vec::new();
    let mut args = args.into_iter().map(Into::into);
    out.extend(args.next());
    let mut value_next = false;
    let mut rest_are_operands = false;
    for arg in args {
        if value_next || rest_are_operands {
            value_next = false;
            out.push(arg);
            continue;
        }
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            rest_are_operands = true;
            out.push(arg);
            continue;
        }
        let flag = alias_of(text).unwrap_or_else(|| text.to_owned());
        value_next = flag.starts_with('-') && !flag.contains('=') && !SWITCHES.contains(&flag.as_str());
        out.push(OsString::from(flag));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(args: &[&str]) -> Vec<String> {
        rewrite(args.iter().copied()).into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn go_rtmp_flags_become_ringcast_flags() {
        let go = [
            "rtmp-server",
            "-listen",
            ":1935",
            "-hook-stdio-format",
            "json",
            "-hook-webhook",
            "publish_start=https://api.example.com/on-publish",
            "-hook-script",
            "connection_accept=/opt/scripts/on-connect.sh",
            "-hook-timeout",
            "30s",
            "-hook-concurrency=10",
        ];
        assert_eq!(
            rewritten(&go),
            [
                "rtmp-server",
                "--rtmp-listen",
                ":1935",
                "--hook-stdio-format",
                "json",
                "--hook-webhook",
                "publish_start=https://api.example.com/on-publish",
                "--hook-script",
                "connection_accept=/opt/scripts/on-connect.sh",
                "--hook-timeout",
                "30s",
                "--hook-concurrency=10",
            ]
        );
        assert_eq!(rewritten(&["r", "--listen=:1935"]), ["r", "--rtmp-listen=:1935"]);
    }

    #[test]
    fn values_operands_and_other_flags_pass_through() {
        // A value that looks like a go-rtmp flag stays a value.
        assert_eq!(rewritten(&["r", "--on-play", "-listen"]), ["r", "--on-play", "-listen"]);
        assert_eq!(rewritten(&["r", "--check", "-listen", ":1"]), ["r", "--check", "--rtmp-listen", ":1"]);
        assert_eq!(rewritten(&["r", "--", "-listen"]), ["r", "--", "-listen"]);
        assert_eq!(rewritten(&["r", "-h", "-c", "f.toml"]), ["r", "-h", "-c", "f.toml"]);
        assert_eq!(rewritten(&["r", "-listener", "x"]), ["r", "-listener", "x"]);
    }
}
