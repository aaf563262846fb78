//! pika-proxy's settings: command-line flags, or a `key : value` file (`--config`, same names
//! without the dashes; flags override the file).

use std::path::PathBuf;
use std::time::Duration;

use common::tls::{ClientAuth, TlsFiles};

#[derive(Debug, Clone)]
pub struct Config {
    /// Where clients connect.
    pub listen: String,
    /// Nodes asked for the routing table at start and on every refused request.
    pub seed_nodes: Vec<String>,
    /// The data password (the `default` user): clients AUTH with it, and the proxy uses it
    /// with the nodes (their `userpass`); `previous` is still accepted during a rotation.
    pub password: common::auth::Accepted,
    /// The admin password (the `admin` user: PXROUTE, PXHOLD, SHUTDOWN, FLUSHALL...); the
    /// proxy sends FLUSHDB/FLUSHALL to the nodes with it (their `requirepass`).
    pub admin_password: common::auth::Accepted,
    /// `/metrics` and `/health`; None: off.
    pub http_listen: Option<String>,
    /// Connections per node (and table).
    pub pool_size: usize,
    /// How long a request waits on a held slot before failing with TRYAGAIN.
    pub hold_timeout: Duration,
    /// Memory bound of the requests parked on held slots.
    pub hold_max_bytes: usize,
    /// A hold nobody released within this is released (an operator that died mid-cutover).
    pub hold_expire: Duration,
    /// Largest request a client may send, all its arguments together (larger: refused and
    /// the connection closed).
    pub client_query_buffer_limit: usize,
    /// Open client connections; past it a new one gets `-ERR max number of clients reached`
    /// and is closed.
    pub maxclients: usize,
    /// A client connection idle this long is closed; None: never.
    pub timeout: Option<Duration>,
    /// On SIGTERM: how long open connections are served while they drain (each closes once
    /// its requests are answered); those still open then are closed.
    pub drain_timeout: Duration,
    /// Where clients connect with TLS, beside `listen` (None: no TLS port), and its files and
    /// client-certificate policy, as the node's options of the same names (common/src/tls.rs).
    pub tls_listen: Option<String>,
    pub tls_cert_file: String,
    pub tls_key_file: String,
    pub tls_ca_cert_file: String,
    pub tls_auth_clients: ClientAuth,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:9221".into(),
            seed_nodes: Vec::new(),
            password: Default::default(),
            admin_password: Default::default(),
            http_listen: None,
            pool_size: 2,
            hold_timeout: Duration::from_secs(10),
            hold_max_bytes: 64 << 20,
            hold_expire: Duration::from_secs(120),
            drain_timeout: Duration::from_secs(10),
            client_query_buffer_limit: common::resp::DEFAULT_QUERY_LIMIT,
            maxclients: 10_000,
            timeout: None,
            tls_listen: None,
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            tls_ca_cert_file: String::new(),
            tls_auth_clients: ClientAuth::No,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}:{1}: expected `key : value`")]
    Syntax(PathBuf, usize),
    #[error("invalid value {1:?} for `{0}`")]
    Value(String, String),
    #[error("unknown option `{0}`")]
    Unknown(String),
    #[error("{0}")]
    Policy(#[from] common::auth::PolicyError),
    #[error("{0}")]
    Tls(String),
}

