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
    /// Validate the config, schema and policies, and that they fit together;
    /// print every problem as file:line:col. Exit 1 on any problem.
    Check {
        /// The YAML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Print Cedar's validator warnings (e.g. a policy that can never
        /// apply) without counting them as problems.
        #[arg(long)]
        allow_warnings: bool,
        /// Also report how the policy index covers the policies.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Print the Cedar schema that fits the configured issuers: the base model,
    /// every preset attribute and every `claims:` mapping (as optional String:
    /// edit the type of numbers, booleans, lists and objects).
    Schema {
        /// The YAML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Decide one request offline, through the pipeline `serve` uses, and say why.
    Explain(cli::explain::ExplainArgs),
    /// Run policy test cases (YAML) through the pipeline `serve` uses.
    Test {
        /// The YAML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Test files or directories (default: <policies.dir>/tests/).
        paths: Vec<PathBuf>,
        /// Also write JUnit XML here.
        #[arg(long)]
        junit: Option<PathBuf>,
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
        /// Signing algorithm: ES256, ES384, ES512, EdDSA (fresh keys), or
        /// RS256/384/512, PS256/384/512 (a fixed development RSA key).
        #[arg(long, default_value = "ES256")]
        alg: wisp::devtools::Algorithm,
    },
    /// An echo upstream for demos and compose: answers every request with what
    /// it received (method, path, headers) as JSON. Not for production.
    Echo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: std::net::SocketAddr,
    },
    /// Start the dev issuer, an echo upstream and the proxy on the demo config,
    /// and show an allow and a deny.
    Demo {
        /// The demo config.
        #[arg(long, short, default_value = "config/demo.yaml")]
        config: PathBuf,
    },
}

/// A log output layer for `format`. Text gets colour codes only on a terminal.
fn output_layer(
    format: LogFormat,
) -> Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync> {
    use std::io::IsTerminal as _;
    use tracing_subscriber::Layer as _;
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Json => layer.json().flatten_event(true).boxed(),
        LogFormat::Text => layer.with_ansi(std::io::stderr().is_terminal()).boxed(),
    }
}

/// Sends every log line (wisp's, and pingora's through the `log` bridge) to
/// stderr in `format`; returns how to switch the format later (a reload).
fn init_logging(format: LogFormat) -> Box<dyn Fn(LogFormat) + Send + Sync> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (output, handle) = tracing_subscriber::reload::Layer::new(output_layer(format));
    // Err only if a subscriber is already set, which cannot happen this early.
    let _ = tracing_subscriber::registry()
        .with(output)
        .with(filter)
        .try_init();
    Box::new(move |format| {
        if let Err(error) = handle.reload(output_layer(format)) {
            tracing::error!(%error, "cannot switch the log format");
        }
    })
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
            let set_log_format = init_logging(config.log.format);
            match wisp::server::serve(config, set_log_format) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Check {
            config,
            allow_warnings,
            verbose,
        } => cli::check::run(
            &config,
            cli::check::CheckOptions {
                allow_warnings,
                verbose,
            },
        ),
        Command::Schema { config } => cli::check::schema(&config),
        Command::Explain(args) => cli::explain::explain(args),
        Command::Test {
            config,
            paths,
            junit,
        } => cli::explain::test(&config, paths, junit),
        Command::DevIssuer {
            listen,
            issuer,
            audience,
            alg,
        } => {
            let _ = init_logging(LogFormat::Text);
            cli::demo::dev_issuer(listen, issuer, audience, alg)
        }
        Command::Echo { listen } => {
            let _ = init_logging(LogFormat::Text);
            cli::demo::echo(listen)
        }
        Command::Demo { config } => {
            let config = match load(&config) {
                Ok(config) => config,
                Err(code) => return code,
            };
            let set_log_format = init_logging(LogFormat::Text);
            cli::demo::run(config, set_log_format)
        }
    }
}
