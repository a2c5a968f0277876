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
    /// How many events the log keeps for consoles that reconnect.
    pub event_retention: u64,
    /// Largest accepted API request body, in bytes.
    pub max_body_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8700".into(),
            data_dir: None,
            event_retention: 100_000,
            max_body_bytes: 8 * 1024 * 1024,
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
    /// Ring the terminal bell on new unclaimed conversations and new messages in mine.
    pub bell: bool,
    pub mouse: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            server: None,
            token: None,
            language: "vi".into(),
            bell: true,
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

    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        let set = |field: &mut String, key: &str| {
            if let Some(v) = get(key) {
                *field = v;
            }
        };
        set(&mut self.server.listen, "SOP_LISTEN");
        set(&mut self.zalo.app_id, "SOP_ZALO_APP_ID");
        set(&mut self.zalo.app_secret, "SOP_ZALO_APP_SECRET");
        set(&mut self.zalo.oa_secret_key, "SOP_ZALO_OA_SECRET_KEY");
        set(&mut self.zalo.redirect_uri, "SOP_ZALO_REDIRECT_URI");
        set(&mut self.zalo.oauth_base, "SOP_ZALO_OAUTH_BASE");
        set(&mut self.zalo.api_base, "SOP_ZALO_API_BASE");
        set(&mut self.console.language, "SOP_LANG");
        if let Some(v) = get("SOP_DATA_DIR") {
            self.server.data_dir = Some(v.into());
        }
        if let Some(v) = get("SOP_SERVER") {
            self.console.server = Some(v);
        }
        if let Some(v) = get("SOP_TOKEN") {
            self.console.token = Some(v);
        }
        if let Some(v) = get("SOP_EVENT_RETENTION") {
            self.server.event_retention = v
                .parse()
                .with_context(|| format!("SOP_EVENT_RETENTION must be a number, got {v:?}"))?;
        }
        Ok(())
    }
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