impl Config {
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let bad = || ConfigError::Value(key.to_string(), value.to_string());
        let ms = |v: &str| v.parse::<u64>().map(Duration::from_millis).map_err(|_| bad());
        match key {
            "listen" => self.listen = value.to_string(),
            "seed-nodes" => {
                self.seed_nodes = value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
            }
            "password" => self.password.current = value.to_string(),
            "password-previous" => self.password.previous = value.to_string(),
            "admin-password" => self.admin_password.current = value.to_string(),
            "admin-password-previous" => self.admin_password.previous = value.to_string(),
            "http-listen" => self.http_listen = (!value.is_empty()).then(|| value.to_string()),
            "pool-size" => self.pool_size = value.parse().map_err(|_| bad())?,
            "hold-timeout-ms" => self.hold_timeout = ms(value)?,
            "hold-expire-ms" => self.hold_expire = ms(value)?,
            "hold-max-bytes" => self.hold_max_bytes = value.parse().map_err(|_| bad())?,
            "drain-timeout-ms" => self.drain_timeout = ms(value)?,
            "maxclients" => self.maxclients = value.parse().ok().filter(|n| *n >= 1).ok_or_else(bad)?,
            // Seconds, as the node's `timeout`; 0: never.
            "timeout" => {
                let secs: u64 = value.parse().map_err(|_| bad())?;
                self.timeout = (secs > 0).then(|| Duration::from_secs(secs));
            }
            "client-query-buffer-limit" => {
                let bytes = common::options::parse_size(value).filter(|b| *b >= 1 << 20).ok_or_else(bad)?;
                self.client_query_buffer_limit = bytes as usize;
            }
            "tls-listen" => self.tls_listen = (!value.is_empty()).then(|| value.to_string()),
            "tls-cert-file" => self.tls_cert_file = value.to_string(),
            "tls-key-file" => self.tls_key_file = value.to_string(),
            "tls-ca-cert-file" => self.tls_ca_cert_file = value.to_string(),
            "tls-auth-clients" => self.tls_auth_clients = ClientAuth::parse(value).ok_or_else(bad)?,
            _ => return Err(ConfigError::Unknown(key.to_string())),
        }
        Ok(())
    }

    /// The options that are passwords: from the file or the environment, never a command line.
    pub const SECRETS: [&'static str; 4] =
        ["password", "password-previous", "admin-password", "admin-password-previous"];

    /// Sets the passwords found in the environment (`PIKA_PASSWORD`, `PIKA_ADMIN_PASSWORD`...),
    /// over the file's.
    pub fn set_secrets_from_env(&mut self) -> Result<(), ConfigError> {
        for key in Self::SECRETS {
            if let Ok(value) = std::env::var(common::auth::env_name(key)) {
                self.set(key, &value)?;
            }
        }
        Ok(())
    }

    /// The TLS port's files, when it has one.
    pub fn tls_files(&self) -> Option<TlsFiles> {
        self.tls_listen
            .as_ref()
            .map(|_| TlsFiles::from_options(&self.tls_cert_file, &self.tls_key_file, &self.tls_ca_cert_file))
    }

    /// Checks settings that only make sense together.
    pub fn check(&self) -> Result<(), ConfigError> {
        let (cert, key, ca) = (&self.tls_cert_file, &self.tls_key_file, &self.tls_ca_cert_file);
        common::tls::check_options(self.tls_listen.is_some(), cert, key, ca, self.tls_auth_clients)
            .map_err(ConfigError::Tls)?;
        Ok(self.passwords().check()?)
    }

    /// The passwords clients AUTH with.
    pub fn passwords(&self) -> common::auth::Passwords {
        common::auth::Passwords { admin: self.admin_password.clone(), user: self.password.clone() }
    }

    /// Loads a `key : value` file (`#` comments, blank lines ignored).
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_path_buf(), e))?;
        let mut config = Config::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once(':').ok_or_else(|| ConfigError::Syntax(path.to_path_buf(), n + 1))?;
            config.set(k.trim(), v.trim())?;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_bad_values_are_refused() {
        let mut c = Config::default();
        c.set("seed-nodes", "a:1, b:2,").unwrap();
        assert_eq!(c.seed_nodes, vec!["a:1", "b:2"]);
        c.set("hold-timeout-ms", "250").unwrap();
        assert_eq!(c.hold_timeout, Duration::from_millis(250));
        assert!(c.set("pool-size", "x").is_err());
        assert!(c.set("nope", "1").is_err());
    }
}
