//! `RATE_LIMIT` requests (chats and MCP tool calls) per user per minute: a
//! burst of the whole minute's allowance is fine, then one request every
//! `60 / RATE_LIMIT` seconds, and the wait is exact (`Retry-After`). This is
//! GCRA, the token bucket's twin that keeps one timestamp per user.
//!
//! With `REDIS_URL` the budget lives in Redis, shared by every gateway
//! replica: one Lua script per request reads and moves the user's
//! timestamp atomically (one round trip, Redis's own clock). Without it, or
//! while Redis does not answer, each gateway keeps the budget itself
//! (`governor`, sharded in memory, idle users forgotten by a background
//! sweep); the fallback is logged once when it starts and once when Redis
//! is back, and `/health` says which one is in use.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

/// How long a request waits for Redis before the local budget decides.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// After Redis failed, how long requests use the local budget before
/// trying Redis again (so that an outage costs no request a timeout).
const REDIS_RETRY_AFTER: Duration = Duration::from_secs(2);
const UNREACHABLE: &str =
    "Redis unreachable: rate limits are kept by this gateway alone until it answers";
/// How often idle users are forgotten by the local limiter.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// GCRA on Redis's clock: KEYS[1] the user's key, ARGV[1] the interval
/// between requests and ARGV[2] the burst tolerance, in microseconds.
/// Returns 0 when the request is allowed (and moves the user's theoretical
/// arrival time on), or the microseconds to wait.
const GCRA: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > 0 then return wait end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000))
return 0
";

/// Where the per-user budgets live (`REDIS_URL`, `REDIS_KEY_PREFIX`).
#[derive(Debug, Clone, Default)]
pub struct SharedBudget {
    pub url: Option<String>,
    pub key_prefix: String,
}

/// Per-user request budgets.
pub struct RateLimiter {
    local: Arc<DefaultKeyedRateLimiter<String>>,
    redis: Option<Redis>,
}

struct Redis {
    /// Set once the first connection is made (in the background: the
    /// gateway serves before Redis answers).
    connection: Arc<OnceCell<ConnectionManager>>,
    script: redis::Script,
    key_prefix: String,
    interval_us: u64,
    tolerance_us: u64,
    /// Whether the last attempt failed, and until when not to try again.
    down: Arc<AtomicBool>,
    retry_at: std::sync::Mutex<Option<std::time::Instant>>,
}

impl RateLimiter {
    /// A limiter of `per_minute` requests per user, kept in Redis when
    /// `shared.url` is set. Starts sweeping idle users (call inside a
    /// Tokio runtime).
    pub fn new(per_minute: NonZeroU32, shared: &SharedBudget) -> anyhow::Result<Self> {
        let local = Arc::new(DefaultKeyedRateLimiter::keyed(Quota::per_minute(
            per_minute,
        )));
        let sweeper = Arc::downgrade(&local);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            every.tick().await;
            loop {
                every.tick().await;
                let Some(local) = sweeper.upgrade() else {
                    return;
                };
                // A user idle for a minute has a full budget again:
                // forgetting them changes nothing.
                local.retain_recent();
                local.shrink_to_fit();
            }
        });
        let redis = match &shared.url {
            Some(url) => Some(Redis::start(url, &shared.key_prefix, per_minute)?),
            None => None,
        };
        Ok(Self { local, redis })
    }

    /// Takes one request from `user`'s budget, or says how long to wait.
    pub async fn check(&self, user: &str) -> Result<(), Duration> {
        if let Some(redis) = &self.redis
            && let Some(verdict) = redis.check(user).await
        {
            return verdict;
        }
        self.local
            .check_key(&user.to_owned())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Where budgets are kept now: `redis`, `local`, or `local (redis
    /// unreachable)`.
    pub fn backend(&self) -> &'static str {
        match &self.redis {
            None => "local",
            Some(redis)
                if redis.connection.get().is_none() || redis.down.load(Ordering::Relaxed) =>
            {
                "local (redis unreachable)"
            }
            Some(_) => "redis",
        }
    }
}

impl Redis {
    fn start(url: &str, key_prefix: &str, per_minute: NonZeroU32) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|error| anyhow::anyhow!("REDIS_URL is not a usable Redis URL: {error}"))?;
        let connection = Arc::new(OnceCell::new());
        let down = Arc::new(AtomicBool::new(false));
        let (cell, first_down) = (Arc::clone(&connection), Arc::clone(&down));
        tokio::spawn(async move {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(REDIS_TIMEOUT))
                .set_response_timeout(Some(REDIS_TIMEOUT))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_secs(2));
            loop {
                match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
                    Ok(manager) => {
                        let _ = cell.set(manager);
                        return;
                    }
                    Err(error) => {
                        if !first_down.swap(true, Ordering::Relaxed) {
                            tracing::warn!(%error, "{UNREACHABLE}");
                        }
                    }
                }
                tokio::time::sleep(REDIS_RETRY_AFTER).await;
            }
        });
        let interval_us = 60_000_000 / u64::from(per_minute.get());
        Ok(Self {
            connection,
            script: redis::Script::new(GCRA),
            key_prefix: key_prefix.to_owned(),
            interval_us,
            tolerance_us: interval_us * (u64::from(per_minute.get()) - 1),
            down,
            retry_at: std::sync::Mutex::new(None),
        })
    }

    /// Redis's verdict, or `None` when Redis cannot give one now.
    async fn check(&self, user: &str) -> Option<Result<(), Duration>> {
        let connection = self.connection.get()?;
        {
            let mut retry_at = self.retry_at.lock().unwrap_or_else(|e| e.into_inner());
            match *retry_at {
                Some(at) if std::time::Instant::now() < at => return None,
                _ => *retry_at = None,
            }
        }
        let mut connection = connection.clone();
        let answer = tokio::time::timeout(
            REDIS_TIMEOUT,
            self.script
                .key(format!("{}{user}", self.key_prefix))
                .arg(self.interval_us)
                .arg(self.tolerance_us)
                .invoke_async::<u64>(&mut connection),
        )
        .await;
        match answer {
            Ok(Ok(wait_us)) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!("Redis answers again: rate limits are shared by every gateway");
                }
                Some(if wait_us == 0 {
                    Ok(())
                } else {
                    Err(Duration::from_micros(wait_us))
                })
            }
            failed => {
                let error = match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => format!("no answer within {REDIS_TIMEOUT:?}"),
                };
                if !self.down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%error, "{UNREACHABLE}");
                }
                *self.retry_at.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(std::time::Instant::now() + REDIS_RETRY_AFTER);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_minute: u32) -> RateLimiter {
        RateLimiter::new(
            NonZeroU32::new(per_minute).unwrap(),
            &SharedBudget::default(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_minutes_allowance_then_a_wait_per_user() {
        let limiter = limiter(3);
        for _ in 0..3 {
            assert!(limiter.check("alice").await.is_ok());
        }
        let wait = limiter.check("alice").await.unwrap_err();
        assert!(
            wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(limiter.check("bob").await.is_ok(), "budgets are per user");
        assert_eq!(limiter.backend(), "local");
    }
}
