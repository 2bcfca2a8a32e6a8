//! A database app manager configured in a build without its Cargo feature stops the server at start, naming
//! the feature (the default build has none of them).
#![cfg(not(feature = "postgres"))]

use std::process::Command;

#[test]
fn a_driver_not_compiled_in_stops_the_server_naming_the_feature() {
    let out = Command::new(env!("CARGO_BIN_EXE_sockudo"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port().to_string()
        })
        .env("METRICS_ENABLED", "false")
        .env("APP_MANAGER_DRIVER", "postgresql")
        .output()
        .expect("run sockudo");
    assert!(!out.status.success(), "the server must not start");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--features postgres"), "{text}");
}
