//! Configuration: one TOML file (see `config.example.toml`), overridden by `SOP_*` environment
//! variables, overridden by command-line flags.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub zalo: ZaloConfig,
    pub console: ConsoleConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: String,
    pub data_dir: Option<PathBuf>,
    /// The hub's database: `sqlite://FILE` (default `sqlite://DATA_DIR/sop.db`, one hub) or
    /// `postgres://USER:PASSWORD@HOST/DB` (several hubs sharing the work).
    pub database: Option<String>,
    /// How many events the log keeps for consoles that reconnect.
    pub event_retention: u64,
    /// Largest accepted API request body, in bytes.
    pub max_body_bytes: usize,
    /// When set, `GET /metrics` wants `Authorization: Bearer <this>` (else it is open, like
    /// `/healthz`: keep the port private).
    pub metrics_token: Option<String>,
    /// A client must send its request headers within this many seconds, and an idle keep-alive
    /// connection is closed after as long.
    pub header_timeout_secs: u64,
    /// A request body must arrive whole within this many seconds (else 408).
    pub body_timeout_secs: u64,
    /// Open connections (websockets included); lowered to fit the descriptor limit. At the cap a
    /// new connection closes the oldest idle one.
    pub max_connections: usize,
    /// Attachment bytes of replies not yet sent to Zalo; past it a reply with an attachment gets
    /// 429 `attachments_pending`.
    pub max_pending_attachment_bytes: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8700".into(),
            data_dir: None,
            database: None,
            event_retention: 100_000,
            max_body_bytes: 8 * 1024 * 1024,
            metrics_token: None,
            header_timeout_secs: 10,
            body_timeout_secs: 60,
            max_connections: 10_000,
            max_pending_attachment_bytes: 1 << 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ZaloConfig {
    pub app_id: String,
    /// App secret: the `secret_key` header of the OAuth token endpoint.
    pub app_secret: String,
    /// OA secret key: signs webhooks. A different secret from `app_secret`.
    pub oa_secret_key: String,
    /// Must equal the "Official Account Callback Url" registered with Zalo.
    pub redirect_uri: String,
    pub oauth_base: String,
    pub api_base: String,
    /// How long a reply whose send was ambiguous waits for Zalo's echo before it is marked failed
    /// (and may be sent again by hand).
    pub echo_window_secs: u64,
    /// A send Zalo answered with a retryable error (-32 rate limit, -100, no connection) is tried
    /// again after this many milliseconds, doubling, up to a minute; 8 tries in all.
    pub retry_base_ms: u64,
    /// Signed webhooks older than this (by their `timestamp`) are acknowledged but not applied:
    /// a replay. Longer than Zalo's retry schedule (30 s … 1 h, about 2 h 6 min in all).
    pub webhook_max_age_secs: u64,
    /// … and those stamped further than this in the future.
    pub webhook_max_future_secs: u64,
}

impl Default for ZaloConfig {
    fn default() -> Self {
        ZaloConfig {
            app_id: String::new(),
            app_secret: String::new(),
            oa_secret_key: String::new(),
            redirect_uri: String::new(),
            oauth_base: "https://oauth.zaloapp.com".into(),
            api_base: "https://openapi.zalo.me".into(),
            echo_window_secs: 600,
            retry_base_ms: 500,
            webhook_max_age_secs: 3 * 3600,
            webhook_max_future_secs: 300,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    pub server: Option<String>,
    pub token: Option<String>,
    /// "vi" (default) or "en".
    pub language: String,
    /// Ring the terminal bell on news (below).
    pub bell: bool,
    /// Also show news as a desktop notification (OSC 9 and OSC 777, passed through tmux).
    pub desktop_notifications: bool,
    /// The news: a conversation newly waiting on a page of my rules,
    pub notify_unclaimed: bool,
    /// a customer message in a conversation of mine,
    pub notify_mine: bool,
    /// a colleague's note that mentions me. None for the conversation being read.
    pub notify_mention: bool,
    pub mouse: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            server: None,
            token: None,
            language: "vi".into(),
            bell: true,
            desktop_notifications: true,
            notify_unclaimed: true,
            notify_mine: true,
            notify_mention: true,
            mouse: false,
        }
    }
}

/// Where sop keeps its files, per the platform's conventions.
pub fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("vn", "sop", "sop-console")
}

pub fn default_config_path() -> Option<PathBuf> {
    project_dirs().map(|d| d.config_dir().join("config.toml"))
}

