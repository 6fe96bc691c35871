//! The `wisp` binary: CLI dispatch. `anyhow` lives only here, at the edge.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use wisp::config::{Config, LogFormat};

mod cli;

/// jemalloc, for memory: every cached token holds a few small long-lived
/// allocations made between the verification path's short-lived ones, and
/// glibc's arenas left ~40% of their memory free around them (see the
/// comment in Cargo.toml).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// wisp — workload identity sidecar proxy.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy and its admin listener.
    Serve {
        /// The YAML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate the config, schema and policies; print every problem as file:line:col.
    Check {
        /// The YAML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run a local development OIDC issuer (discovery, JWKS, POST /token). Not for production.
    DevIssuer {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9400")]
        listen: std::net::SocketAddr,
        /// The `iss` to put in tokens (default: http://<listen>).
        #[arg(long)]
        issuer: Option<String>,
        /// The default `aud` of minted tokens.
        #[arg(long, default_value = "demo")]
        audience: String,
    },
    /// Start the dev issuer, an echo upstream and the proxy on the demo config,
    /// and show an allow and a deny.
    Demo {
        /// The demo config.
        #[arg(long, short, default_value = "config/demo.yaml")]
        config: PathBuf,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Err only if a subscriber is already set, which cannot happen this early.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|error| {
        eprintln!("error: {error}");
        ExitCode::from(1)
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Command::Serve { config } => {
            let config = match load(&config) {
                Ok(config) => config,
                Err(code) => return code,
            };
            init_logging(config.log.format);
            match wisp::server::serve(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Check { config } => cli::check::run(&config),
        Command::DevIssuer {
            listen,
            issuer,
            audience,
        } => {
            init_logging(LogFormat::Text);
            cli::demo::dev_issuer(listen, issuer, audience)
        }
        Command::Demo { config } => {
            let config = match load(&config) {
                Ok(config) => config,
                Err(code) => return code,
            };
            init_logging(LogFormat::Text);
            cli::demo::run(config)
        }
    }
}
