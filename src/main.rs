//! The `printroute` command: run the daemon, check a config, route an address.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use printroute::admin::control::Request;
use printroute::config::{Config, EX_CONFIG};
use printroute::routing::canonical;
use serde_json::Value;

/// Default config file location.
const DEFAULT_CONFIG: &str = "/etc/printroute/printroute.toml";

/// Raises the soft limit of open files to the hard one: every connection,
/// spool file, tenant spool folder and device connection takes a
/// descriptor, and the default soft limit (1024) would cap the daemon near
/// a thousand idle connections. Logs the limit in force.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => limit = raised,
            Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
        }
    }
    let show = |v: Option<u64>| v.map_or("unlimited".to_owned(), |n| n.to_string());
    tracing::info!(
        soft = show(limit.current),
        hard = show(limit.maximum),
        "open-file limit (RLIMIT_NOFILE)"
    );
}

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
printroute check /etc/printroute/printroute.toml\n  printroute which 10.1.2.3 --config /etc/printroute/printroute.toml\n  \
printroute jobs --tenant acme --state held\n  printroute release acme/12 --to floor2\n\n\
Admin commands talk to the running daemon over its control socket; the daemon \
decides what the calling unix user may see: root and members of global.admin-groups \
see everything, a tenant's admins only their tenant."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How the admin commands reach the daemon.
#[derive(clap::Args)]
struct Control {
    /// The config file naming the control socket.
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// The control socket (overrides the config's global.control-socket).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Print the daemon's answer as JSON, for scripts.
    #[arg(long)]
    json: bool,
    /// On a node of a scale-out installation: its name (its control socket
    /// may differ from the global one).
    #[arg(long, env = "PRINTROUTE_NODE")]
    node: Option<String>,
}

/// A job named as TENANT/ID.
#[derive(Clone, Debug)]
struct JobRef {
    tenant: String,
    id: u32,
}

impl std::str::FromStr for JobRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (t, id) = s
            .split_once('/')
            .ok_or("write a job as TENANT/ID, e.g. acme/12")?;
        let id = id.parse().map_err(|_| format!("{id:?} is not a job id"))?;
        Ok(JobRef {
            tenant: t.to_owned(),
            id,
        })
    }
}