impl Config {
    /// Reads the file (explicit path must exist; the default path may be absent), then applies
    /// `SOP_*` environment variables.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let mut cfg = match path {
            Some(p) => Self::from_file(p)?,
            None => match default_config_path() {
                Some(p) if p.exists() => Self::from_file(&p)?,
                _ => Config::default(),
            },
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        Ok(cfg)
    }

    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Config> {
        Ok(toml::from_str(text)?)
    }

    /// Applies `SOP_<SECTION>_<KEY>` environment variables to every key alike
    /// (`SOP_SERVER_LISTEN` sets `[server] listen`), plus the short names documented before
    /// (`SOP_LISTEN`, `SOP_DATA_DIR`, `SOP_EVENT_RETENTION`, `SOP_SERVER`, `SOP_TOKEN`, `SOP_LANG`).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        let mut pairs = Vec::new();
        for (alias, key) in ENV_ALIASES {
            if let Some(v) = get(alias) {
                pairs.push((key.to_string(), v, alias.to_string()));
            }
        }
        for key in Self::keys() {
            let name = env_name(&key);
            if let Some(v) = get(&name) {
                pairs.push((key, v, name));
            }
        }
        for (key, value, from) in pairs {
            self.set(&key, &value)
                .with_context(|| format!("environment variable {from}"))?;
        }
        Ok(())
    }

    /// Every key, as `section.key`.
    pub fn keys() -> Vec<String> {
        let table = toml::Table::try_from(Config::schema()).expect("the config serialises");
        let mut keys = Vec::new();
        for (section, fields) in table {
            if let toml::Value::Table(fields) = fields {
                keys.extend(fields.keys().map(|k| format!("{section}.{k}")));
            }
        }
        keys
    }

    /// Sets one key from text (`--set server.listen=0.0.0.0:8700`, or an environment variable):
    /// numbers and booleans are parsed for the keys that hold them, strings are taken as given.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let (section, field) = key
            .split_once('.')
            .with_context(|| format!("{key:?}: a key is section.name, e.g. server.listen"))?;
        let mut table = toml::Table::try_from(&*self)?;
        let schema = toml::Table::try_from(Config::schema())?;
        let current = schema
            .get(section)
            .and_then(|s| s.get(field))
            .with_context(|| format!("unknown config key {key:?} (see config.example.toml)"))?;
        let typed = match current {
            toml::Value::Integer(_) => toml::Value::Integer(
                value
                    .trim()
                    .parse()
                    .with_context(|| format!("{key} must be a whole number, got {value:?}"))?,
            ),
            toml::Value::Boolean(_) => toml::Value::Boolean(
                value
                    .trim()
                    .parse()
                    .with_context(|| format!("{key} must be true or false, got {value:?}"))?,
            ),
            _ => toml::Value::String(value.to_string()),
        };
        table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .context("config sections are tables")?
            .insert(field.to_string(), typed);
        *self = table
            .try_into()
            .with_context(|| format!("invalid value for {key}"))?;
        Ok(())
    }

    /// The defaults with every optional key present, so that every key can be listed and typed.
    fn schema() -> Config {
        let mut c = Config::default();
        c.server.data_dir = Some(PathBuf::new());
        c.server.database = Some(String::new());
        c.server.metrics_token = Some(String::new());
        c.console.server = Some(String::new());
        c.console.token = Some(String::new());
        c
    }
}

/// The environment's short names, kept from round 1.
const ENV_ALIASES: &[(&str, &str)] = &[
    ("SOP_LISTEN", "server.listen"),
    ("SOP_DATA_DIR", "server.data_dir"),
    ("SOP_DATABASE_URL", "server.database"),
    ("SOP_EVENT_RETENTION", "server.event_retention"),
    ("SOP_SERVER", "console.server"),
    ("SOP_TOKEN", "console.token"),
    ("SOP_LANG", "console.language"),
];

/// `server.listen` → `SOP_SERVER_LISTEN`.
pub fn env_name(key: &str) -> String {
    format!("SOP_{}", key.replace('.', "_").to_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_env_overrides() {
        let text = include_str!("../config.example.toml");
        let mut cfg = Config::parse(text).expect("config.example.toml must parse");
        assert_eq!(cfg.zalo.oauth_base, "https://oauth.zaloapp.com");
        cfg.apply_env(|k| (k == "SOP_ZALO_API_BASE").then(|| "http://127.0.0.1:8710".to_string()))
            .unwrap();
        assert_eq!(cfg.zalo.api_base, "http://127.0.0.1:8710");
    }

    #[test]
    fn every_key_is_settable_by_environment_and_by_name() {
        let keys = Config::keys();
        assert!(keys.len() >= 15, "{keys:?}");
        for key in &keys {
            let mut by_env = Config::default();
            let value = match key.as_str() {
                "server.event_retention"
                | "server.max_body_bytes"
                | "server.header_timeout_secs"
                | "server.body_timeout_secs"
                | "server.max_connections"
                | "server.max_pending_attachment_bytes"
                | "zalo.echo_window_secs"
                | "zalo.retry_base_ms"
                | "zalo.webhook_max_age_secs"
                | "zalo.webhook_max_future_secs" => "42",
                "console.bell"
                | "console.desktop_notifications"
                | "console.notify_unclaimed"
                | "console.notify_mine"
                | "console.notify_mention" => "false",
                "console.mouse" => "true",
                _ => "x-test",
            };
            let name = env_name(key);
            by_env
                .apply_env(|k| (k == name).then(|| value.to_string()))
                .unwrap();
            let mut by_flag = Config::default();
            by_flag.set(key, value).unwrap();
            assert_eq!(by_env, by_flag, "{key}");
            assert_ne!(by_env, Config::default(), "{key} ({name}) changed nothing");
        }
        let mut c = Config::default();
        c.apply_env(|k| (k == "SOP_ZALO_APP_ID").then(|| "3608465249409039670".into()))
            .unwrap();
        assert_eq!(c.zalo.app_id, "3608465249409039670", "ids stay text");
        assert!(c.set("zalo.nope", "1").is_err());
        assert!(c.set("server.max_body_bytes", "big").is_err());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(Config::parse("[server]\nlisten = 5").is_err());
        let err = Config::parse("[zalo]\napp_secrt = \"x\"").unwrap_err();
        assert!(format!("{err:#}").contains("app_secrt"), "{err:#}");
        let mut cfg = Config::default();
        assert!(cfg
            .apply_env(|k| (k == "SOP_EVENT_RETENTION").then(|| "lots".into()))
            .is_err());
    }
}
