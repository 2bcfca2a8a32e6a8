//! A backend configured in a build without its Cargo feature stops the server at start, naming the feature:
//! a database app manager, a Redis cache or rate limiter. These run in builds that leave the features out (the
//! default build has none of them).
#![cfg(any(not(feature = "postgres"), not(feature = "redis")))]

use std::process::Command;

/// Starts the server with `var=value` and nothing else configured; asserts it refuses to start and returns
/// what it printed.
fn refused_start(var: &str, value: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sockudo"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port().to_string()
        })
        .env("METRICS_ENABLED", "false")
        .env(var, value)
        .output()
        .expect("run sockudo");
    assert!(
        !out.status.success(),
        "{var}={value}: the server must not start"
    );
    String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout)
}

#[cfg(not(feature = "postgres"))]
#[test]
fn a_database_driver_not_compiled_in_stops_the_server_naming_the_feature() {
    let text = refused_start("APP_MANAGER_DRIVER", "postgresql");
    assert!(text.contains("--features postgres"), "{text}");
}

#[cfg(not(feature = "redis"))]
#[test]
fn a_redis_cache_or_limiter_not_compiled_in_stops_the_server_naming_the_feature() {
    let text = refused_start("CACHE_DRIVER", "redis");
    assert!(
        text.contains("cache.driver") && text.contains("feature `redis`"),
        "{text}"
    );
    let text = refused_start("RATE_LIMITER_DRIVER", "redis");
    assert!(
        text.contains("rate_limiter.driver") && text.contains("feature `redis`"),
        "{text}"
    );
    let text = refused_start("RATE_LIMITER_DRIVER", "leaky-bucket");
    assert!(text.contains("expected one of"), "{text}");
}
