//! The `printroute` command: run the daemon, check a config, route an address.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use printroute::config::{Config, EX_CONFIG};
use printroute::routing::canonical;

/// Default config file location.
const DEFAULT_CONFIG: &str = "/etc/printroute/printroute.toml";

/// Exit code when the daemon fails at run time (sysexits.h `EX_SOFTWARE`).
const EX_SOFTWARE: u8 = 70;

/// Exit code when a listener cannot be bound or the store cannot be opened (sysexits.h `EX_OSERR`).
const EX_OSERR: u8 = 71;

#[derive(Parser)]
#[command(
    name = "printroute",
    version,
    about = "Multi-tenant print routing daemon",
    long_about = "Multi-tenant print routing daemon: RAW, LPD and IPP jobs from many tenants arrive on shared \
ports; each is routed by its source address to its tenant's workflow (forward, hold, store).",
    after_help = "Examples:\n  printroute serve --config /etc/printroute/printroute.toml\n  \
printroute check /etc/printroute/printroute.toml\n  printroute which 10.1.2.3 --config /etc/printroute/printroute.toml"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (SIGHUP reloads the config, SIGTERM stops).
    #[command(after_help = "Example:\n  printroute serve --config config/printroute.toml")]
    Serve {
        /// The config file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Validate a config file: prints "ok" and a summary, or every error (exit 78).
    #[command(
        after_help = "Example:\n  printroute check /etc/printroute/printroute.toml && systemctl reload printroute"
    )]
    Check {
        /// The config file.
        #[arg(default_value = DEFAULT_CONFIG)]
        file: PathBuf,
    },
    /// Show which tenant and range an address routes to.
    #[command(
        after_help = "Examples:\n  printroute which 10.1.2.3\n  printroute which ::ffff:10.1.2.3 --config my.toml"
    )]
    Which {
        /// An IPv4 or IPv6 address.
        address: IpAddr,
        /// The config file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { file } => match Config::load(&file) {
            Ok(c) => {
                for w in &c.warnings {
                    eprintln!("warning: {}: {w}", file.display());
                }
                println!("ok: {}: {}", file.display(), c.summary());
                ExitCode::SUCCESS
            }
            Err(e) => config_error(&e),
        },
        Command::Which { address, config } => match Config::load(&config) {
            Ok(c) => {
                let ip = canonical(address);
                match c.routing_table().route(ip) {
                    Some(r) => {
                        let t = &c.tenants[r.tenant as usize];
                        println!("{ip}: tenant {} ({}) by range {}", t.id, t.name, r.range);
                    }
                    None => println!("{ip}: no tenant (connections from it are refused)"),
                }
                ExitCode::SUCCESS
            }
            Err(e) => config_error(&e),
        },
        Command::Serve { config } => serve(config),
    }
}

fn config_error(e: &printroute::config::ConfigError) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(EX_CONFIG as u8)
}

fn serve(path: PathBuf) -> ExitCode {
    init_logging();
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("config refused:\n{e}");
            return ExitCode::from(EX_CONFIG as u8);
        }
    };
    // Bind in main, serve in the library.
    let bound = match printroute::daemon::bind_all(&config) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(EX_OSERR);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::from(EX_SOFTWARE);
        }
    };
    match runtime.block_on(printroute::daemon::run(config, bound)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ printroute::daemon::DaemonError::Bind { .. })
        | Err(e @ printroute::daemon::DaemonError::Store(_)) => {
            tracing::error!("{e}");
            ExitCode::from(EX_OSERR)
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(EX_SOFTWARE)
        }
    }
}

fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("PRINTROUTE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
