//! The per-client rate limit on public (read) routes: one token bucket per
//! client (GCRA, from the `governor` crate), refilled at
//! `RATE_LIMIT_PER_SECOND` up to `RATE_LIMIT_BURST`.
//!
//! The client is the connection's peer address, or, when
//! `RATE_LIMIT_CLIENT_HEADER` is set, an entry of that header counted
//! `RATE_LIMIT_TRUSTED_HOPS` from the right. A header is only as honest as the
//! proxies that write it: a client reaching the function without passing
//! through them can name itself anything and get a fresh bucket per request,
//! so set the header only where every request comes through those proxies
//! (in Knative, always: only the queue-proxy can connect). The peer address
//! cannot be forged, but behind proxies it is the proxy: every client then
//! shares one bucket. Each process keeps its own buckets, so with N pods a
//! client gets up to N times the rate; the ingress or CDN limit is the first
//! line (docs/deploy.md).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use warp::http::{HeaderMap, HeaderName};

use crate::config::Config;

/// Longest client key kept (a header value can be anything).
const MAX_KEY_LEN: usize = 64;

/// How often buckets that have refilled completely are forgotten.
const FORGET_EVERY: Duration = Duration::from_secs(10);

/// The per-client limiter of one process.
pub struct RateLimit {
    buckets: DefaultKeyedRateLimiter<String>,
    header: Option<HeaderName>,
    hops: usize,
}

impl RateLimit {
    /// The limiter a configuration asks for, or `None` when it is turned off
    /// (`RATE_LIMIT_PER_SECOND=0`).
    pub fn from_config(config: &Config) -> Option<Arc<Self>> {
        let rate = NonZeroU32::new(config.rate_limit_per_second)?;
        let burst = NonZeroU32::new(config.rate_limit_burst).unwrap_or(rate);
        Some(Arc::new(Self {
            buckets: DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            header: config
                .rate_limit_client_header
                .as_deref()
                .and_then(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok()),
            hops: config.rate_limit_trusted_hops.max(1),
        }))
    }

    /// Takes one token from the client's bucket: `Ok` to serve the request,
    /// `Err(seconds)` to answer 429 with that `Retry-After`.
    pub fn check(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Result<(), u64> {
        let key = self.client_key(headers, peer);
        self.buckets.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.buckets.clock().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }

    /// Who the client is (see the module docs).
    pub fn client_key(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> String {
        let from_header = self.header.as_ref().and_then(|name| {
            let entries: Vec<&str> = headers
                .get_all(name)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .map(str::trim)
                .filter(|entry| !entry.is_empty())
                .collect();
            entries.len().checked_sub(self.hops).map(|i| entries[i])
        });
        match (from_header, peer) {
            (Some(entry), _) => entry.chars().take(MAX_KEY_LEN).collect(),
            (None, Some(peer)) => peer.ip().to_string(),
            (None, None) => "unknown".to_owned(),
        }
    }

    /// How many clients have a bucket right now.
    pub fn clients(&self) -> usize {
        self.buckets.len()
    }

    /// Forgets full buckets every few seconds, so memory follows the clients
    /// seen recently, not every client ever seen.
    pub fn spawn_upkeep(self: &Arc<Self>) {
        let limiter = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FORGET_EVERY);
            loop {
                tick.tick().await;
                let Some(limiter) = limiter.upgrade() else {
                    return;
                };
                limiter.buckets.retain_recent();
                limiter.buckets.shrink_to_fit();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Auth;

    fn limiter(extra: &[(&str, &str)]) -> Arc<RateLimit> {
        let mut vars = vec![("DATABASE_URL".to_owned(), "postgres://a@b/c".to_owned())];
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        RateLimit::from_config(&Config::from_iter(vars, Auth::Public).unwrap()).unwrap()
    }

    fn headers(pairs: &[(&'static str, &'static [u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, warp::http::HeaderValue::from_bytes(value).unwrap());
        }
        map
    }

    const PEER: Option<SocketAddr> = Some(SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7)),
        40000,
    ));

    #[test]
    fn without_a_header_the_client_is_the_peer_ip() {
        let limiter = limiter(&[]);
        let spoofed = headers(&[("x-forwarded-for", b"1.2.3.4")]);
        assert_eq!(limiter.client_key(&spoofed, PEER), "10.0.0.7");
    }

    #[test]
    fn a_trusted_header_is_read_from_the_right() {
        let limiter = limiter(&[
            ("RATE_LIMIT_CLIENT_HEADER", "X-Forwarded-For"),
            ("RATE_LIMIT_TRUSTED_HOPS", "2"),
        ]);
        let chain = headers(&[
            ("x-forwarded-for", b"6.6.6.6, 203.0.113.9"),
            ("x-forwarded-for", b"10.1.1.1"),
        ]);
        assert_eq!(limiter.client_key(&chain, PEER), "203.0.113.9");
        let short = headers(&[("x-forwarded-for", b"203.0.113.9")]);
        assert_eq!(limiter.client_key(&short, PEER), "10.0.0.7");
        let binary = headers(&[("x-forwarded-for", b"\xff\xfe, 1.1.1.1")]);
        assert_eq!(limiter.client_key(&binary, PEER), "10.0.0.7");
    }

    #[test]
    fn a_client_over_its_burst_is_told_when_to_retry() {
        let limiter = limiter(&[("RATE_LIMIT_PER_SECOND", "1"), ("RATE_LIMIT_BURST", "2")]);
        let none = HeaderMap::new();
        assert!(limiter.check(&none, PEER).is_ok());
        assert!(limiter.check(&none, PEER).is_ok());
        assert_eq!(limiter.check(&none, PEER), Err(1));
        let other = Some("10.0.0.8:1".parse().unwrap());
        assert!(
            limiter.check(&none, other).is_ok(),
            "buckets are per client"
        );
        assert_eq!(limiter.clients(), 2);
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let vars = vec![
            ("DATABASE_URL".to_owned(), "postgres://a@b/c".to_owned()),
            ("RATE_LIMIT_PER_SECOND".to_owned(), "0".to_owned()),
        ];
        assert!(RateLimit::from_config(&Config::from_iter(vars, Auth::Public).unwrap()).is_none());
    }
}
