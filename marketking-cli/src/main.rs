//! `marketking`: the command-line tool of MarketKing.
//!
//! `main` parses the arguments, sets up logging and runs [`commands::run`]; every error ends up
//! as one `error: ...` line on stderr and exit code 1, or 3 for a document or key that does not
//! exist (clap reports usage errors with 2).
// Nothing that came from a file, the network or storage may panic the tool: no unwrap, expect,
// unchecked indexing or explicit panic outside tests.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

mod args;
mod commands;
mod config;
mod config_file;
mod import;
mod output;

fn main() -> ExitCode {
    let matches = args::Cli::command().get_matches();
    let mut cli = args::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // `--db-path` on the command line means the embedded store even when DATABASE_URL is in
    // the environment (flags win); `config::open_store` applies it.
    if from_command_line(&matches, "db_path") && !from_command_line(&matches, "database_url") {
        cli.global.embedded_only = true;
        cli.global.database_url = None;
    }
    cli.global.apply_env();
    init_tracing(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return report(anyhow::Error::new(e).context("cannot start the async runtime")),
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => report(e),
    }
}

/// Prints the error chain on one line and returns exit code 1. A closed stdout (`| head`) is
/// not an error.
fn report(e: anyhow::Error) -> ExitCode {
    let broken_pipe = e.chain().any(|c| {
        let kind = match c.downcast_ref::<std::io::Error>() {
            Some(io) => Some(io.kind()),
            None => c.downcast_ref::<serde_json::Error>().and_then(|j| j.io_error_kind()),
        };
        kind == Some(std::io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        return ExitCode::SUCCESS;
    }
    let msg = format!("{e:#}").replace('\n', " ");
    eprintln!("error: {msg}");
    // "Not found" has its own code, so scripts can tell a missing document from a failure.
    let not_found = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<marketking_core::Error>(),
            Some(
                marketking_core::Error::NotFound { .. }
                    | marketking_core::Error::KeyNotFound { .. }
                    | marketking_core::Error::JobNotFound { .. },
            )
        )
    });
    ExitCode::from(if not_found { EXIT_NOT_FOUND } else { 1 })
}

/// Exit code of a missing document or key (0 ok, 1 runtime error, 2 usage error).
const EXIT_NOT_FOUND: u8 = 3;

fn init_tracing(global: &args::GlobalArgs) {
    use tracing_subscriber::EnvFilter;
    let default = if global.verbose {
        "marketking=debug,marketking_core=debug,info"
    } else if global.quiet {
        "error"
    } else {
        "warn"
    };
    let filter = if global.verbose {
        EnvFilter::new(default)
    } else {
        EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(default))
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match global.log_format {
        // Colour only on a terminal: a log written to a file or a pipe keeps no escape codes.
        args::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(global.verbose)
            .try_init(),
        args::LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
}

/// Whether a (global) argument was given on the command line, before or after the subcommand.
fn from_command_line(m: &ArgMatches, id: &str) -> bool {
    m.value_source(id) == Some(ValueSource::CommandLine)
        || m.subcommand().is_some_and(|(_, sub)| from_command_line(sub, id))
}