/// What `export` writes.
#[derive(Subcommand)]
enum Export {
    /// HAProxy in front of the nodes: haproxy.cfg (a frontend per listener,
    /// a backend per node and listener, PROXY v2 to the nodes) and one
    /// node-NAME.acl of source ranges per node.
    #[command(
        after_help = "Example:\n  printroute export haproxy --config /etc/printroute/printroute.toml --out /etc/haproxy/printroute\n  \
haproxy -c -f /etc/haproxy/printroute/haproxy.cfg && systemctl reload haproxy"
    )]
    Haproxy {
        /// The config file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The folder to write haproxy.cfg and the ACL files into.
        #[arg(long)]
        out: PathBuf,
        /// HAProxy's global maxconn (it needs twice as many file descriptors).
        #[arg(long, default_value_t = printroute::admin::export::DEFAULT_HAPROXY_MAXCONN)]
        maxconn: u32,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (SIGHUP reloads the config, SIGTERM stops).
    #[command(after_help = "Example:\n  printroute serve --config config/printroute.toml")]
    Serve {
        /// The config file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Log lines as text (journald adds its own time stamps) or as JSON objects.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// In a scale-out installation ([[node]] in the config): the node this
        /// daemon is; it serves only the tenants that name it.
        #[arg(long, env = "PRINTROUTE_NODE")]
        node: Option<String>,
    },
    /// Write configuration for other programs from the config file.
    #[command(subcommand)]
    Export(Export),
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
    /// Show uptime, config, listeners and job counts per tenant.
    #[command(after_help = "Example:\n  printroute status --json")]
    Status {
        #[command(flatten)]
        control: Control,
    },
    /// List the tenants you administer (all, for a global admin).
    Tenants {
        #[command(flatten)]
        control: Control,
    },
    /// List jobs.
    #[command(
        after_help = "Examples:\n  printroute jobs\n  printroute jobs --tenant acme --state held --user alice"
    )]
    Jobs {
        /// Only this tenant's jobs.
        #[arg(long)]
        tenant: Option<String>,
        /// Only jobs in this state.
        #[arg(long, value_parser = printroute::admin::control::state_names())]
        state: Option<String>,
        /// Only this user's jobs.
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        control: Control,
    },
    /// Show one job's record and history.
    #[command(after_help = "Example:\n  printroute job acme/12")]
    Job {
        /// TENANT/ID.
        job: JobRef,
        #[command(flatten)]
        control: Control,
    },
    /// Release a held job, optionally to one of its tenant's devices.
    #[command(
        after_help = "Examples:\n  printroute release acme/12\n  printroute release acme/12 --to floor2"
    )]
    Release {
        /// TENANT/ID.
        job: JobRef,
        /// Print on this device of the tenant instead of the workflow's.
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        control: Control,
    },
    /// Cancel an unfinished job (its document is deleted, its record kept).
    #[command(after_help = "Example:\n  printroute cancel acme/12")]
    Cancel {
        /// TENANT/ID.
        job: JobRef,
        #[command(flatten)]
        control: Control,
    },
    /// Reload the config file (like systemctl reload printroute).
    Reload {
        #[command(flatten)]
        control: Control,
    },
    /// Delete all data of an offboarded tenant (its tree and spool).
    #[command(
        after_help = "Example (after removing [tenant.globex] and reloading):\n  printroute purge globex"
    )]
    Purge {
        /// The tenant.
        tenant: String,
        /// Purge even though the tenant is still in the config.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        control: Control,
    },
    /// Write the man pages (section 8) and the bash, zsh and fish completions
    /// into DIR (for packaging: scripts/package.sh runs it before `cargo deb`).
    #[command(hide = true)]
    GenerateAssets {
        /// The folder to write man/*.8, printroute.bash, _printroute and printroute.fish into.
        dir: PathBuf,
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
                        match &t.node {
                            Some(n) => println!(
                                "{ip}: tenant {} ({}) by range {}, served by node {n}",
                                t.id, t.name, r.range
                            ),
                            None => {
                                println!("{ip}: tenant {} ({}) by range {}", t.id, t.name, r.range)
                            }
                        }
                    }
                    None => println!("{ip}: no tenant (connections from it are refused)"),
                }
                ExitCode::SUCCESS
            }
            Err(e) => config_error(&e),
        },
        Command::Serve {
            config,
            log_format,
            node,
        } => serve(config, log_format, node),
        Command::Export(Export::Haproxy {
            config,
            out,
            maxconn,
        }) => match Config::load(&config) {
            Ok(c) => match printroute::admin::export::haproxy(&c, &out, maxconn) {
                Ok(files) => {
                    for f in files {
                        println!("wrote {}", f.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                    eprintln!("{}: {e}", config.display());
                    ExitCode::from(EX_CONFIG as u8)
                }
                Err(e) => {
                    eprintln!("cannot write {}: {e}", out.display());
                    ExitCode::from(EX_OSERR)
                }
            },
            Err(e) => config_error(&e),
        },
        Command::Status { control } => admin(&control, Request::Status),
        Command::Tenants { control } => admin(&control, Request::Tenants),
        Command::Jobs {
            tenant,
            state,
            user,
            control,
        } => admin(
            &control,
            Request::Jobs {
                tenant,
                state,
                user,
            },
        ),
        Command::Job { job, control } => admin(
            &control,
            Request::Job {
                tenant: job.tenant,
                id: job.id,
            },
        ),
        Command::Release { job, to, control } => admin(
            &control,
            Request::Release {
                tenant: job.tenant,
                id: job.id,
                to,
            },
        ),
        Command::Cancel { job, control } => admin(
            &control,
            Request::Cancel {
                tenant: job.tenant,
                id: job.id,
            },
        ),
        Command::Reload { control } => admin(&control, Request::Reload),
        Command::Purge {
            tenant,
            force,
            control,
        } => admin(&control, Request::Purge { tenant, force }),
        Command::GenerateAssets { dir } => match generate_assets(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cannot write the assets into {}: {e}", dir.display());
                ExitCode::FAILURE
            }
        },
    }
}

/// Writes the man pages (printroute(8) and one per subcommand, e.g.
/// printroute-serve(8), which printroute(8) refers to) into `DIR/man/` and the
/// shell completions into `DIR/`, all generated from the clap definitions so
/// they never drift from `--help`. Hidden subcommands (this one) are left out.
fn generate_assets(dir: &std::path::Path) -> std::io::Result<()> {
    use clap::CommandFactory;
    use clap_complete::Shell;

    /// Section 8: a daemon and its admin commands.
    const MAN_SECTION: &str = "8";

    fn man_pages(cmd: &clap::Command, dir: &std::path::Path) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            man_pages(sub, dir)?;
        }
        let man = clap_mangen::Man::new(cmd.clone()).section(MAN_SECTION);
        let mut page = Vec::new();
        man.render(&mut page)?;
        std::fs::write(dir.join(man.get_filename()), page)
    }

    let man_dir = dir.join("man");
    std::fs::create_dir_all(&man_dir)?;
    // Built, so that subcommands carry their display names (printroute-serve).
    let mut full = Cli::command().disable_help_subcommand(true);
    full.build();
    man_pages(&full, &man_dir)?;

    // clap_complete lists hidden subcommands too: complete a copy without them.
    let mut public = clap::Command::new("printroute")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .args(Cli::command().get_arguments().cloned())
        .subcommands(
            Cli::command()
                .get_subcommands()
                .filter(|s| !s.is_hide_set())
                .cloned(),
        );
    for (shell, file) in [
        (Shell::Bash, "printroute.bash"),
        (Shell::Zsh, "_printroute"),
        (Shell::Fish, "printroute.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut public, "printroute", &mut out);
        std::fs::write(dir.join(file), out)?;
    }
    Ok(())
}

/// Exit code when the daemon cannot be reached (sysexits.h `EX_UNAVAILABLE`).
const EX_UNAVAILABLE: u8 = 69;

