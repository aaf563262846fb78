//! `pika.conf`: Pika's `key : value` format with Pika's option names where they apply, plus our
//! own options (documented in `node/pika.conf.example`). Command-line flags override the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::options;
use common::tls::{ClientAuth, TlsFiles};

use crate::glob::glob_match;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceMode {
    Classic,
    Sharding,
}

impl InstanceMode {
    pub fn name(self) -> &'static str {
        match self {
            InstanceMode::Classic => "classic",
            InstanceMode::Sharding => "sharding",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: String,
    pub port: u16,
    /// Port of the HTTP endpoint (`/metrics`, `/health`); 0 turns it off.
    pub http_port: u16,
    /// The admin password (common/src/auth.rs).
    pub requirepass: String,
    /// Also accepted by AUTH during a password rotation (empty: none).
    pub requirepass_previous: String,
    /// The user password: data commands only.
    pub userpass: String,
    pub userpass_previous: String,
    /// Commands the user may not run besides the admin ones (lower case).
    pub userblacklist: Vec<String>,
    pub masterauth: String,
    pub instance_mode: InstanceMode,
    pub default_slot_num: u32,
    /// Classic mode: number of tables (`SELECT 0..databases-1`).
    pub databases: u32,
    pub db_path: PathBuf,
    pub log_path: PathBuf,
    pub maxclients: usize,
    /// Largest request a connection may send, in bytes (`client-query-buffer-limit`).
    pub client_query_buffer_limit: usize,
    /// Idle client timeout in seconds; 0 = never.
    pub timeout: u64,
    pub block_cache: usize,
    /// Memory for meta records (type, expiry, a string's value) kept in front of RocksDB;
    /// 0 turns the cache off. Pika 3.5's `cache-maxmemory`.
    pub cache_maxmemory: usize,
    pub write_buffer_size: usize,
    pub max_write_buffer_num: i32,
    pub max_background_jobs: i32,
    /// Bytes per second RocksDB's flushes and compactions may write (Pika's
    /// `rate-limiter-bandwidth`); 0 = unlimited.
    pub rate_limiter_bandwidth: u64,
    /// fsync the WAL on every write (power-loss durability); off: kill -9 safe only.
    pub sync_writes: bool,
    pub slowlog_log_slower_than: i64,
    pub slowlog_max_len: usize,
    /// Every slot starts fenced until an admin unfences (or promotes) it: at start, and when
    /// `pkcluster addslots` creates it.
    pub start_fenced: bool,
    /// Backlog bytes kept per slot (in memory) for replicas that reconnect; a replica further
    /// behind re-syncs in full.
    pub slot_log_size: u64,
    /// Replicas that must have a write durable before a master slot answers it (0: async).
    pub min_replica_acks: u32,
    /// How long a write waits for those acknowledgements before it fails.
    pub replica_ack_timeout_ms: u64,
    /// Backlog bytes a slot may hold for replicas still catching up (a full sync in progress).
    pub slot_log_max: u64,
    /// The TLS client port (0: none) and its files (common/src/tls.rs).
    pub tls_port: u16,
    pub tls_cert_file: String,
    pub tls_key_file: String,
    pub tls_ca_cert_file: String,
    pub tls_auth_clients: ClientAuth,
    /// Replicas connect to their masters' TLS port, with this node's certificate.
    pub tls_replication: bool,
    /// The file the config came from, for CONFIG REWRITE-style reporting.
    pub source: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: "0.0.0.0".into(),
            port: 9221,
            http_port: 0,
            requirepass: String::new(),
            requirepass_previous: String::new(),
            userpass: String::new(),
            userpass_previous: String::new(),
            userblacklist: Vec::new(),
            masterauth: String::new(),
            instance_mode: InstanceMode::Classic,
            default_slot_num: 1024,
            databases: 1,
            db_path: "./db/".into(),
            log_path: "./log/".into(),
            maxclients: 20000,
            client_query_buffer_limit: common::resp::DEFAULT_QUERY_LIMIT,
            tls_port: 0,
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            tls_ca_cert_file: String::new(),
            tls_auth_clients: ClientAuth::No,
            tls_replication: false,
            timeout: 0,
            block_cache: 128 << 20,
            cache_maxmemory: 128 << 20,
            write_buffer_size: 8 << 20,
            max_write_buffer_num: 4,
            max_background_jobs: 2,
            rate_limiter_bandwidth: 0,
            sync_writes: false,
            slowlog_log_slower_than: 10000,
            slowlog_max_len: 128,
            start_fenced: false,
            slot_log_size: 4 << 20,
            min_replica_acks: 0,
            replica_ack_timeout_ms: 2000,
            slot_log_max: 64 << 20,
            source: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: expected `key : value`, got {text:?}")]
    Syntax { path: PathBuf, line: usize, text: String },
    #[error("invalid value {value:?} for `{key}`: {why}")]
    Value { key: String, value: String, why: String },
    #[error("{0}")]
    Policy(#[from] common::auth::PolicyError),
    #[error("{0}")]
    Tls(String),
}

impl Config {
    /// Reads a pika.conf file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let mut config = Config::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line.split_once(':').ok_or_else(|| ConfigError::Syntax {
                path: path.to_path_buf(),
                line: n + 1,
                text: line.to_string(),
            })?;
            config.set(key.trim(), value.trim(), true)?;
        }
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Sets the secret options found in the environment (`PIKA_REQUIREPASS`...), over the
    /// file's: the way to give a node its passwords without a command line.
    pub fn set_secrets_from_env(&mut self) -> Result<(), ConfigError> {
        for opt in options::OPTIONS.iter().filter(|o| o.kind == options::Kind::Secret) {
            if let Ok(value) = std::env::var(common::auth::env_name(opt.name)) {
                self.set(opt.name, &value, true)?;
            }
        }
        Ok(())
    }

    /// The passwords AUTH checks.
    pub fn passwords(&self) -> common::auth::Passwords {
        use common::auth::{Accepted, Passwords};
        Passwords {
            admin: Accepted::new(&self.requirepass, &self.requirepass_previous),
            user: Accepted::new(&self.userpass, &self.userpass_previous),
        }
    }

    /// Checks the options together, once all are set (at start, and for each CONFIG SET).
    pub fn check(&self) -> Result<(), ConfigError> {
        self.passwords().check()?;
        common::tls::check_options(
            self.tls_port != 0,
            &self.tls_cert_file,
            &self.tls_key_file,
            &self.tls_ca_cert_file,
            self.tls_auth_clients,
        )
        .map_err(ConfigError::Tls)?;
        if self.tls_replication && self.tls_ca_cert_file.is_empty() {
            return Err(ConfigError::Tls(
                "tls-replication is on: tls-ca-cert-file must name the CA masters' certificates chain to".into(),
            ));
        }
        Ok(())
    }

    /// What a replica connects to its masters with: TLS (`tls-replication`), checking the
    /// master's certificate against the CA and presenting this node's own when it has one.
    /// Read at each connection, so renewed files are picked up.
    pub fn replication_tls(&self) -> Result<Option<std::sync::Arc<common::tls::ClientConfig>>, common::tls::TlsError> {
        if !self.tls_replication {
            return Ok(None);
        }
        let identity = (!self.tls_cert_file.is_empty() && !self.tls_key_file.is_empty())
            .then(|| (Path::new(&self.tls_cert_file), Path::new(&self.tls_key_file)));
        Ok(Some(std::sync::Arc::new(common::tls::client_config(Path::new(&self.tls_ca_cert_file), identity)?)))
    }

    /// The TLS port's files, when it has one.
    pub fn tls_files(&self) -> Option<TlsFiles> {
        (self.tls_port != 0)
            .then(|| TlsFiles::from_options(&self.tls_cert_file, &self.tls_key_file, &self.tls_ca_cert_file))
    }

    /// Sets one option. `at_start` allows the options that cannot change at runtime (which
    /// are which, and the values' syntax: `common::options`).
    pub fn set(&mut self, key: &str, value: &str, at_start: bool) -> Result<(), ConfigError> {
        let bad =
            |why: &str| ConfigError::Value { key: key.to_ascii_lowercase(), value: value.into(), why: why.into() };
        let (opt, v) = options::parse(key, value).map_err(|why| bad(&why))?;
        if !at_start && !opt.live {
            return Err(bad("cannot be changed at runtime"));
        }
        match opt.name {
            "requirepass" => self.requirepass = v.text(),
            "requirepass-previous" => self.requirepass_previous = v.text(),
            "userpass" => self.userpass = v.text(),
            "userpass-previous" => self.userpass_previous = v.text(),
            "userblacklist" => {
                self.userblacklist =
                    v.text().split(',').map(|c| c.trim().to_ascii_lowercase()).filter(|c| !c.is_empty()).collect()
            }
            "masterauth" => self.masterauth = v.text(),
            "timeout" => self.timeout = v.int().max(0) as u64,
            "maxclients" => self.maxclients = v.int().clamp(1, 1_000_000) as usize,
            // At least 1 MiB: a smaller one would refuse ordinary requests.
            "client-query-buffer-limit" => self.client_query_buffer_limit = (v.size() as usize).max(1 << 20),
            "slowlog-log-slower-than" => self.slowlog_log_slower_than = v.int(),
            "slowlog-max-len" => self.slowlog_max_len = v.int().max(0) as usize,
            "slot-log-size" => self.slot_log_size = v.size().max(1),
            "min-replica-acks" => self.min_replica_acks = v.int() as u32,
            "replica-ack-timeout-ms" => self.replica_ack_timeout_ms = v.int() as u64,
            "slot-log-max" => self.slot_log_max = v.size().max(1),
            "cache-maxmemory" => self.cache_maxmemory = v.size() as usize,
            "port" => self.port = v.port(),
            "bind" => self.bind = v.text(),
            "http-port" => self.http_port = v.port(),
            "tls-port" => self.tls_port = v.port(),
            "tls-cert-file" => self.tls_cert_file = v.text(),
            "tls-key-file" => self.tls_key_file = v.text(),
            "tls-ca-cert-file" => self.tls_ca_cert_file = v.text(),
            "tls-replication" => self.tls_replication = v.flag(),
            "tls-auth-clients" => {
                self.tls_auth_clients =
                    ClientAuth::parse(&v.text()).ok_or_else(|| bad("expected no, optional or yes"))?
            }
            "instance-mode" => {
                // Pika: anything but "classic" (or empty) means sharding.
                self.instance_mode = match v.text().to_ascii_lowercase().as_str() {
                    "" | "classic" => InstanceMode::Classic,
                    _ => InstanceMode::Sharding,
                }
            }
            "default-slot-num" => self.default_slot_num = v.int() as u32,
            "databases" => self.databases = v.int() as u32,
            "db-path" => self.db_path = v.text().into(),
            "log-path" => self.log_path = v.text().into(),
            "block-cache" => self.block_cache = v.size() as usize,
            "write-buffer-size" => self.write_buffer_size = v.size() as usize,
            "max-write-buffer-num" => self.max_write_buffer_num = v.int().clamp(2, 64) as i32,
            "max-background-jobs" => self.max_background_jobs = v.int().clamp(1, 64) as i32,
            "rate-limiter-bandwidth" => self.rate_limiter_bandwidth = v.size(),
            "sync-writes" => self.sync_writes = v.flag(),
            "start-fenced" => self.start_fenced = v.flag(),
            _ => {} // one of Pika's options that mean nothing here
        }
        Ok(())
    }

    /// All options as CONFIG GET shows them, in name order; passwords redacted.
    pub fn entries(&self) -> BTreeMap<&'static str, String> {
        let redacted = |secret: &str| if secret.is_empty() { "" } else { options::REDACTED }.to_string();
        let mut m = BTreeMap::new();
        m.insert("bind", self.bind.clone());
        m.insert("port", self.port.to_string());
        m.insert("http-port", self.http_port.to_string());
        m.insert("tls-port", self.tls_port.to_string());
        m.insert("tls-cert-file", self.tls_cert_file.clone());
        m.insert("tls-key-file", self.tls_key_file.clone());
        m.insert("tls-ca-cert-file", self.tls_ca_cert_file.clone());
        m.insert("tls-auth-clients", self.tls_auth_clients.as_str().into());
        m.insert("tls-replication", if self.tls_replication { "yes" } else { "no" }.into());
        m.insert("requirepass", redacted(&self.requirepass));
        m.insert("requirepass-previous", redacted(&self.requirepass_previous));
        m.insert("userpass", redacted(&self.userpass));
        m.insert("userpass-previous", redacted(&self.userpass_previous));
        m.insert("userblacklist", self.userblacklist.join(","));
        m.insert("masterauth", redacted(&self.masterauth));
        m.insert("instance-mode", self.instance_mode.name().into());
        if self.instance_mode == InstanceMode::Sharding {
            m.insert("default-slot-num", self.default_slot_num.to_string());
        } else {
            m.insert("databases", self.databases.to_string());
        }
        m.insert("db-path", self.db_path.display().to_string());
        m.insert("log-path", self.log_path.display().to_string());
        m.insert("maxclients", self.maxclients.to_string());
        m.insert("client-query-buffer-limit", self.client_query_buffer_limit.to_string());
        m.insert("timeout", self.timeout.to_string());
        m.insert("block-cache", self.block_cache.to_string());
        m.insert("cache-maxmemory", self.cache_maxmemory.to_string());
        m.insert("write-buffer-size", self.write_buffer_size.to_string());
        // Codis reads `maxmemory` and needs an integer; Pika answers with the write buffer size.
        m.insert("maxmemory", self.write_buffer_size.to_string());
        m.insert("max-write-buffer-num", self.max_write_buffer_num.to_string());
        m.insert("max-background-jobs", self.max_background_jobs.to_string());
        m.insert("rate-limiter-bandwidth", self.rate_limiter_bandwidth.to_string());
        m.insert("sync-writes", if self.sync_writes { "yes" } else { "no" }.into());
        m.insert("slowlog-log-slower-than", self.slowlog_log_slower_than.to_string());
        m.insert("slowlog-max-len", self.slowlog_max_len.to_string());
        m.insert("slot-log-size", self.slot_log_size.to_string());
        m.insert("min-replica-acks", self.min_replica_acks.to_string());
        m.insert("replica-ack-timeout-ms", self.replica_ack_timeout_ms.to_string());
        m.insert("slot-log-max", self.slot_log_max.to_string());
        m.insert("daemonize", "no".into());
        m
    }

    /// CONFIG GET: name/value pairs of the options matching `pattern`.
    pub fn get_matching(&self, pattern: &[u8]) -> Vec<(String, String)> {
        let pattern = pattern.to_ascii_lowercase();
        self.entries()
            .into_iter()
            .filter(|(k, _)| glob_match(&pattern, k.as_bytes()))
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_pika_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pika.conf");
        std::fs::write(
            &path,
            "# comment\nport : 9300\ninstance-mode : Sharding\ndefault-slot-num : 4\ndaemonize : yes\n\
             requirepass : secret\nblock-cache : 64mb\n",
        )
        .unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.port, 9300);
        assert_eq!(c.instance_mode, InstanceMode::Sharding);
        assert_eq!(c.default_slot_num, 4);
        assert_eq!(c.requirepass, "secret");
        assert_eq!(c.block_cache, 64 << 20);
    }

    #[test]
    fn rejects_bad_values_clearly() {
        let mut c = Config::default();
        let err = c.set("default-slot-num", "0", true).unwrap_err().to_string();
        assert!(err.contains("default-slot-num"), "{err}");
        assert!(c.set("port", "x", true).is_err());
        assert!(c.set("no-such-option", "1", true).is_err());
        assert!(c.set("port", "1", false).is_err(), "port is fixed at runtime");
        c.set("timeout", "5", false).unwrap();
        assert_eq!(c.timeout, 5);
    }

    #[test]
    fn passwords_are_redacted_and_a_lone_user_password_is_refused() {
        let mut c = Config::default();
        c.set("userpass", "u", true).unwrap();
        assert!(c.check().unwrap_err().to_string().contains("requirepass"));
        c.set("requirepass", "a", true).unwrap();
        c.set("userblacklist", "KEYS, flushdb,", true).unwrap();
        c.check().unwrap();
        let shown = c.entries();
        assert_eq!((shown["requirepass"].as_str(), shown["userpass"].as_str()), (options::REDACTED, options::REDACTED));
        assert_eq!((shown["masterauth"].as_str(), shown["userblacklist"].as_str()), ("", "keys,flushdb"));
    }

    /// The table in `common::options` and `Config::set` agree: every option takes its default,
    /// and a node's defaults are the table's.
    #[test]
    fn every_option_of_the_table_is_applied_and_defaults_agree() {
        let mut c = Config::default();
        for o in options::OPTIONS {
            c.set(o.name, o.default, true).unwrap_or_else(|e| panic!("{}: {e}", o.name));
        }
        let ours = Config::default().entries();
        for o in options::OPTIONS.iter().filter(|o| o.kind != options::Kind::Ignored) {
            let Some(value) = ours.get(o.name) else { continue };
            let (_, want) = options::parse(o.name, o.default).unwrap();
            let (_, have) = options::parse(o.name, value).unwrap();
            assert_eq!(have, want, "default of {}", o.name);
        }
    }

    #[test]
    fn config_get_globs() {
        let c = Config::default();
        let got = c.get_matching(b"maxmem*");
        assert_eq!(got, vec![("maxmemory".to_string(), (8u64 << 20).to_string())]);
    }
}
