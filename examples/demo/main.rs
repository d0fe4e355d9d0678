//! The newcomer's first run: `cargo run --release --example demo`.
//!
//! Starts a small demo web app on 127.0.0.1:8088 (`app.rs`: a page, a JSON health endpoint, a
//! form login with a CSRF token and a session cookie, a second account with a TOTP code, a JSON
//! API with a bearer token, and controls to make it slow or failing), a job queue when
//! redis-server is installed (`jobs.rs`: redis-server, a producer and a worker in Sidekiq's
//! layout), and canaryd on 127.0.0.1:9464 monitoring them with `checks/demo.yaml`,
//! `examples/demo/checks.yaml` and `examples/demo/jobs.yaml` (`launch.rs`). Every few seconds it
//! prints each check's state, so you can watch a check fail when you break the app.

mod app;
mod jobs;
mod launch;
mod pager;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// The canaryd demo: a web app with a job queue, and canaryd monitoring it.
#[derive(Parser)]
struct Args {
    /// Port of the demo app on 127.0.0.1.
    #[arg(long, default_value_t = 8088)]
    app_port: u16,
    /// Port of canaryd's API and /metrics on 127.0.0.1.
    #[arg(long, default_value_t = 9464)]
    canaryd_port: u16,
    /// Port of canaryd's public status page on 127.0.0.1.
    #[arg(long, default_value_t = 9465)]
    status_port: u16,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let opts = launch::Options {
        app: SocketAddr::from((Ipv4Addr::LOCALHOST, args.app_port)),
        canaryd: SocketAddr::from((Ipv4Addr::LOCALHOST, args.canaryd_port)),
        status: SocketAddr::from((Ipv4Addr::LOCALHOST, args.status_port)),
    };
    let demo = match launch::start(opts).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::from(1);
        }
    };
    println!("{}", demo.banner());

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| eprintln!("demo: SIGTERM will not stop the demo cleanly: {e}"))
        .ok();
    let sigterm = async {
        match terminate.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sigterm);
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => print!("{}", demo.status()),
            _ = tokio::signal::ctrl_c() => break,
            _ = &mut sigterm => break,
        }
    }
    demo.stop().await;
    ExitCode::SUCCESS
}