fn admin(control: &Control, req: Request) -> ExitCode {
    let socket = match &control.socket {
        Some(s) => s.clone(),
        None => match match &control.node {
            Some(n) => Config::load_as(&control.config, Some(n)),
            None => Config::load(&control.config),
        } {
            Ok(c) => match c.global.control_socket {
                Some(s) => s,
                None => {
                    eprintln!(
                        "{}: global.control-socket is not set; pass --socket",
                        control.config.display()
                    );
                    return ExitCode::from(EX_CONFIG as u8);
                }
            },
            Err(e) => return config_error(&e),
        },
    };
    let resp = match printroute::admin::control::call(&socket, &req) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot reach the daemon at {}: {e}", socket.display());
            return ExitCode::from(EX_UNAVAILABLE);
        }
    };
    if !resp.ok {
        eprintln!("{}", resp.error.unwrap_or_default());
        return ExitCode::FAILURE;
    }
    if control.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&resp.data).unwrap_or_default()
        );
    } else {
        print!("{}", human(&req, &resp.data));
    }
    ExitCode::SUCCESS
}

/// The daemon's answer as text for people.
fn human(req: &Request, d: &Value) -> String {
    use std::fmt::Write;
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        v => v.to_string(),
    };
    let mut out = String::new();
    match req {
        Request::Status => {
            let _ = writeln!(
                out,
                "uptime {}s; config {} (loaded at {} s since the epoch)",
                s(&d["uptime-seconds"]),
                s(&d["config"]),
                s(&d["config-loaded"])
            );
            if let Some(since) = d["store"]["failing-since-ms"].as_u64() {
                let _ = writeln!(
                    out,
                    "STORE FAILING: commits refused for {} s (failed groups: {}); last error: {}",
                    printroute::store::job::now_ms().saturating_sub(since) / 1000,
                    s(&d["store"]["failed-groups"]),
                    s(&d["store"]["last-error"])
                );
            }
            if let Some(ls) = d["listeners"].as_array() {
                for l in ls {
                    let _ = writeln!(
                        out,
                        "listener {:<12} {:<4} {}",
                        s(&l["name"]),
                        s(&l["protocol"]),
                        s(&l["addr"])
                    );
                }
            }
            for t in d["tenants"].as_array().into_iter().flatten() {
                let counts: Vec<String> = t["jobs"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let _ = writeln!(
                    out,
                    "tenant {:<16} spool {:>12} B  jobs: {}",
                    s(&t["tenant"]),
                    s(&t["spool-bytes"]),
                    if counts.is_empty() {
                        "none".into()
                    } else {
                        counts.join(" ")
                    }
                );
            }
        }
        Request::Tenants => {
            let _ = writeln!(out, "{:<16} {:<24} RANGES", "TENANT", "NAME");
            for t in d.as_array().into_iter().flatten() {
                let ranges: Vec<String> = t["ranges"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(s)
                    .collect();
                let _ = writeln!(
                    out,
                    "{:<16} {:<24} {}",
                    s(&t["tenant"]),
                    s(&t["name"]),
                    ranges.join(" ")
                );
            }
        }
        Request::Jobs { .. } => {
            let _ = writeln!(
                out,
                "{:<20} {:<11} {:<16} {:>10}  NAME",
                "JOB", "STATE", "USER", "SIZE"
            );
            for j in d.as_array().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "{:<20} {:<11} {:<16} {:>10}  {}",
                    format!("{}/{}", s(&j["tenant"]), s(&j["id"])),
                    s(&j["state"]),
                    s(&j["user"]),
                    s(&j["size"]),
                    s(&j["name"])
                );
            }
        }
        Request::Job { .. } => {
            for k in [
                "tenant", "id", "state", "user", "name", "queue", "listener", "peer", "format",
                "size", "sha256", "workflow", "step",
            ] {
                let _ = writeln!(out, "{k:<9} {}", s(&d[k]));
            }
            let _ = writeln!(out, "history:");
            for e in d["history"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "  {} {:<10} {}",
                    s(&e["at_ms"]),
                    s(&e["state"]),
                    s(&e["note"])
                );
            }
        }
        Request::Release { .. }
        | Request::Cancel { .. }
        | Request::Reload
        | Request::Purge { .. } => {
            let parts: Vec<String> = d
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}: {}", s(v)))
                .collect();
            let _ = writeln!(out, "{}", parts.join(", "));
        }
    }
    out
}

fn config_error(e: &printroute::config::ConfigError) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(EX_CONFIG as u8)
}

fn serve(path: PathBuf, log_format: LogFormat, node: Option<String>) -> ExitCode {
    init_logging(log_format);
    raise_fd_limit();
    let t0 = std::time::Instant::now();
    let config = match Config::load_as(&path, node.as_deref()) {
        Ok(c) => {
            tracing::info!(load_ms = t0.elapsed().as_millis() as u64, "config loaded");
            c
        }
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

/// How `serve` writes its log to stderr.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    /// One line of text per event, with its fields as key=value.
    Text,
    /// One JSON object per event.
    Json,
}

fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("PRINTROUTE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}
