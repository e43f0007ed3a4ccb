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
    /// The config file naming the control socket (global.control-socket).
    /// When it cannot be read, the packaged socket /run/printroute/control.sock is tried.
    #[arg(long, short, env = "PRINTROUTE_CONFIG", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// The control socket (overrides the config's global.control-socket).
    #[arg(long, env = "PRINTROUTE_SOCKET")]
    socket: Option<PathBuf>,
    /// The data folder the daemon was started with (serve --data-dir): the
    /// control socket moves with it when it lies inside the config's data-dir.
    #[arg(long, env = "PRINTROUTE_DATA_DIR")]
    data_dir: Option<PathBuf>,
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
        #[arg(long, short, env = "PRINTROUTE_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The folder to write haproxy.cfg and the ACL files into.
        #[arg(long)]
        out: PathBuf,
        /// HAProxy's global maxconn (it needs twice as many file descriptors).
        #[arg(long, default_value_t = printroute::admin::export::DEFAULT_HAPROXY_MAXCONN)]
        maxconn: u32,
    },
    /// An nftables ruleset (table inet printroute) that resets connections
    /// to the listeners from addresses of no tenant before the handshake,
    /// and drops each tenant's new connections over its max-connection-rate.
    #[command(after_help = "Examples:\n  printroute export nftables | nft -f -\n  \
printroute export nftables --out /run/printroute/nftables.conf && nft -f /run/printroute/nftables.conf\n\n\
Loading it again replaces the table. Listeners with proxy-protocol are left out \
(their peers are the balancers).")]
    Nftables {
        /// The config file.
        #[arg(long, short, env = "PRINTROUTE_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Write the ruleset into this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Where `token` commands find the token file.
#[derive(clap::Args)]
struct TokenPlace {
    /// The config file naming the data folder (global.data-dir).
    #[arg(long, short, env = "PRINTROUTE_CONFIG", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// The data folder the daemon was started with (serve --data-dir).
    #[arg(long, env = "PRINTROUTE_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

/// What `token` does.
#[derive(Subcommand)]
enum Token {
    /// Create a token and print it once (it is stored only hashed).
    #[command(
        after_help = "Examples:\n  printroute token create --tenant acme --name ci\n  printroute token create --global --name central --expires 90d"
    )]
    Create {
        /// The tenant it administers.
        #[arg(long, required_unless_present = "global", conflicts_with = "global")]
        tenant: Option<String>,
        /// A global token: every tenant, provisioning and offboarding.
        #[arg(long)]
        global: bool,
        /// What it is for (shown by `token list`).
        #[arg(long)]
        name: String,
        /// It stops working after this long ("30d", "12h"); default: never.
        #[arg(long)]
        expires: Option<String>,
        #[command(flatten)]
        place: TokenPlace,
    },
    /// List the tokens (never their secrets).
    List {
        /// Print them as JSON, for scripts.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        place: TokenPlace,
    },
    /// Revoke a token by its id (from `token list`): it stops working at once.
    Revoke {
        /// The token's id.
        id: String,
        #[command(flatten)]
        place: TokenPlace,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (SIGHUP reloads the config, SIGTERM stops).
    #[command(after_help = "Example:\n  printroute serve --config config/printroute.toml")]
    Serve {
        /// The config file.
        #[arg(long, short, env = "PRINTROUTE_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Log lines as text (journald adds its own time stamps) or as JSON objects.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// Which log lines to write: error, warn, info, debug or trace, or
        /// per module (`info,printroute::intake=debug`); RUST_LOG-style. The
        /// environment's PRINTROUTE_LOG is used when this is not given.
        #[arg(long, env = "PRINTROUTE_LOG", default_value = "info")]
        log_level: String,
        /// Use this data folder instead of the config's global.data-dir;
        /// paths of the config inside that folder (the control socket,
        /// store folders) move along. Runs a copy of a config, or the example
        /// beside an earlier run, without sharing state.
        #[arg(long, env = "PRINTROUTE_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Also write `listening NAME PROTOCOL ADDRESS` for each bound
        /// listener and `ready` on stdout (for scripts that bind port 0).
        #[arg(long)]
        announce: bool,
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
        #[arg(env = "PRINTROUTE_CONFIG", default_value = DEFAULT_CONFIG)]
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
        #[arg(long, short, env = "PRINTROUTE_CONFIG", default_value = DEFAULT_CONFIG)]
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
    /// Give a tenant a new key: its records and spool documents are sealed
    /// again with it in the background, then the old key is shredded
    /// (global admins only).
    #[command(after_help = "Example:\n  printroute rekey acme --wait")]
    Rekey {
        /// The tenant.
        tenant: String,
        /// Wait until every record and document is sealed with the new key.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        control: Control,
    },
    /// Manage API tokens for the admin API and the portal ([global.web]).
    #[command(subcommand)]
    Token(Token),
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
            log_level,
            data_dir,
            announce,
            node,
        } => {
            if announce {
                printroute::daemon::announce_on_stdout();
            }
            serve(config, log_format, &log_level, data_dir, node)
        }
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
        Command::Export(Export::Nftables { config, out }) => match Config::load(&config) {
            Ok(c) => {
                let ruleset = printroute::admin::export::nftables(&c);
                match out {
                    None => {
                        print!("{ruleset}");
                        ExitCode::SUCCESS
                    }
                    Some(out) => match printroute::admin::export::write_file(&out, &ruleset) {
                        Ok(()) => ExitCode::SUCCESS,
                        Err(e) => {
                            eprintln!("cannot write {}: {e}", out.display());
                            ExitCode::from(EX_OSERR)
                        }
                    },
                }
            }
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
        Command::Rekey {
            tenant,
            wait,
            control,
        } => admin(&control, Request::Rekey { tenant, wait }),
        Command::Token(t) => token(t),
        Command::GenerateAssets { dir } => match generate_assets(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cannot write the assets into {}: {e}", dir.display());
                ExitCode::FAILURE
            }
        },
    }
}

