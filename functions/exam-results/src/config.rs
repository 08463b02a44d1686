//! Typed configuration, read once from the environment at start-up.
//!
//! Every field maps to one environment variable (the field name in upper
//! case). A missing or malformed variable stops the process with one line
//! naming the variable; see [`Config::from_env`].

use std::time::Duration;

use serde::Deserialize;

/// The whole configuration of one function process.
#[derive(Clone, Deserialize)]
pub struct Config {
    /// `PORT`: the serving port (Knative sets it). Default 8080.
    #[serde(default = "defaults::port")]
    pub port: u16,
    /// `BIND_ADDRESS`: the address both listeners bind. Default `0.0.0.0`
    /// (a pod); the local stack uses `127.0.0.1`.
    #[serde(default = "defaults::bind_address")]
    pub bind_address: std::net::IpAddr,
    /// `METRICS_PORT`: Prometheus metrics port, never the serving port.
    /// Default 9464 (clear of Knative's reserved 8008, 8012, 8013, 8022, 9090, 9091).
    #[serde(default = "defaults::metrics_port")]
    pub metrics_port: u16,
    /// `DATABASE_URL`: libpq-style URL or key=value string. Read functions
    /// point at the read-only pooler database, write functions at the
    /// read-write one.
    pub database_url: String,
    /// `DATABASE_PASSWORD`: overrides the URL's password (from a Secret).
    #[serde(default)]
    pub database_password: Option<String>,
    /// `DATABASE_POOL_SIZE`: connections this process keeps to the pooler. Default 8.
    #[serde(default = "defaults::pool_size")]
    pub database_pool_size: u32,
    /// `DATABASE_POOL_TIMEOUT_MS`: longest wait for a pooled connection before a 503. Default 1000.
    #[serde(default = "defaults::pool_timeout_ms")]
    pub database_pool_timeout_ms: u64,
    /// `DATABASE_CONNECT_TIMEOUT_MS`: TCP connect and login timeout. Default 2000.
    #[serde(default = "defaults::connect_timeout_ms")]
    pub database_connect_timeout_ms: u64,
    /// `DATABASE_STATEMENT_TIMEOUT_MS`: longest a query may run; past it the
    /// query is cancelled and the client gets a 503. Default 2000.
    #[serde(default = "defaults::statement_timeout_ms")]
    pub database_statement_timeout_ms: u64,
    /// `READ_FALLBACK_DATABASE_URL`: read functions only. When set, reads go
    /// to this database (the primary) while the replica is down or lagging.
    #[serde(default)]
    pub read_fallback_database_url: Option<String>,
    /// `MAX_REPLICA_LAG_SECONDS`: read functions only. When set, the replica's
    /// replay lag is checked every second; past this value reads fall back
    /// (if configured) or answer 503 `replica_lagging`.
    #[serde(default)]
    pub max_replica_lag_seconds: Option<f64>,
    /// `CONSISTENCY_WAIT_MS`: read functions only. How long a read that
    /// presents a consistency token waits for the replica to replay it when
    /// no fallback is configured, before a 503. Default 250.
    #[serde(default = "defaults::consistency_wait_ms")]
    pub consistency_wait_ms: u64,
    /// `IDEMPOTENCY_KEY_TTL_SECONDS`: write functions only. How long an
    /// `Idempotency-Key` is remembered after its write; a retry after that
    /// runs again. Default 86400 (24 h).
    #[serde(default = "defaults::idempotency_key_ttl_seconds")]
    pub idempotency_key_ttl_seconds: u64,
    /// `BATCH_MAX_BYTES`: create-results-batch only. The largest body a
    /// batch load accepts; over it, 413. Default 33554432 (32 MiB).
    #[serde(default = "defaults::batch_max_bytes")]
    pub batch_max_bytes: u64,
    /// `BATCH_STATEMENT_TIMEOUT_MS`: create-results-batch only. How long one
    /// batch load may take, body included; set on the server for the load's
    /// transaction (`SET LOCAL statement_timeout`), so it does not depend on
    /// the pooler's backstop. Default 120000 (2 minutes).
    #[serde(default = "defaults::batch_statement_timeout_ms")]
    pub batch_statement_timeout_ms: u64,
    /// `WRITE_TOKENS`: comma-separated bearer tokens accepted by the
    /// functions that require a write token (see [`Auth`]).
    #[serde(default)]
    pub write_tokens: Vec<String>,
    /// `READ_TOKENS`: comma-separated bearer tokens accepted by the functions
    /// that require a read token (listing a whole year). A separate class:
    /// a read function never holds a token that can write.
    #[serde(default)]
    pub read_tokens: Vec<String>,
    /// `LOG_LEVEL`: a tracing filter such as `info` or `exam_results=debug`. Default `info`.
    #[serde(default = "defaults::log_level")]
    pub log_level: String,
    /// `LOG_FORMAT`: `json` (default) or `pretty`; see [`Config::log_format`].
    #[serde(default = "defaults::log_format", rename = "log_format")]
    pub log_format_name: String,
    /// `SHUTDOWN_DRAIN_SECONDS`: after SIGTERM, how long in-flight requests may finish. Default 20.
    #[serde(default = "defaults::drain_seconds")]
    pub shutdown_drain_seconds: u64,
    /// `EXAM_YEAR_MIN`: the first exam year the API accepts. Default 2000.
    #[serde(default = "defaults::year_min")]
    pub exam_year_min: i32,
    /// `EXAM_YEAR_MAX`: the last exam year the API accepts. Default 2100.
    #[serde(default = "defaults::year_max")]
    pub exam_year_max: i32,
    /// `HTTP_HEADER_READ_TIMEOUT_MS`: once a request's first byte arrives, how
    /// long its request line and headers may take to complete before the
    /// connection is closed. Default 10000. Knative's queue-proxy forwards a
    /// whole head at once, so only a slow client talking to the function
    /// directly ever comes near it.
    #[serde(default = "defaults::header_read_timeout_ms")]
    pub http_header_read_timeout_ms: u64,
    /// `HTTP_IDLE_TIMEOUT_MS`: how long a connection may wait for the first
    /// byte of its next request (a new connection, or keep-alive between
    /// requests) before it is closed. Default 120000: longer than the 90 s
    /// after which Knative's queue-proxy (Go's `http.Transport`
    /// `IdleConnTimeout`) drops its own idle connections, so the proxy, not
    /// the function, closes first and never reuses a connection this process
    /// is closing.
    #[serde(default = "defaults::idle_timeout_ms")]
    pub http_idle_timeout_ms: u64,
    /// `HTTP_BODY_READ_TIMEOUT_MS`: from the end of a request's headers, how
    /// long its body may take to arrive; past it the request fails with a 400
    /// and the connection is closed. Default 10000, far below Knative's
    /// revision `timeoutSeconds` (300 by default), which bounds the whole request.
    #[serde(default = "defaults::body_read_timeout_ms")]
    pub http_body_read_timeout_ms: u64,
    /// `HTTP_MAX_CONNECTIONS`: open client connections this process serves at
    /// once; beyond it a new connection gets an immediate 503 `overloaded` and
    /// is closed (logged and counted). Default 1024, far above what the
    /// queue-proxy opens (about `containerConcurrency` plus its idle pool).
    #[serde(default = "defaults::max_connections")]
    pub http_max_connections: usize,
    /// `HTTP_MAX_HEADER_BYTES`: the largest request head (request line and
    /// headers) read into a connection's buffer; larger heads get a 431.
    /// Default 16384, at least 8192. It also bounds each connection's read buffer.
    #[serde(default = "defaults::max_header_bytes")]
    pub http_max_header_bytes: usize,
    /// `RATE_LIMIT_PER_SECOND`: requests per second each client may make to a
    /// public (read) function's routes (write functions are not limited), refilled continuously (token bucket);
    /// over it a request gets 429 `rate_limited` with `Retry-After`. `0`
    /// turns the limit off. Default 20. The probes are never limited.
    #[serde(default = "defaults::rate_limit_per_second")]
    pub rate_limit_per_second: u32,
    /// `RATE_LIMIT_BURST`: the bucket's size, i.e. how many requests a client
    /// may make at once after being quiet. Default 100.
    #[serde(default = "defaults::rate_limit_burst")]
    pub rate_limit_burst: u32,
    /// `RATE_LIMIT_CLIENT_HEADER`: when set, the client is identified by this
    /// request header (e.g. `x-forwarded-for`) instead of the connection's
    /// peer address. Only set it when every request reaches the function
    /// through proxies that write it: anyone else can put any value there.
    /// Required for public functions under Knative (`K_SERVICE` set), where
    /// every peer is the queue-proxy.
    #[serde(default)]
    pub rate_limit_client_header: Option<String>,
    /// `RATE_LIMIT_TRUSTED_HOPS`: with `RATE_LIMIT_CLIENT_HEADER`, which
    /// comma-separated entry is the client, counted from the right: the
    /// number of trusted proxies that append to the header. Default 1 (the
    /// last entry, written by the nearest proxy).
    #[serde(default = "defaults::rate_limit_trusted_hops")]
    pub rate_limit_trusted_hops: usize,
    /// `K_SERVICE`: set by Knative in every revision's container; only its
    /// presence is used (see `RATE_LIMIT_CLIENT_HEADER`).
    #[serde(default)]
    pub k_service: Option<String>,
    /// `PUBLICATION_REFRESH_SECONDS`: read functions re-read the publication
    /// times when their copy is older than this, so a moved or withdrawn
    /// publication takes effect within it. Default 5.
    #[serde(default = "defaults::publication_refresh_seconds")]
    pub publication_refresh_seconds: u64,
    /// `HTTP_CACHE_MAX_AGE_SECONDS`: `max-age` of published data; a
    /// correction reaches readers of a shared cache within it. Default 60.
    #[serde(default = "defaults::http_cache_max_age_seconds")]
    pub http_cache_max_age_seconds: u64,
    /// `HTTP_CACHE_STALE_WHILE_REVALIDATE_SECONDS`: how long after `max-age`
    /// a shared cache may answer from its copy while it refetches. Default 30.
    #[serde(default = "defaults::http_cache_stale_while_revalidate_seconds")]
    pub http_cache_stale_while_revalidate_seconds: u64,
    /// `HTTP_CACHE_NOT_FOUND_MAX_AGE_SECONDS`: `max-age` of a 404 for an
    /// absent result of a published year. Default 10.
    #[serde(default = "defaults::http_cache_not_found_max_age_seconds")]
    pub http_cache_not_found_max_age_seconds: u64,
    /// `READ_CACHE_CAPACITY`: entries in a read function's in-process cache
    /// (about 100 bytes each); 0 turns it off. Default 0.
    #[serde(default)]
    pub read_cache_capacity: u64,
    /// `READ_CACHE_TTL_MS`: how long an entry of the in-process cache lives.
    /// Default 2000.
    #[serde(default = "defaults::read_cache_ttl_ms")]
    pub read_cache_ttl_ms: u64,
    /// `PASS_MARK`: a result passes at this mark or above (statistics, and
    /// the results page's pass or fail).
    /// Default 40.
    #[serde(default = "defaults::pass_mark")]
    pub pass_mark: i32,
    /// `GRADE_BANDS`: `grade:lowest mark` pairs for the statistics'
    /// distribution and the results page's grade. Default `A:80,B:70,C:60,D:50,E:40,U:0`.
    #[serde(default = "defaults::grade_bands")]
    pub grade_bands: String,
    /// `CORS_ALLOW_ORIGIN`: public functions only (never write or
    /// read-token functions, never a reply to a request carrying
    /// `Authorization`): the one origin, e.g. `https://results.example.org`,
    /// whose pages may read their replies from JavaScript (the results page
    /// calls get-result). Unset: no CORS headers. See [`crate::web`].
    #[serde(default)]
    pub cors_allow_origin: Option<String>,
    /// `RESULTS_API_URL`: results-page only: get-result's public base URL
    /// the page's JavaScript reads from, e.g. `https://get-result.example.org`;
    /// unset or empty: the page's own origin.
    #[serde(default)]
    pub results_api_url: Option<String>,
    /// `PAGE_CACHE_SECONDS`: results-page only: how long browsers and CDNs
    /// may keep the page (`Cache-Control: public, max-age`). Default 86400.
    #[serde(default = "defaults::page_cache_seconds")]
    pub page_cache_seconds: u64,
}

