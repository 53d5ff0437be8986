//! Login throttling: failed guesses cost time, per account and per client address.
//!
//! Every login attempt (and every password confirmation, see `routes::devices`) is charged
//! *before* the password is checked, successful ones included: a client that is over its quota
//! learns nothing, not even from a correct guess. `governor`'s limiters cannot give a charge
//! back, so a successful attempt stays counted; the default quotas leave ample room for people
//! who mistype now and then.
//!
//! - **Per account** (the e-mail address as typed, trimmed and lower-cased, known or not: an
//!   unknown address is throttled alike, so the answer tells nothing about who has an account).
//!   This stops a spread-out guessing attack on one account, at the price that an attacker can
//!   slow down a victim's own logins for as long as they keep guessing.
//! - **Per client address**, the TCP peer (the demo serves directly; an `X-Forwarded-For` header
//!   is never trusted, since anyone can send one). IPv6 clients are counted per /64, which one
//!   customer usually holds in full. This stops one client from guessing across many accounts.
//!
//! Over quota, the answer is 429 with `Retry-After`.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::error::Error;

/// How many attempts are allowed: `burst` at once, then one more every `every`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub burst: u32,
    pub every: Duration,
}

/// The quotas for [`LoginThrottle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginLimits {
    pub per_account: Limit,
    pub per_address: Limit,
}

impl Default for LoginLimits {
    /// 10 attempts per account, then one per 30 seconds (120 an hour at most); 30 per address,
    /// then one per 5 seconds.
    fn default() -> Self {
        Self {
            per_account: Limit {
                burst: 10,
                every: Duration::from_secs(30),
            },
            per_address: Limit {
                burst: 30,
                every: Duration::from_secs(5),
            },
        }
    }
}

/// Forgotten keys are dropped once this many are tracked, so a flood of made-up e-mail
/// addresses cannot grow memory without bound.
const PRUNE_ABOVE: usize = 10_000;

/// The limiters, shared by `/login`, `/api/login` and the password confirmations.
pub struct LoginThrottle {
    accounts: DefaultKeyedRateLimiter<String>,
    addresses: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

impl LoginThrottle {
    pub fn new(limits: LoginLimits) -> Result<Self, Error> {
        Ok(Self {
            accounts: DefaultKeyedRateLimiter::keyed(quota(limits.per_account)?),
            addresses: DefaultKeyedRateLimiter::keyed(quota(limits.per_address)?),
            clock: DefaultClock::default(),
        })
    }

    /// Charges one attempt to log in as `email` from `client`; [`Error::TooManyAttempts`] when
    /// either is over its quota.
    pub fn attempt(&self, email: &str, client: Option<IpAddr>) -> Result<(), Error> {
        if let Some(address) = client.map(address_key) {
            self.check(&self.addresses, &address)?;
        }
        self.check(&self.accounts, &email.trim().to_lowercase())
    }

    fn check<K>(&self, limiter: &DefaultKeyedRateLimiter<K>, key: &K) -> Result<(), Error>
    where
        K: Clone + Eq + std::hash::Hash,
    {
        if limiter.len() > PRUNE_ABOVE {
            limiter.retain_recent();
        }
        limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            Error::TooManyAttempts {
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            }
        })
    }
}

fn quota(limit: Limit) -> Result<Quota, Error> {
    let invalid = || Error::Internal(format!("invalid login limit {limit:?}"));
    let burst = NonZeroU32::new(limit.burst).ok_or_else(invalid)?;
    Ok(Quota::with_period(limit.every)
        .ok_or_else(invalid)?
        .allow_burst(burst))
}

/// IPv6 clients usually hold a whole /64: count it as one address.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

/// The TCP peer's address, when the server records it (`into_make_service_with_connect_info`);
/// `None` otherwise (e.g. a router driven in-process by tests), and the address is then not
/// throttled.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_quota_runs_out_and_says_how_long_to_wait() {
        let throttle = LoginThrottle::new(LoginLimits {
            per_account: Limit {
                burst: 2,
                every: Duration::from_secs(60),
            },
            ..LoginLimits::default()
        })
        .unwrap();
        throttle.attempt("Bob@example.com", None).unwrap();
        throttle.attempt(" bob@example.com", None).unwrap();
        match throttle.attempt("bob@example.com", None) {
            Err(Error::TooManyAttempts { retry_after_secs }) => {
                assert!((1..=60).contains(&retry_after_secs), "{retry_after_secs}");
            }
            other => panic!("{other:?}"),
        }
        assert!(throttle.attempt("alice@example.com", None).is_ok());
        let zero = Limit {
            burst: 0,
            every: Duration::from_secs(1),
        };
        assert!(
            LoginThrottle::new(LoginLimits {
                per_address: zero,
                ..LoginLimits::default()
            })
            .is_err()
        );
    }
}
