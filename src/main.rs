use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sop_console::config::Config;
use sop_console::model::Role;
use sop_console::server::hub::Hub;
use std::path::PathBuf;

/// sop — keyboard-first omnichannel chat for Zalo Official Accounts.
#[derive(Parser)]
#[command(name = "sop", version, about)]
struct Cli {
    /// Config file (default: the platform config dir's config.toml).
    #[arg(long, global = true, env = "SOP_CONFIG")]
    config: Option<PathBuf>,
    /// Set any config key, over the file and the environment: `--set zalo.echo_window_secs=300`
    /// (repeatable; every key of config.example.toml, also as SOP_<SECTION>_<KEY>).
    #[arg(long = "set", global = true, value_name = "SECTION.KEY=VALUE")]
    set: Vec<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// The agent console (the default).
    Console {
        /// Hub URL (else SOP_SERVER, the config file, or `sop login`'s saved server).
        #[arg(long)]
        server: Option<String>,
        /// Bearer token (else SOP_TOKEN, the config file, or `sop login`'s saved token).
        #[arg(long)]
        token: Option<String>,
        /// UI language: vi or en.
        #[arg(long)]
        lang: Option<String>,
    },
    /// Save a hub URL and token for the console (file mode 0600).
    Login {
        #[arg(long)]
        server: String,
        /// The token from `sop admin account add|token`; asked for when omitted.
        #[arg(long)]
        token: Option<String>,
    },
    /// Everything in one process: hub, Zalo simulator, seeded accounts, the console as admin.
    Demo {
        /// Keep the demo's data here (default: a temporary directory).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Open the console as this account (HuongNT256, QueCT3, TriLM22; default the admin CuongLM).
        #[arg(long = "as")]
        as_user: Option<String>,
        /// No console: print how to attach and serve until Ctrl-C.
        #[arg(long)]
        headless: bool,
        /// Open Zalo's consent page in a browser instead of approving it automatically.
        #[arg(long)]
        browser: bool,
        /// Seconds between simulated customer messages.
        #[arg(long, default_value_t = 6)]
        pace: u64,
        #[arg(long, default_value = "vi")]
        lang: String,
    },
    /// Run the hub.
    Serve {
        #[arg(long)]
        listen: Option<String>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// `sqlite://FILE` or `postgres://…` (`[server] database`, `SOP_DATABASE_URL`; default:
        /// SQLite in the data dir).
        #[arg(long)]
        database: Option<String>,
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
    /// Measure the quality bars (DESIGN §6) on the real binaries over loopback; prints a table.
    Bench {
        /// A small, quick run (CI runs it so the harness can't rot; its numbers mean little).
        #[arg(long)]
        smoke: bool,
        /// Run only these sections (comma-separated). `hubs` needs the hubs on PostgreSQL:
        /// SOP_DATABASE_URL=postgres://… naming an empty database.
        #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(sop_console::bench::SECTIONS))]
        only: Vec<String>,
    },
    #[command(hide = true)]
    BenchEmpty {
        #[arg(long)]
        listen: String,
    },
    #[command(hide = true)]
    BenchConsole {
        #[arg(long)]
        prepare: Option<PathBuf>,
        #[arg(long)]
        measure: Option<PathBuf>,
        #[arg(long, default_value_t = 100_000)]
        conversations: usize,
    },
    /// Administer a hub's database directly (works while the hub runs).
    Admin {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The hub's database URL (`[server] database`; default: SQLite in the data dir).
        #[arg(long)]
        database: Option<String>,
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
    /// Bring the database's schema to the latest version (the hub also does at start).
    Migrate,
    /// Copy the SQLite database to FILE while the hub runs (PostgreSQL: use pg_dump).
    Backup {
        #[arg(long)]
        to: PathBuf,
    },
    /// Import a round-1 data dir (sled) into the database, once (the hub stopped).
    Import {
        #[arg(long, value_name = "DIR")]
        from_sled: PathBuf,
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
    for pair in &cli.set {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("--set {pair:?}: expected SECTION.KEY=VALUE"))?;
        config
            .set(key.trim(), value)
            .with_context(|| format!("--set {pair}"))?;
    }
    match cli.command {
        Some(Command::Serve {
            listen,
            data_dir,
            database,
        }) => {
            init_logging();
            if database.is_some() {
                config.server.database = database;
            }
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
        Some(Command::Admin {
            data_dir,
            database,
            command,
        }) => {
            let dir = data_dir
                .or(config.server.data_dir.clone())
                .unwrap_or_else(sop_console::server::default_data_dir);
            if database.is_some() {
                config.server.database = database;
            }
            runtime()?.block_on(admin(&config, &dir, command))
        }
        None => console(config, None, None, None),
        Some(Command::Bench { smoke, only }) => {
            let mut sizes = if smoke {
                sop_console::bench::Sizes::smoke()
            } else {
                sop_console::bench::Sizes::full()
            };
            sizes.only = only;
            println!(
                "sop bench ({}): {}",
                if smoke { "smoke" } else { "full" },
                sop_console::bench::describe(&sizes)
            );
            let rows = runtime()?.block_on(sop_console::bench::run(sizes))?;
            sop_console::bench::print(&rows);
            Ok(())
        }
        Some(Command::BenchEmpty { listen }) => {
            runtime()?.block_on(sop_console::bench::empty_server(&listen))
        }
        Some(Command::BenchConsole {
            prepare,
            measure,
            conversations,
        }) => match (prepare, measure) {
            (Some(dir), _) => sop_console::bench::console_prepare(&dir, conversations),
            (_, Some(dir)) => sop_console::bench::console_measure(&dir),
            _ => anyhow::bail!("bench-console needs --prepare DIR or --measure DIR"),
        },
        Some(Command::Console {
            server,
            token,
            lang,
        }) => console(config, server, token, lang),
        Some(Command::Login { server, token }) => login(&server, token),
        Some(Command::Demo {
            data_dir,
            as_user,
            headless,
            browser,
            pace,
            lang,
        }) => {
            let opts = sop_console::demo::DemoOptions {
                data_dir,
                as_user,
                headless,
                browser,
                pace_secs: pace,
                lang,
            };
            let log_dir = opts.data_dir.clone().unwrap_or_else(std::env::temp_dir);
            init_file_logging(&log_dir.join("sop-demo.log"));
            runtime()?.block_on(sop_console::demo::run(opts))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn admin(config: &Config, dir: &std::path::Path, command: AdminCommand) -> Result<()> {
    if let AdminCommand::Import { from_sled } = &command {
        let url = sop_console::server::database_url(config, dir)?;
        let db = sop_console::store::sql::Db::open(&url).await?;
        let n = sop_console::server::hub::import_sled(&db, from_sled, dir).await?;
        println!(
            "imported {} accounts, {} pages, {} rules, {} conversations, {} messages, {} replies \
             waiting into the {} database",
            n.accounts,
            n.pages,
            n.rules,
            n.conversations,
            n.messages,
            n.jobs,
            db.engine_name()
        );
        return Ok(());
    }
    let db = sop_console::server::open_database(config, dir).await?;
    let command = match command {
        AdminCommand::Migrate => {
            let applied = db.applied_migrations().await?;
            println!(
                "{} database at schema version {}",
                db.engine_name(),
                applied.last().copied().unwrap_or(0)
            );
            return Ok(());
        }
        AdminCommand::Backup { to } => {
            db.backup_to(&to).await?;
            println!("backed up to {}", to.display());
            return Ok(());
        }
        AdminCommand::Account { command } => command,
        AdminCommand::Import { .. } => unreachable!("handled above"),
    };
    let hub = Hub::open(db, dir, u64::MAX).await?;
    let result = match command {
        AccountCommand::Add {
            email,
            username,
            name,
            role,
        } => {
            let (account, token) = hub
                .create_account(sop_console::wire::NewAccount {
                    email,
                    username,
                    name,
                    role,
                })
                .await
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
            })
            .await;
            Ok(())
        }
        AccountCommand::Token { account } => {
            let (account, token) = hub
                .rotate_token(&account)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "new token for {} (the old one no longer works)",
                account.username
            );
            println!("{token}");
            Ok(())
        }
    };
    hub.shutdown().await;
    result
}

/// Where `sop login` keeps the server and token.
fn credentials_path() -> Option<PathBuf> {
    sop_console::config::project_dirs().map(|d| d.config_dir().join("credentials.toml"))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Credentials {
    server: String,
    token: String,
}

fn login(server: &str, token: Option<String>) -> Result<()> {
    let token = match token {
        Some(t) => t,
        None => {
            eprint!("Token for {server}: ");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim().to_string()
        }
    };
    let api = sop_console::console::net::Api::new(server, &token);
    let me = runtime()?
        .block_on(api.me())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = credentials_path().context("no config directory on this system")?;
    std::fs::create_dir_all(path.parent().unwrap())?;
    let text = toml::to_string(&Credentials {
        server: server.to_string(),
        token,
    })?;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(text.as_bytes())?;
    println!(
        "logged in to {server} as {} ({}); saved to {}",
        me.username,
        me.name,
        path.display()
    );
    Ok(())
}

fn console(
    config: Config,
    server: Option<String>,
    token: Option<String>,
    lang: Option<String>,
) -> Result<()> {
    let saved: Option<Credentials> = credentials_path()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| toml::from_str(&t).ok());
    let server = server
        .or(config.console.server.clone())
        .or(saved.as_ref().map(|c| c.server.clone()))
        .context("no hub given: use --server URL, SOP_SERVER, or `sop login --server URL` (try `sop demo`)")?;
    let token = token
        .or(config.console.token.clone())
        .or(saved
            .as_ref()
            .filter(|c| c.server == server)
            .map(|c| c.token.clone()))
        .context("no token given: use --token, SOP_TOKEN, or `sop login --server URL`")?;
    let dirs = sop_console::config::project_dirs();
    if let Some(d) = &dirs {
        init_file_logging(&d.data_dir().join("console.log"));
    }
    let keymap_text = dirs
        .as_ref()
        .and_then(|d| std::fs::read_to_string(d.config_dir().join("keymap.toml")).ok());
    let keymap = sop_console::console::keymap::Keymap::load(keymap_text.as_deref())
        .map_err(|e| anyhow::anyhow!(e))?;
    let opts = sop_console::console::Options {
        server,
        token,
        lang: sop_console::console::i18n::Lang::parse(
            &lang.unwrap_or(config.console.language.clone()),
        ),
        keymap,
        alert: sop_console::console::Alert {
            bell: config.console.bell,
            desktop: config.console.desktop_notifications,
        },
        notify: sop_console::console::data::Notify {
            unclaimed: config.console.notify_unclaimed,
            mine: config.console.notify_mine,
            mention: config.console.notify_mention,
        },
        mouse: config.console.mouse,
        color: std::env::var_os("NO_COLOR").is_none(),
        cache_root: dirs.map(|d| d.cache_dir().to_path_buf()),
    };
    runtime()?.block_on(sop_console::console::run(opts))
}

/// The console owns the terminal: logs go to a file.
fn init_file_logging(path: &std::path::Path) {
    use tracing_subscriber::EnvFilter;
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    else {
        return;
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
}
