//! The `ringcast` binary: parse the configuration, set up logging, run the shards.

use std::process::ExitCode;

use ringcast::config::{Config, Loaded};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = match Config::from_args(std::env::args_os()) {
        Ok(Loaded::Run(config)) => config,
        Ok(Loaded::Exit { message, code }) => {
            print!("{message}");
            return ExitCode::from(code as u8);
        }
        Err(error) => {
            eprintln!("ringcast: {error}");
            return ExitCode::from(2);
        }
    };
    if let Some(what) = unsupported_hooks(&config) {
        // Silently ignoring an on_publish callback would admit every publisher: refuse instead.
        eprintln!(
            "ringcast: {what} is configured, but this build does not run hooks yet; remove it to start"
        );
        return ExitCode::from(2);
    }
    let json = config.log_format == ringcast::config::LogFormat::Json;
    ringcast::logging::init(config.log_level.as_str(), json);
    match ringcast::server::run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error @ ringcast::server::ServerError::Bind { .. }) => {
            eprintln!("ringcast: {error}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("ringcast: {error}");
            ExitCode::from(1)
        }
    }
}

/// The event sinks this build accepts in the config but cannot honour yet.
fn unsupported_hooks(config: &Config) -> Option<&'static str> {
    if !config.webhooks.is_empty() {
        Some("a [[webhook]] sink")
    } else if !config.scripts.is_empty() {
        Some("a [[script]] sink")
    } else if config.stdio.is_some() {
        Some("the [stdio] sink")
    } else {
        None
    }
}