impl std::fmt::Debug for Config {
    /// Secrets (the password, the tokens, any password inside a URL) are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("port", &self.port)
            .field("bind_address", &self.bind_address)
            .field("metrics_port", &self.metrics_port)
            .field(
                "database",
                &self
                    .database_url
                    .parse::<tokio_postgres::Config>()
                    .ok()
                    .map(|c| (c.get_hosts().len(), c.get_dbname().map(str::to_owned))),
            )
            .field("database_pool_size", &self.database_pool_size)
            .field(
                "write_tokens",
                &format_args!("<{} redacted>", self.write_tokens.len()),
            )
            .field(
                "read_tokens",
                &format_args!("<{} redacted>", self.read_tokens.len()),
            )
            .field("log_level", &self.log_level)
            .field("log_format", &self.log_format_name)
            .finish_non_exhaustive()
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (production).
    Json,
    /// Human-readable, for a terminal.
    Pretty,
}

/// Why the configuration was rejected: always names the variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    /// The environment variable at fault, e.g. `DATABASE_URL`.
    pub variable: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ConfigError {
    pub(crate) fn new(variable: &str, problem: impl Into<String>) -> Self {
        Self {
            variable: variable.to_owned(),
            problem: problem.into(),
        }
    }
}

/// Whether a function reads or writes: which database it is served by
/// (`access` in functions.yaml).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Served from a replica (PgBouncer `exam_results_ro`).
    Read,
    /// Served from the primary (PgBouncer `exam_results`).
    Write,
}

