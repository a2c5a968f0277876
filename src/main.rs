use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sop_console::config::Config;
use sop_console::model::Role;
use sop_console::server::hub::Hub;
use sop_console::store::SledStore;
use std::path::PathBuf;
use std::sync::Arc;

/// sop — keyboard-first omnichannel chat for Zalo Official Accounts.
#[derive(Parser)]
#[command(name = "sop", version, about)]
struct Cli {
    /// Config file (default: the platform config dir's config.toml).
    #[arg(long, global = true, env = "SOP_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub.
    Serve {
        #[arg(long)]
        listen: Option<String>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Run the Zalo simulator (OAuth, OA API, signed webhooks, control API under /sim/).
    ZaloSim {
        #[arg(long, default_value = "127.0.0.1:8710")]
        listen: String,
        /// Where to deliver webhooks (the hub's /zalo/webhook).
        #[arg(long, default_value = "http://127.0.0.1:8700/zalo/webhook")]
        webhook: String,
        #[arg(long, default_value = "sim-app")]
        app_id: String,
        #[arg(long, default_value = "sim-app-secret")]
        app_secret: String,
        #[arg(long, default_value = "sim-oa-secret")]
        oa_secret_key: String,
        /// Skip the consent page: approve for the first OA as its first admin.
        #[arg(long)]
        auto_approve: bool,
        /// The registered OA callback URL (others get -14003); any URL when unset.
        #[arg(long)]
        redirect_uri: Option<String>,
        /// Save OAs and customers here between runs.
        #[arg(long)]
        state: Option<PathBuf>,
        /// Multiply Zalo's webhook retry delays (30 s … 1 h); 0.001 turns minutes into tenths of seconds.
        #[arg(long, default_value_t = 1.0)]
        retry_scale: f64,
    },
    /// Administer a hub's data dir directly (the hub must be stopped; use the API while it runs).
    Admin {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Accounts and their bearer tokens.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Create an account; prints its bearer token on the last line.
    Add {
        #[arg(long)]
        email: String,
        #[arg(long)]
        username: String,
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// List accounts.
    List,
    /// Issue a new token for an account (by id, email or username); the old one stops working.
    Token { account: String },
}

fn parse_role(s: &str) -> Result<Role, String> {
    match s {
        "admin" => Ok(Role::Admin),
        "agent" => Ok(Role::Agent),
        _ => Err(format!("role must be admin or agent, not {s:?}")),
    }
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("sop: {e:#}");
        std::process::exit(1);
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn run(cli: Cli) -> Result<()> {
    let mut config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Some(Command::Serve { listen, data_dir }) => {
            init_logging();
            if let Some(l) = listen {
                config.server.listen = l;
            }
            if let Some(d) = data_dir {
                config.server.data_dir = Some(d);
            }
            runtime()?.block_on(sop_console::server::serve(config))
        }
        Some(Command::ZaloSim {
            listen,
            webhook,
            app_id,
            app_secret,
            oa_secret_key,
            auto_approve,
            redirect_uri,
            state,
            retry_scale,
        }) => {
            init_logging();
            let cfg = sop_console::sim::SimConfig {
                webhook,
                app_id,
                app_secret,
                oa_secret_key,
                auto_approve,
                redirect_uri,
                state_file: state,
                retry_scale,
                ..Default::default()
            };
            runtime()?.block_on(async move {
                let sim = sop_console::sim::Sim::new(cfg)?;
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen}"))?;
                println!(
                    "zalo simulator listening on http://{}",
                    listener.local_addr()?
                );
                sop_console::sim::serve(sim, listener, async {
                    sop_console::server::wait_for_signal().await;
                })
                .await
            })
        }
        Some(Command::Admin { data_dir, command }) => {
            let dir = data_dir
                .or(config.server.data_dir.clone())
                .unwrap_or_else(sop_console::server::default_data_dir);
            admin(&dir, command)
        }
        None => anyhow::bail!(
            "the console arrives with the next milestone; try `sop serve` or `sop --help`"
        ),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn admin(dir: &std::path::Path, command: AdminCommand) -> Result<()> {
    let store = Arc::new(SledStore::open(dir)?);
    let hub = Hub::open(store, u64::MAX)?;
    let AdminCommand::Account { command } = command;
    let result = match command {
        AccountCommand::Add {
            email,
            username,
            name,
            role,
        } => {
            let (account, token) = hub
                .create_account_blocking(sop_console::wire::NewAccount {
                    email,
                    username,
                    name,
                    role,
                })
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "created {:?} account {} ({}) id={}",
                account.role, account.username, account.email, account.id
            );
            println!("{token}");
            Ok(())
        }
        AccountCommand::List => {
            hub.read(|st| {
                for a in st.accounts() {
                    println!(
                        "{}\t{}\t{}\t{:?}\t{:?}\t{}",
                        a.id, a.username, a.email, a.role, a.availability, a.name
                    );
                }
            });
            Ok(())
        }
        AccountCommand::Token { account } => {
            let (account, token) = hub
                .rotate_token_blocking(&account)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "new token for {} (the old one no longer works)",
                account.username
            );
            println!("{token}");
            Ok(())
        }
    };
    hub.shutdown();
    result
}
