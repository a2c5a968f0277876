//! The hub's relational store (issue 10): one schema on SQLite (the default: one file, one hub)
//! or PostgreSQL (several equal hubs), chosen by one URL.
//!
//! One code path: the SQL text is shared (`$1` placeholders, `RETURNING`, `ON CONFLICT` read the
//! same on both engines) and `on_engine!` / `in_transaction!` compile a body once per engine, so
//! each engine's types are checked and nothing is copied. What differs lives here: connection
//! settings, pragmas, backup.

pub mod accounts;
pub mod connections;
pub mod conversations;
pub mod events;
pub mod feed;
pub mod jobs;
pub mod labels;
pub mod quick_replies;
pub mod rows;
pub mod rules;
pub mod search;
pub mod webhooks;
pub mod write;

use anyhow::{bail, Context, Result};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::ConnectOptions;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// What a store command can fail with, mapped once from the engines' errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    /// A uniqueness rule refused the change (`code` names which, for the API's 409).
    #[error("{code}")]
    Conflict { code: &'static str },
    /// The database cannot be reached or refused service; the hub answers 503 meanwhile.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
            e => StoreError::Other(e.into()),
        }
    }
}

impl StoreError {
    /// A unique-constraint violation becomes `Conflict { code }`; anything else maps as usual.
    pub fn conflict_if_unique(e: sqlx::Error, code: &'static str) -> StoreError {
        match e.as_database_error() {
            Some(d) if d.is_unique_violation() => StoreError::Conflict { code },
            _ => e.into(),
        }
    }
}

/// Which engine a database URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Engine {
    /// `sqlite://PATH` (or `sqlite:PATH`), `postgres://…` (or `postgresql://…`); anything else is
    /// refused with the forms that work.
    pub fn from_url(url: &str) -> Result<Engine> {
        let url = url.trim();
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() || path == ":memory:" {
                bail!("sqlite URL {url:?} names no file: use sqlite://DATA_DIR/sop.db");
            }
            return Ok(Engine::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Engine::Postgres(url.to_string()));
        }
        let scheme = url.split(':').next().unwrap_or_default();
        bail!(
            "unknown database URL scheme {scheme:?}: use sqlite://DATA_DIR/sop.db (one hub) or \
             postgres://USER@HOST/DB (several hubs)"
        )
    }
}

pub struct SqliteDb {
    /// The one writer: SQLite takes one write transaction at a time anyway, and a single
    /// connection makes the event counter's order the commit order.
    pub writer: SqlitePool,
    /// Readers see committed data (WAL) without waiting for the writer.
    pub readers: SqlitePool,
    pub path: PathBuf,
}

pub struct PgDb {
    pub pool: PgPool,
    /// How many of the newest messages a search walks through before it uses the GIN index
    /// (`search::search_messages`); tests make it small to reach the index.
    pub search_recent: i64,
}

pub enum Db {
    Sqlite(SqliteDb),
    Postgres(PgDb),
}

impl std::fmt::Debug for Db {
    /// Never prints a URL: it may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Db::Sqlite(d) => write!(f, "Db::Sqlite({})", d.path.display()),
            Db::Postgres(_) => f.write_str("Db::Postgres"),
        }
    }
}

/// Runs `$body` with `$conn` bound to the engine's writer pool; the body is compiled for each
/// engine. `on_engine!(readers $db, …)` binds SQLite's read pool instead (PostgreSQL has one).
#[macro_export]
macro_rules! on_engine {
    ($db:expr, $conn:ident => $body:expr) => {
        $crate::on_engine!(@pool writer, $db, $conn => $body)
    };
    (readers $db:expr, $conn:ident => $body:expr) => {
        $crate::on_engine!(@pool readers, $db, $conn => $body)
    };
    (@pool $sqlite_pool:ident, $db:expr, $conn:ident => $body:expr) => {
        match $db {
            $crate::store::sql::Db::Sqlite(engine) => {
                let $conn = &engine.$sqlite_pool;
                $body
            }
            $crate::store::sql::Db::Postgres(engine) => {
                let $conn = &engine.pool;
                $body
            }
        }
    };
}

/// Runs `$body` in one transaction (`$tx`, use `&mut *$tx`) and commits it; an early return
/// (`?`) drops the transaction, which rolls it back. SQLite begins IMMEDIATE so that a second
/// process (`sop admin`) waits for the lock instead of failing halfway.
#[macro_export]
macro_rules! in_transaction {
    ($db:expr, $tx:ident => $body:expr) => {
        match $db {
            $crate::store::sql::Db::Sqlite(engine) => {
                let mut $tx = engine.writer.begin_with("BEGIN IMMEDIATE").await?;
                let result = $body;
                $tx.commit().await?;
                result
            }
            $crate::store::sql::Db::Postgres(engine) => {
                let mut $tx = engine.pool.begin().await?;
                let result = $body;
                $tx.commit().await?;
                result
            }
        }
    };
}

/// The next number of a kind (`'account'`, `'rule'`, `'message'`, …) inside the caller's
/// transaction: numbers of a rolled-back change are given out again.
#[macro_export]
macro_rules! next_number {
    ($tx:expr, $kind:expr) => {{
        let n: i64 = sqlx::query_scalar(
            "UPDATE counters SET value = value + 1 WHERE name = $1 RETURNING value",
        )
        .bind($kind)
        .fetch_one(&mut *$tx)
        .await?;
        n
    }};
}

impl Db {
    /// Connects, brings the schema to the latest version and checks the store.
    pub async fn open(url: &str) -> Result<Db> {
        let db = Db::connect(url).await?;
        // Checked before migrating: a damaged file is refused with what to do, not with the
        // error of whichever statement first trips on it.
        db.check().await?;
        db.migrate().await?;
        Ok(db)
    }

