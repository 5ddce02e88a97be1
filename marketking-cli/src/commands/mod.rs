//! Subcommands. [`run`] opens the store (when the command needs one) and dispatches.

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;

use crate::args::{Cli, Command};
use crate::config::{open_store, Access};

mod admin;
mod demo;
mod docs;
mod export;
mod jobs;
pub(crate) mod model;
mod search;

/// Runs one command; errors become `error: ...` and exit code 1 in `main`.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let global = cli.global;
    if let Command::Completions { shell } = cli.command {
        let mut cmd = Cli::command();
        let mut out = std::io::stdout().lock();
        clap_complete::generate(shell, &mut cmd, "marketking", &mut out);
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    // `model ...` needs no store.
    let command = match cli.command {
        Command::Model(cmd) => {
            let mut out = std::io::stdout().lock();
            let code = model::run(&mut out, cmd).await?;
            out.flush()?;
            return Ok(code);
        }
        other => other,
    };
    let mut global = global;
    if let Some(file) = crate::config_file::load()? {
        file.apply(&mut global);
    }
    let access = match command {
        Command::Search(_)
        | Command::Similar(_)
        | Command::Get(_)
        | Command::List(_)
        | Command::Ping
        | Command::Stats(_)
        | Command::Export(_)
        | Command::Count(_)
        | Command::Jobs(_) => Access::Read,
        _ => Access::Write,
    };
    let store = open_store(&global, access).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let ran: anyhow::Result<ExitCode> = async {
        Ok(match command {
            Command::Demo => demo::run(&store, &mut out, global.quiet).await?,
            Command::Create(a) => docs::create(&store, &mut out, a).await?,
            Command::Import(a) => docs::import(&store, &mut out, a, global.quiet, global.redis_url.as_deref()).await?,
            Command::Export(a) => export::run(&store, &mut out, a, global.quiet).await?,
            Command::Search(a) => search::search(&store, &mut out, a).await?,
            Command::Similar(a) => search::similar(&store, &mut out, a).await?,
            Command::Get(a) => docs::get(&store, &mut out, a).await?,
            Command::Update(a) => docs::update(&store, &mut out, a).await?,
            Command::List(a) => docs::list(&store, &mut out, a).await?,
            Command::Delete(a) => docs::delete(&store, &mut out, a, global.quiet).await?,
            Command::Count(a) => docs::count(&store, &mut out, a).await?,
            Command::Stats(a) => admin::stats(&store, &mut out, a.json).await?,
            Command::Index(c) => admin::index(&store, &mut out, c).await?,
            Command::Tune(a) => admin::tune(&store, &mut out, a).await?,
            Command::Migrate => admin::migrate(&store, &mut out).await?,
            Command::Analyze => admin::analyze(&store, &mut out, global.quiet).await?,
            Command::Ping => admin::ping(&store, &mut out).await?,
            Command::Worker(a) => jobs::worker(&store, &mut out, a, global.quiet, global.redis_url.as_deref()).await?,
            Command::Jobs(c) => jobs::run(&store, &mut out, c, global.redis_url.as_deref()).await?,
            Command::Completions { .. } | Command::Model(_) => unreachable!("handled above"),
        })
    }
    .await;
    // Every command closes the store before it exits: connections (or the file and its lock)
    // are released now, and a failure to do so is an error, not a log line at exit.
    let closed = store.close().await;
    let code = ran?;
    closed?;
    out.flush()?;
    Ok(code)
}