/// Which bearer token a function requires (`auth` in functions.yaml).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// None: anyone may call it.
    Public,
    /// One of `READ_TOKENS`.
    ReadToken,
    /// One of `WRITE_TOKENS`.
    WriteToken,
}

impl Auth {
    /// The environment variable listing this class's tokens, if any.
    pub fn variable(self) -> Option<&'static str> {
        match self {
            Self::Public => None,
            Self::ReadToken => Some("READ_TOKENS"),
            Self::WriteToken => Some("WRITE_TOKENS"),
        }
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env(auth: Auth) -> Result<Self, ConfigError> {
        Self::from_iter(std::env::vars(), auth)
    }

    /// Reads configuration from explicit `(NAME, value)` pairs (tests use
    /// this); `auth` decides which tokens must be configured.
    pub fn from_iter<I>(vars: I, auth: Auth) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let config: Config = envy::from_iter(vars).map_err(from_envy)?;
        config.validate(auth)?;
        Ok(config)
    }

    fn validate(&self, auth: Auth) -> Result<(), ConfigError> {
        if self.database_url.trim().is_empty() {
            return Err(ConfigError::new("DATABASE_URL", "must not be empty"));
        }
        self.database_url
            .parse::<tokio_postgres::Config>()
            .map_err(|_| {
                ConfigError::new(
                    "DATABASE_URL",
                    "is not a valid PostgreSQL connection string",
                )
            })?;
        if let Some(url) = &self.read_fallback_database_url {
            url.parse::<tokio_postgres::Config>().map_err(|_| {
                ConfigError::new(
                    "READ_FALLBACK_DATABASE_URL",
                    "is not a valid PostgreSQL connection string",
                )
            })?;
        }
        self.parse_log_format()?;
        if self.database_pool_size == 0 {
            return Err(ConfigError::new("DATABASE_POOL_SIZE", "must be at least 1"));
        }
        for (name, value) in [
            ("DATABASE_POOL_TIMEOUT_MS", self.database_pool_timeout_ms),
            (
                "DATABASE_CONNECT_TIMEOUT_MS",
                self.database_connect_timeout_ms,
            ),
            (
                "DATABASE_STATEMENT_TIMEOUT_MS",
                self.database_statement_timeout_ms,
            ),
            (
                "IDEMPOTENCY_KEY_TTL_SECONDS",
                self.idempotency_key_ttl_seconds,
            ),
            ("BATCH_MAX_BYTES", self.batch_max_bytes),
            (
                "BATCH_STATEMENT_TIMEOUT_MS",
                self.batch_statement_timeout_ms,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::new(name, "must be greater than 0"));
            }
        }
        if self.port == self.metrics_port {
            return Err(ConfigError::new(
                "METRICS_PORT",
                format!("must differ from PORT ({})", self.port),
            ));
        }
        if self.exam_year_min > self.exam_year_max {
            return Err(ConfigError::new(
                "EXAM_YEAR_MIN",
                format!("must not exceed EXAM_YEAR_MAX ({})", self.exam_year_max),
            ));
        }
        self.validate_serving(auth)?;
        crate::web::validate(self)?;
        if let Some(lag) = self.max_replica_lag_seconds {
            if !(lag.is_finite() && lag > 0.0) {
                return Err(ConfigError::new(
                    "MAX_REPLICA_LAG_SECONDS",
                    "must be a positive number",
                ));
            }
        }
        crate::statistics::Grading::new(self.pass_mark, &self.grade_bands).map_err(|problem| {
            let variable = if problem.starts_with("must be") {
                "PASS_MARK"
            } else {
                "GRADE_BANDS"
            };
            ConfigError::new(variable, problem)
        })?;
        for (name, value) in [
            (
                "PUBLICATION_REFRESH_SECONDS",
                self.publication_refresh_seconds,
            ),
            ("READ_CACHE_TTL_MS", self.read_cache_ttl_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::new(name, "must be greater than 0"));
            }
        }
        if let Some(variable) = auth.variable() {
            let tokens = self.tokens(auth);
            if tokens.is_empty() {
                return Err(ConfigError::new(
                    variable,
                    "must list at least one token for a function that requires one",
                ));
            }
            if tokens.iter().any(|t| t.len() < 16) {
                return Err(ConfigError::new(
                    variable,
                    "every token must be at least 16 characters",
                ));
            }
        }
        Ok(())
    }

    fn validate_serving(&self, auth: Auth) -> Result<(), ConfigError> {
        for (name, value) in [
            (
                "HTTP_HEADER_READ_TIMEOUT_MS",
                self.http_header_read_timeout_ms,
            ),
            ("HTTP_IDLE_TIMEOUT_MS", self.http_idle_timeout_ms),
            ("HTTP_BODY_READ_TIMEOUT_MS", self.http_body_read_timeout_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::new(name, "must be greater than 0"));
            }
        }
        if self.http_max_connections == 0 {
            return Err(ConfigError::new(
                "HTTP_MAX_CONNECTIONS",
                "must be at least 1",
            ));
        }
        if self.http_max_header_bytes < 8192 {
            return Err(ConfigError::new(
                "HTTP_MAX_HEADER_BYTES",
                "must be at least 8192",
            ));
        }
        if self.rate_limit_per_second > 0 && self.rate_limit_burst == 0 {
            return Err(ConfigError::new("RATE_LIMIT_BURST", "must be at least 1"));
        }
        if self.rate_limit_trusted_hops == 0 {
            return Err(ConfigError::new(
                "RATE_LIMIT_TRUSTED_HOPS",
                "must be at least 1",
            ));
        }
        match self.rate_limit_client_header.as_deref().map(str::trim) {
            Some(name) if warp::http::HeaderName::from_bytes(name.as_bytes()).is_err() => {
                return Err(ConfigError::new(
                    "RATE_LIMIT_CLIENT_HEADER",
                    "is not a valid header name",
                ));
            }
            None if auth == Auth::Public
                && self.k_service.is_some()
                && self.rate_limit_per_second > 0 =>
            {
                return Err(ConfigError::new(
                    "RATE_LIMIT_CLIENT_HEADER",
                    "must be set under Knative (every peer address is the queue-proxy), \
                     or RATE_LIMIT_PER_SECOND=0 to turn the per-client limit off",
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// The log format (validated at start-up).
    pub fn log_format(&self) -> LogFormat {
        self.parse_log_format().unwrap_or(LogFormat::Json)
    }

    fn parse_log_format(&self) -> Result<LogFormat, ConfigError> {
        match self.log_format_name.to_ascii_lowercase().as_str() {
            "json" => Ok(LogFormat::Json),
            "pretty" => Ok(LogFormat::Pretty),
            other => Err(ConfigError::new(
                "LOG_FORMAT",
                format!("must be `json` or `pretty`, got `{other}`"),
            )),
        }
    }

    /// The pooled database's connection settings, password applied.
    pub fn database(&self) -> tokio_postgres::Config {
        self.connection(&self.database_url)
    }

    /// The fallback database's connection settings, if configured.
    pub fn read_fallback_database(&self) -> Option<tokio_postgres::Config> {
        self.read_fallback_database_url
            .as_deref()
            .map(|url| self.connection(url))
    }

    fn connection(&self, url: &str) -> tokio_postgres::Config {
        let mut config: tokio_postgres::Config = url.parse().expect("validated at start-up");
        if let Some(password) = &self.database_password {
            config.password(password);
        }
        config.connect_timeout(Duration::from_millis(self.database_connect_timeout_ms));
        config
    }

    /// The accepted tokens of one class, blanks removed (none for `Public`).
    pub fn tokens(&self, class: Auth) -> Vec<String> {
        let listed = match class {
            Auth::Public => &[][..],
            Auth::ReadToken => &self.read_tokens[..],
            Auth::WriteToken => &self.write_tokens[..],
        };
        listed
            .iter()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect()
    }
}

fn from_envy(err: envy::Error) -> ConfigError {
    match err {
        envy::Error::MissingValue(field) => {
            ConfigError::new(&field.to_uppercase(), "is required but not set")
        }
        envy::Error::Custom(message) => {
            // envy reports parse failures as "... provided by FIELD_NAME".
            let variable = message
                .rsplit_once(" provided by ")
                .map(|(_, v)| v.to_uppercase())
                .or_else(|| message.split('`').nth(1).map(str::to_uppercase))
                .unwrap_or_else(|| "environment".to_owned());
            let problem = message
                .split(" provided by ")
                .next()
                .unwrap_or(&message)
                .to_owned();
            ConfigError::new(&variable, problem)
        }
    }
}

mod defaults {
    pub(super) fn port() -> u16 {
        8080
    }
    pub(super) fn bind_address() -> std::net::IpAddr {
        std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    }
    pub(super) fn metrics_port() -> u16 {
        9464
    }
    pub(super) fn pool_size() -> u32 {
        8
    }
    pub(super) fn pool_timeout_ms() -> u64 {
        1000
    }
    pub(super) fn connect_timeout_ms() -> u64 {
        2000
    }
    pub(super) fn consistency_wait_ms() -> u64 {
        250
    }
    pub(super) fn idempotency_key_ttl_seconds() -> u64 {
        24 * 60 * 60
    }
    pub(super) fn batch_max_bytes() -> u64 {
        32 * 1024 * 1024
    }
    pub(super) fn batch_statement_timeout_ms() -> u64 {
        120_000
    }
    pub(super) fn statement_timeout_ms() -> u64 {
        2000
    }
    pub(super) fn log_level() -> String {
        "info".to_owned()
    }
    pub(super) fn log_format() -> String {
        "json".to_owned()
    }
    pub(super) fn drain_seconds() -> u64 {
        20
    }
    pub(super) fn year_min() -> i32 {
        2000
    }
    pub(super) fn year_max() -> i32 {
        2100
    }
    pub(super) fn header_read_timeout_ms() -> u64 {
        10_000
    }
    pub(super) fn idle_timeout_ms() -> u64 {
        120_000
    }
    pub(super) fn body_read_timeout_ms() -> u64 {
        10_000
    }
    pub(super) fn max_connections() -> usize {
        1024
    }
    pub(super) fn max_header_bytes() -> usize {
        16 * 1024
    }
    pub(super) fn page_cache_seconds() -> u64 {
        86_400
    }
    pub(super) fn rate_limit_per_second() -> u32 {
        20
    }
    pub(super) fn rate_limit_burst() -> u32 {
        100
    }
    pub(super) fn rate_limit_trusted_hops() -> usize {
        1
    }
    pub(super) fn publication_refresh_seconds() -> u64 {
        5
    }
    pub(super) fn http_cache_max_age_seconds() -> u64 {
        60
    }
    pub(super) fn http_cache_stale_while_revalidate_seconds() -> u64 {
        30
    }
    pub(super) fn http_cache_not_found_max_age_seconds() -> u64 {
        10
    }
    pub(super) fn read_cache_ttl_ms() -> u64 {
        2000
    }
    pub(super) fn pass_mark() -> i32 {
        crate::statistics::DEFAULT_PASS_MARK
    }
    pub(super) fn grade_bands() -> String {
        crate::statistics::DEFAULT_GRADE_BANDS.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const URL: (&str, &str) = ("DATABASE_URL", "postgres://app@127.0.0.1:6432/exam_results");

    #[test]
    fn a_read_function_needs_only_the_database_url() {
        let config = Config::from_iter(vars(&[URL]), Auth::Public).unwrap();
        assert_eq!(config.port, 8080);
        assert_eq!(config.metrics_port, 9464);
        assert_eq!(config.database_pool_size, 8);
        assert_eq!(config.log_format(), LogFormat::Json);
        assert_eq!((config.exam_year_min, config.exam_year_max), (2000, 2100));
    }

    #[test]
    fn a_missing_database_url_is_named() {
        let err = Config::from_iter(vars(&[]), Auth::Public).unwrap_err();
        assert_eq!(err.variable, "DATABASE_URL");
        assert!(err.problem.contains("required"));
    }

    #[test]
    fn a_non_numeric_port_is_named_with_its_value() {
        let err = Config::from_iter(vars(&[URL, ("PORT", "eighty")]), Auth::Public).unwrap_err();
        assert_eq!(err.variable, "PORT");
        assert!(err.problem.contains("eighty"), "{}", err.problem);
    }

    #[test]
    fn an_unknown_log_format_is_rejected() {
        let err = Config::from_iter(vars(&[URL, ("LOG_FORMAT", "xml")]), Auth::Public).unwrap_err();
        assert_eq!(err.variable, "LOG_FORMAT");
    }

    #[test]
    fn a_write_function_without_tokens_refuses_to_start() {
        let err = Config::from_iter(vars(&[URL]), Auth::WriteToken).unwrap_err();
        assert_eq!(err.variable, "WRITE_TOKENS");
    }

    #[test]
    fn short_write_tokens_are_rejected() {
        let err = Config::from_iter(vars(&[URL, ("WRITE_TOKENS", "short")]), Auth::WriteToken)
            .unwrap_err();
        assert_eq!(err.variable, "WRITE_TOKENS");
    }

    #[test]
    fn write_tokens_are_split_on_commas() {
        let config = Config::from_iter(
            vars(&[URL, ("WRITE_TOKENS", "aaaaaaaaaaaaaaaa,bbbbbbbbbbbbbbbb")]),
            Auth::WriteToken,
        )
        .unwrap();
        assert_eq!(
            config.tokens(Auth::WriteToken),
            vec!["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"]
        );
        assert!(config.tokens(Auth::ReadToken).is_empty());
    }

    #[test]
    fn a_function_that_requires_a_read_token_needs_read_tokens() {
        let err = Config::from_iter(
            vars(&[URL, ("WRITE_TOKENS", "aaaaaaaaaaaaaaaa")]),
            Auth::ReadToken,
        )
        .unwrap_err();
        assert_eq!(err.variable, "READ_TOKENS");
        let config = Config::from_iter(
            vars(&[URL, ("READ_TOKENS", "rrrrrrrrrrrrrrrr")]),
            Auth::ReadToken,
        )
        .unwrap();
        assert_eq!(config.tokens(Auth::ReadToken), vec!["rrrrrrrrrrrrrrrr"]);
        assert!(config.tokens(Auth::WriteToken).is_empty());
    }

    #[test]
    fn an_invalid_database_url_is_rejected_without_echoing_it() {
        let err = Config::from_iter(
            vars(&[("DATABASE_URL", "postgres://u:secret@host:notaport/db")]),
            Auth::Public,
        )
        .unwrap_err();
        assert_eq!(err.variable, "DATABASE_URL");
        assert!(!err.to_string().contains("secret"));
    }

    #[test]
    fn the_metrics_port_must_differ_from_the_serving_port() {
        let err = Config::from_iter(
            vars(&[URL, ("PORT", "9000"), ("METRICS_PORT", "9000")]),
            Auth::Public,
        )
        .unwrap_err();
        assert_eq!(err.variable, "METRICS_PORT");
    }

    #[test]
    fn serving_limits_have_safe_defaults_and_reject_zero() {
        let config = Config::from_iter(vars(&[URL]), Auth::Public).unwrap();
        assert_eq!(config.http_idle_timeout_ms, 120_000);
        assert_eq!(config.http_max_connections, 1024);
        for variable in [
            "HTTP_HEADER_READ_TIMEOUT_MS",
            "HTTP_IDLE_TIMEOUT_MS",
            "HTTP_BODY_READ_TIMEOUT_MS",
            "HTTP_MAX_CONNECTIONS",
        ] {
            let err = Config::from_iter(vars(&[URL, (variable, "0")]), Auth::Public).unwrap_err();
            assert_eq!(err.variable, variable);
        }
        let err = Config::from_iter(vars(&[URL, ("HTTP_MAX_HEADER_BYTES", "100")]), Auth::Public)
            .unwrap_err();
        assert_eq!(err.variable, "HTTP_MAX_HEADER_BYTES");
    }

    #[test]
    fn under_knative_the_rate_limit_needs_a_client_header() {
        let knative = ("K_SERVICE", "get-result");
        let err = Config::from_iter(vars(&[URL, knative]), Auth::Public).unwrap_err();
        assert_eq!(err.variable, "RATE_LIMIT_CLIENT_HEADER");
        assert!(Config::from_iter(
            vars(&[
                URL,
                knative,
                ("RATE_LIMIT_CLIENT_HEADER", "x-forwarded-for")
            ]),
            Auth::Public
        )
        .is_ok());
        assert!(Config::from_iter(
            vars(&[URL, knative, ("RATE_LIMIT_PER_SECOND", "0")]),
            Auth::Public
        )
        .is_ok());
        let err = Config::from_iter(
            vars(&[URL, ("RATE_LIMIT_CLIENT_HEADER", "bad header")]),
            Auth::Public,
        )
        .unwrap_err();
        assert_eq!(err.variable, "RATE_LIMIT_CLIENT_HEADER");
    }

    #[test]
    fn grade_bands_that_leave_a_mark_ungraded_are_named() {
        let err = Config::from_iter(vars(&[URL, ("GRADE_BANDS", "A:80,B:70")]), Auth::Public)
            .unwrap_err();
        assert_eq!(err.variable, "GRADE_BANDS");
        let err = Config::from_iter(vars(&[URL, ("PASS_MARK", "101")]), Auth::Public).unwrap_err();
        assert_eq!(err.variable, "PASS_MARK");
    }

    #[test]
    fn the_password_variable_overrides_the_url() {
        let config = Config::from_iter(
            vars(&[
                ("DATABASE_URL", "postgres://app:old@127.0.0.1/db"),
                ("DATABASE_PASSWORD", "new"),
            ]),
            Auth::Public,
        )
        .unwrap();
        assert_eq!(config.database().get_password(), Some(&b"new"[..]));
    }
}