    /// Connects without migrating (`sop admin migrate` and the tests do that step themselves).
    pub async fn connect(url: &str) -> Result<Db> {
        match Engine::from_url(url)? {
            Engine::Sqlite(path) => Ok(Db::Sqlite(open_sqlite(&path).await?)),
            Engine::Postgres(url) => {
                let options = PgConnectOptions::from_str(&url)
                    .context("invalid PostgreSQL URL")?
                    .disable_statement_logging();
                let pool = PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await
                    .context(
                        "cannot connect to PostgreSQL (is the URL right and the server up?)",
                    )?;
                Ok(Db::Postgres(PgDb {
                    pool,
                    search_recent: search::RECENT,
                }))
            }
        }
    }

    /// Whether anything was ever stored (an account, a page, a rule, a conversation).
    pub async fn has_data(&self) -> Result<bool> {
        let sql = "SELECT COUNT(*) FROM counters WHERE name <> 'event' AND value > 0";
        let n: i64 =
            on_engine!(readers self, pool => sqlx::query_scalar(sql).fetch_one(pool).await?);
        Ok(n > 0)
    }

    pub fn engine_name(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// Runs the migrations not yet applied. On PostgreSQL sqlx holds an advisory lock meanwhile,
    /// so hubs started together migrate once.
    pub async fn migrate(&self) -> Result<()> {
        match self {
            Db::Sqlite(d) => SQLITE_MIGRATIONS.run(&d.writer).await,
            Db::Postgres(d) => POSTGRES_MIGRATIONS.run(&d.pool).await,
        }
        .context("cannot bring the database schema up to date")?;
        let filled = self
            .fill_search_text()
            .await
            .context("cannot index what was stored before search existed")?;
        if filled > 0 {
            tracing::info!(rows = filled, "search text filled in for earlier rows");
        }
        Ok(())
    }

    /// The schema versions applied, oldest first.
    pub async fn applied_migrations(&self) -> Result<Vec<i64>> {
        let sql = "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version";
        Ok(on_engine!(readers self, conn => sqlx::query_scalar(sql).fetch_all(conn).await?))
    }

    /// Refuses a damaged store at start with a message that says what to do.
    pub async fn check(&self) -> Result<()> {
        if let Db::Sqlite(d) = self {
            let report: Vec<String> = match sqlx::query_scalar("PRAGMA quick_check")
                .fetch_all(&d.writer)
                .await
            {
                Ok(report) => report,
                // SQLITE_CORRUPT and SQLITE_NOTADB: too damaged to even check.
                Err(sqlx::Error::Database(e))
                    if matches!(e.code().as_deref(), Some("11" | "26")) =>
                {
                    vec![e.message().to_string()]
                }
                Err(e) => return Err(e).context("cannot check the database"),
            };
            if report != ["ok"] {
                bail!(
                    "the database {} is damaged ({}); restore the last backup \
                     (sop admin backup) or move the file away to start empty",
                    d.path.display(),
                    report.join("; ")
                );
            }
        }
        Ok(())
    }

    /// A consistent copy of a running SQLite database; PostgreSQL has `pg_dump`.
    pub async fn backup_to(&self, file: &Path) -> Result<()> {
        match self {
            Db::Sqlite(d) => {
                if file.exists() {
                    bail!("{} exists already", file.display());
                }
                let target = file
                    .to_str()
                    .context("the backup path must be valid UTF-8")?;
                sqlx::query("VACUUM INTO $1")
                    .bind(target)
                    .execute(&d.readers)
                    .await
                    .with_context(|| format!("cannot write the backup {}", file.display()))?;
                Ok(())
            }
            Db::Postgres(_) => bail!(
                "back up PostgreSQL with its own tools: pg_dump --format=custom DBNAME > FILE"
            ),
        }
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite(d) => {
                // The writer last: SQLite's last connection folds the WAL into the file and
                // removes it, which a read-only one cannot do.
                d.readers.close().await;
                d.writer.close().await;
            }
            Db::Postgres(d) => d.pool.close().await,
        }
    }
}

async fn open_sqlite(path: &Path) -> Result<SqliteDb> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data dir {}", dir.display()))?;
    }
    let options = SqliteConnectOptions::from_str("sqlite:")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // Every commit is fsynced before it is acknowledged (issue 10: durable acknowledgement).
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5))
        // Statement logging formats every statement even when no subscriber wants it.
        .disable_statement_logging();
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await
        .with_context(|| format!("cannot open the database {}", path.display()))?;
    let readers = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options.read_only(true))
        .await
        .with_context(|| format!("cannot open the database {}", path.display()))?;
    Ok(SqliteDb {
        writer,
        readers,
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_engine_or_say_what_works() {
        assert_eq!(
            Engine::from_url("sqlite:///var/lib/sop/sop.db").unwrap(),
            Engine::Sqlite("/var/lib/sop/sop.db".into())
        );
        assert_eq!(
            Engine::from_url("sqlite:data/sop.db?mode=rwc").unwrap(),
            Engine::Sqlite("data/sop.db".into())
        );
        assert!(matches!(
            Engine::from_url("postgresql://sop@db/sop").unwrap(),
            Engine::Postgres(_)
        ));
        let e = Engine::from_url("mysql://x").unwrap_err().to_string();
        assert!(e.contains("\"mysql\"") && e.contains("sqlite://"), "{e}");
        assert!(Engine::from_url("sqlite::memory:").is_err());
    }

    #[test]
    fn both_engines_have_the_same_migrations() {
        let versions = |m: &sqlx::migrate::Migrator| {
            m.iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(versions(&SQLITE_MIGRATIONS), versions(&POSTGRES_MIGRATIONS));
    }
}
