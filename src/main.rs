//! The `ringcast` binary: parse the configuration, set up logging, run the shards.

use std::process::ExitCode;

use ringcast::config::{Config, Loaded};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // No transparent huge pages for this process. mimalloc gives every thread its own heap,
    // and with THP each new heap's first touch zeroes a 2 MiB page: a callback storm that
    // grows the hook pool by hundreds of threads spent most of its CPU clearing pages
    // (perf: clear_page_erms under mi_page_free_list_extend). It also keeps idle RSS honest.
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    // `ringcast hooks test ...` tries a receiver and exits; it starts no server.
    if std::env::args_os().nth(1).is_some_and(|command| command == "hooks") {
        return ExitCode::from(ringcast::hooks::tester::run(std::env::args_os().skip(1)));
    }
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
    let json = config.log_format == ringcast::config::LogFormat::Json;
    ringcast::logging::init(config.log_level.as_str(), json);
    // SAFETY: no other thread exists yet (the shards start in server::run).
    let notifier = unsafe { ringcast::server::systemd::Notifier::take_from_env() };
    match ringcast::server::preflight::check(config.max_connections, config.shards) {
        Ok(warnings) => {
            for warning in warnings {
                tracing::warn!("{warning}");
            }
        }
        Err(error) => {
            eprintln!("ringcast: {error}");
            return ExitCode::from(1);
        }
    }
    match ringcast::server::run(&config, notifier) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error @ (ringcast::server::ServerError::Bind { .. } | ringcast::server::ServerError::Outbox(_))) => {
            eprintln!("ringcast: {error}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("ringcast: {error}");
            ExitCode::from(1)
        }
    }
}
