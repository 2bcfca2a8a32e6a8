//! Loopback-only addressing: URL parsing, target resolution, source-address spreading, fd limit.

use anyhow::{anyhow, bail, Context, Result};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use tokio::net::{TcpSocket, TcpStream};

/// A parsed `ws://` or `http://` base URL that resolved to a loopback address.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// `Host` header value as given by the user.
    pub host_header: String,
}

/// Parse `scheme://host[:port][/...]` and resolve it; refuse anything that is not loopback.
pub fn resolve(url: &str, schemes: &[&str]) -> Result<Target> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| anyhow!("URL {url:?} has no scheme"))?;
    if !schemes.contains(&scheme) {
        bail!("URL {url:?}: scheme must be one of {schemes:?} (TLS is not supported)");
    }
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.is_empty() {
        bail!("URL {url:?} has no host");
    }
    let with_port = if authority.starts_with('[') {
        if authority.contains("]:") {
            authority.to_string()
        } else {
            format!("{authority}:80")
        }
    } else if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addrs: Vec<SocketAddr> = with_port
        .to_socket_addrs()
        .with_context(|| format!("resolving {authority}"))?
        .collect();
    if addrs.is_empty() {
        bail!("{authority} did not resolve");
    }
    if let Some(bad) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        bail!("refusing non-loopback target {authority} ({}): this generator only drives servers on 127.0.0.0/8 or ::1", bad.ip());
    }
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .copied()
        .unwrap_or(addrs[0]);
    Ok(Target {
        addr,
        host_header: authority.to_string(),
    })
}

/// Local source addresses 127.0.0.2, 127.0.0.3, ... (skipping .0 and .255 last octets).
pub fn source_addrs(count: usize) -> Vec<Ipv4Addr> {
    let mut out = Vec::with_capacity(count);
    let mut n: u32 = u32::from(Ipv4Addr::new(127, 0, 0, 2));
    while out.len() < count {
        let last = n & 0xff;
        if last != 0 && last != 255 {
            out.push(Ipv4Addr::from(n));
        }
        n += 1;
        if n >= u32::from(Ipv4Addr::new(127, 255, 255, 255)) {
            break;
        }
    }
    out
}

/// Automatic number of source addresses for `connections` concurrent sockets.
pub fn auto_sources(connections: usize) -> usize {
    (connections / 20_000 + 1).max(4)
}

/// Connect to `target`, binding to `source` first when given (IPv4 targets only).
/// `IP_BIND_ADDRESS_NO_PORT` lets the kernel pick the port per 4-tuple, so each source
/// address gives a full ephemeral range.
pub async fn connect(target: SocketAddr, source: Option<Ipv4Addr>) -> std::io::Result<TcpStream> {
    match (source, target.ip()) {
        (Some(src), IpAddr::V4(_)) => {
            let sock = TcpSocket::new_v4()?;
            set_bind_no_port(&sock);
            sock.bind(SocketAddr::new(IpAddr::V4(src), 0))?;
            let stream = sock.connect(target).await?;
            stream.set_nodelay(true)?;
            Ok(stream)
        }
        _ => {
            let stream = TcpStream::connect(target).await?;
            stream.set_nodelay(true)?;
            Ok(stream)
        }
    }
}

fn set_bind_no_port(sock: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: valid fd owned by `sock`, option value is a c_int that outlives the call.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Raise the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls with a valid out-pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur;
            }
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_non_loopback() {
        assert!(resolve("ws://10.1.2.3:6001", &["ws"]).is_err());
        assert!(resolve("ws://8.8.8.8", &["ws"]).is_err());
        assert!(resolve("wss://127.0.0.1:6001", &["ws"]).is_err());
        let t = resolve("ws://127.0.0.1:6001/app/x", &["ws"]).unwrap();
        assert_eq!(t.addr.port(), 6001);
        assert!(resolve("ws://[::1]:6001", &["ws"])
            .unwrap()
            .addr
            .ip()
            .is_loopback());
    }

    #[test]
    fn sources_skip_broadcast_octets() {
        let s = source_addrs(300);
        assert_eq!(s[0], Ipv4Addr::new(127, 0, 0, 2));
        assert!(s.iter().all(|a| a.octets()[3] != 0 && a.octets()[3] != 255));
        assert_eq!(s.len(), 300);
    }
}