/// The data folder of a `token` command's config.
fn token_data_dir(place: &TokenPlace) -> Result<PathBuf, ExitCode> {
    if let Some(d) = &place.data_dir {
        return Ok(d.clone());
    }
    Config::load(&place.config)
        .map(|c| c.global.data_dir)
        .map_err(|e| config_error(&e))
}

/// `printroute token ...`: works on the token file in the data folder
/// directly (the daemon reads it again when it changes).
fn token(t: Token) -> ExitCode {
    use printroute::admin::tokens::{self, TokenScope};
    use printroute::config::ids::TenantId;
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("{e}");
        ExitCode::FAILURE
    };
    match t {
        Token::Create {
            tenant,
            global,
            name,
            expires,
            place,
        } => {
            let data_dir = match token_data_dir(&place) {
                Ok(d) => d,
                Err(c) => return c,
            };
            let scope = match (global, tenant) {
                (true, _) => TokenScope::Global,
                (false, Some(t)) => match TenantId::parse(&t) {
                    Ok(id) => TokenScope::Tenant(id),
                    Err(e) => return fail(&e),
                },
                (false, None) => return fail(&"give --tenant T or --global"),
            };
            let ttl = match expires
                .as_deref()
                .map(printroute::config::units::parse_duration)
            {
                None => None,
                Some(Ok(d)) => Some(d),
                Some(Err(e)) => return fail(&format!("--expires: {e}")),
            };
            match tokens::create(&data_dir, scope, &name, ttl) {
                Ok((rec, token)) => {
                    eprintln!(
                        "token {} ({}, {}) created; it is shown only now:",
                        rec.id, rec.name, rec.scope
                    );
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Token::List { json, place } => {
            let data_dir = match token_data_dir(&place) {
                Ok(d) => d,
                Err(c) => return c,
            };
            match tokens::read(&data_dir) {
                Ok(list) if json => {
                    let shown: Vec<Value> = list
                        .iter()
                        .map(|t| {
                            serde_json::json!({
                                "id": t.id,
                                "name": t.name,
                                "scope": t.scope.to_string(),
                                "created": t.created,
                                "expires": t.expires,
                            })
                        })
                        .collect();
                    println!("{}", Value::Array(shown));
                    ExitCode::SUCCESS
                }
                Ok(list) => {
                    for t in list {
                        let expires = t.expires.map_or("never".to_owned(), |e| e.to_string());
                        println!(
                            "{}  {}  {:?}  created {}  expires {}",
                            t.id, t.scope, t.name, t.created, expires
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Token::Revoke { id, place } => {
            let data_dir = match token_data_dir(&place) {
                Ok(d) => d,
                Err(c) => return c,
            };
            match tokens::revoke(&data_dir, &id) {
                Ok(true) => {
                    println!("revoked {id}");
                    ExitCode::SUCCESS
                }
                Ok(false) => fail(&format!("no token {id:?}")),
                Err(e) => fail(&e),
            }
        }
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

/// Where the packaged unit puts the control socket: admin commands try it
/// when they cannot read the config (a tenant admin may not be allowed to).
const DEFAULT_CONTROL_SOCKET: &str = "/run/printroute/control.sock";

/// The control socket an admin command talks to, and how it was found (for
/// the message when the daemon is not there).
fn control_socket(control: &Control) -> Result<(PathBuf, String), ExitCode> {
    if let Some(s) = &control.socket {
        return Ok((s.clone(), "given with --socket".to_owned()));
    }
    let file = control.config.display();
    if let Err(e) = std::fs::File::open(&control.config) {
        return Ok((
            PathBuf::from(DEFAULT_CONTROL_SOCKET),
            format!("the default socket; the config {file} could not be read: {e}"),
        ));
    }
    let loaded = match &control.node {
        Some(n) => Config::load_as(&control.config, Some(n)),
        None => Config::load(&control.config),
    };
    let config = match loaded {
        Ok(c) => match &control.data_dir {
            Some(d) => c.with_data_dir(d),
            None => c,
        },
        Err(e) => return Err(config_error(&e)),
    };
    match config.global.control_socket {
        Some(s) => Ok((s, format!("global.control-socket of {file}"))),
        None => {
            eprintln!(
                "{file} sets no global.control-socket, so the daemon has no control socket. \
Set one and reload, or pass --socket PATH."
            );
            Err(ExitCode::from(EX_CONFIG as u8))
        }
    }
}

fn admin(control: &Control, req: Request) -> ExitCode {
    let (socket, found) = match control_socket(control) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let resp = match printroute::admin::control::call(&socket, &req) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "Cannot reach the printroute daemon at {} ({found}): {e}.\n\
Is it running (systemctl status printroute)? Point at another daemon with \
--config FILE (or PRINTROUTE_CONFIG=FILE) or --socket PATH.",
                socket.display()
            );
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
        print!("{}", human(&req, &resp.data, now_ms()));
    }
    ExitCode::SUCCESS
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A byte count for people: `31 B`, `4.0 KiB`, `1.2 GiB`.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A duration for people, in its two largest units: `45 s`, `3 min 20 s`,
/// `2 h 5 min`, `3 d 4 h`.
fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, _) if s == 0 => format!("{m} min"),
        (0, 0, _) => format!("{m} min {s} s"),
        (0, _, 0) => format!("{h} h"),
        (0, _, _) => format!("{h} h {m} min"),
        (_, 0, _) => format!("{d} d"),
        _ => format!("{d} d {h} h"),
    }
}

/// How long ago `at_ms` was, seen at `now_ms`: `just now`, `3 min ago`.
fn human_ago(at_ms: u64, now_ms: u64) -> String {
    if at_ms > now_ms {
        return format!("in {}", human_duration((at_ms - now_ms) / 1000));
    }
    let secs = (now_ms - at_ms) / 1000;
    if secs < 1 {
        "just now".to_owned()
    } else {
        // One unit is enough for "when": 3 min ago, not 3 min 20 s ago.
        let text = human_duration(secs);
        let first: Vec<&str> = text.split(' ').take(2).collect();
        format!("{} ago", first.join(" "))
    }
}

/// A time as RFC 3339 in UTC, to the second: `2026-12-02T04:16:00Z`.
fn rfc3339_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Rows as columns padded to their widest cell (the last one unpadded).
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 < r.len() {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `text` with its control characters escaped (`\u{1b}`), so that what a
/// client or a device wrote can be shown on a terminal as it is.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The daemon's answer as text for people, seen at `now` (ms since the
/// epoch): one short sentence, or aligned tables. `--json` has the exact values.
fn human(req: &Request, d: &Value, now: u64) -> String {
    use std::fmt::Write;
    // Every stored string is shown escaped: what a client or a device
    // wrote (a job name, a printer's status text) never drives the terminal.
    let s = |v: &Value| match v {
        Value::String(s) => printable(s),
        Value::Null => String::new(),
        v => v.to_string(),
    };
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let mut out = String::new();
    match req {
        Request::Status => {
            let loaded_ms = n(&d["config-loaded"]) * 1000;
            let _ = writeln!(
                out,
                "printroute is up {}; config {} loaded {} ({}).",
                human_duration(n(&d["uptime-seconds"])),
                s(&d["config"]),
                human_ago(loaded_ms, now),
                rfc3339_utc(loaded_ms)
            );
            if let Some(since) = d["store"]["failing-since-ms"].as_u64() {
                let _ = writeln!(
                    out,
                    "The store is failing: jobs are refused since {} ({} failed commits; last error: {}).",
                    human_ago(since, now),
                    s(&d["store"]["failed-groups"]),
                    s(&d["store"]["last-error"])
                );
            }
            if let Some(ls) = d["listeners"].as_array() {
                let mut rows = vec![vec!["LISTENER".into(), "PROTOCOL".into(), "ADDRESS".into()]];
                rows.extend(
                    ls.iter()
                        .map(|l| vec![s(&l["name"]), s(&l["protocol"]), s(&l["addr"])]),
                );
                let _ = write!(out, "\n{}", table(&rows));
            }
            let mut rows = vec![vec![
                "TENANT".into(),
                "NAME".into(),
                "SPOOL".into(),
                "JOBS".into(),
            ]];
            for t in d["tenants"].as_array().into_iter().flatten() {
                let counts: Vec<String> = t["jobs"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| format!("{v} {k}"))
                    .collect();
                rows.push(vec![
                    s(&t["tenant"]),
                    s(&t["name"]),
                    human_size(n(&t["spool-bytes"])),
                    if counts.is_empty() {
                        "none".into()
                    } else {
                        counts.join(", ")
                    },
                ]);
            }
            let _ = write!(out, "\n{}", table(&rows));
        }
        Request::Tenants => {
            let mut rows = vec![vec!["TENANT".into(), "NAME".into(), "RANGES".into()]];
            for t in d.as_array().into_iter().flatten() {
                let ranges: Vec<String> = t["ranges"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(s)
                    .collect();
                rows.push(vec![s(&t["tenant"]), s(&t["name"]), ranges.join(" ")]);
            }
            out = table(&rows);
        }
        Request::Jobs { .. } => {
            let jobs = d.as_array().map(Vec::as_slice).unwrap_or_default();
            if jobs.is_empty() {
                return "No jobs match.\n".to_owned();
            }
            let mut rows = vec![vec![
                "JOB".into(),
                "STATE".into(),
                "USER".into(),
                "SIZE".into(),
                "CREATED".into(),
                "NAME".into(),
            ]];
            for j in jobs {
                rows.push(vec![
                    format!("{}/{}", s(&j["tenant"]), s(&j["id"])),
                    s(&j["state"]),
                    s(&j["user"]),
                    human_size(n(&j["size"])),
                    human_ago(n(&j["created_ms"]), now),
                    s(&j["name"]),
                ]);
            }
            out = table(&rows);
        }
        Request::Job { .. } => {
            let queue = match &d["queue"] {
                Value::String(q) => format!("queue {q} of listener {}", s(&d["listener"])),
                _ => format!("listener {} (its default queue)", s(&d["listener"])),
            };
            let mut rows: Vec<Vec<String>> = vec![
                vec!["job".into(), format!("{}/{}", s(&d["tenant"]), s(&d["id"]))],
                vec!["state".into(), s(&d["state"])],
                vec!["user".into(), s(&d["user"])],
                vec!["name".into(), s(&d["name"])],
                vec!["came in on".into(), queue],
                vec!["from".into(), s(&d["peer"])],
            ];
            if let Value::String(f) = &d["format"] {
                rows.push(vec!["format".into(), f.clone()]);
            }
            rows.extend([
                vec![
                    "size".into(),
                    format!("{} ({} bytes)", human_size(n(&d["size"])), n(&d["size"])),
                ],
                vec!["sha256".into(), s(&d["sha256"])],
                vec![
                    "workflow".into(),
                    format!("{}, step {}", s(&d["workflow"]), n(&d["step"]) + 1),
                ],
            ]);
            out = table(&rows);
            let mut history = vec![vec!["WHEN".into(), "STATE".into(), "NOTE".into()]];
            for e in d["history"].as_array().into_iter().flatten() {
                let at = n(&e["at_ms"]);
                history.push(vec![
                    format!("{} ({})", rfc3339_utc(at), human_ago(at, now)),
                    s(&e["state"]),
                    s(&e["note"]),
                ]);
            }
            let _ = write!(out, "\nhistory:\n{}", table(&history));
        }
        Request::Release { .. } => {
            let _ = match &d["to"] {
                Value::String(dev) => {
                    writeln!(out, "Released {}: it goes to {dev}.", s(&d["released"]))
                }
                _ => writeln!(
                    out,
                    "Released {}: it goes on through its workflow.",
                    s(&d["released"])
                ),
            };
        }
        Request::Cancel { .. } => {
            let _ = writeln!(out, "Canceled {}.", s(&d["canceled"]));
        }
        Request::Reload => {
            let _ = writeln!(out, "Reloaded: {}.", s(&d["reloaded"]));
        }
        Request::Purge { .. } => {
            let _ = writeln!(
                out,
                "Purged tenant {}: {} job records and {} spool files ({}) deleted.",
                s(&d["purged"]),
                n(&d["records"]),
                n(&d["spool-files"]),
                human_size(n(&d["spool-bytes"]))
            );
        }
        Request::Rekey { .. } if d["finished"] == true => {
            let _ = writeln!(
                out,
                "Rotated the key of tenant {}: {} records and {} documents ({}) sealed again; the old key is shredded.",
                s(&d["rekey"]),
                n(&d["records"]),
                n(&d["documents"]),
                human_size(n(&d["document-bytes"]))
            );
            if n(&d["plain-documents"]) > 0 {
                let _ = writeln!(
                    out,
                    "{} documents spooled before documents were sealed stay as they are until their jobs finish.",
                    n(&d["plain-documents"])
                );
            }
        }
        Request::Rekey { .. } => {
            let _ = writeln!(
                out,
                "Rotating the key of tenant {} in the background; the daemon logs when it has finished.",
                s(&d["rekey"])
            );
        }
    }
    out
}

fn config_error(e: &printroute::config::ConfigError) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(EX_CONFIG as u8)
}

fn serve(
    path: PathBuf,
    log_format: LogFormat,
    log_level: &str,
    data_dir: Option<PathBuf>,
    node: Option<String>,
) -> ExitCode {
    init_logging(log_format, log_level);
    raise_fd_limit();
    let t0 = std::time::Instant::now();
    let config = match Config::load_as(&path, node.as_deref()) {
        Ok(c) => {
            let c = match &data_dir {
                Some(d) => c.with_data_dir(d),
                None => c,
            };
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

fn init_logging(format: LogFormat, level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|e| {
        eprintln!("--log-level {level:?}: {e}; logging at info");
        tracing_subscriber::EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn stored_text_is_shown_with_its_control_characters_escaped() {
        assert_eq!(printable("report.pdf"), "report.pdf");
        assert_eq!(
            printable("\u{1b}[31mRED\u{7}\r\n"),
            "\\u{1b}[31mRED\\u{7}\\u{d}\\u{a}"
        );
        assert_eq!(printable("Ünïcödé"), "Ünïcödé");
    }
}
