//! Loopback-only addressing: URL parsing, target resolution, source-address spreading, fd limit, and the
//! optional TLS layer (`wss://`, `https://` with `--ca`).

use anyhow::{anyhow, bail, Context, Result};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;

/// A parsed `ws://`/`wss://` or `http://`/`https://` base URL that resolved to a loopback address.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// `Host` header value as given by the user.
    pub host_header: String,
    /// For `wss://`/`https://`: the client configuration (trusting `--ca`) and the name to verify.
    pub tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("addr", &self.addr)
            .field("host_header", &self.host_header)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// The TLS client configuration trusting the PEM CA file `ca` (ALPN http/1.1).
pub fn tls_client(ca: &str) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("--ca {ca}"))? {
        roots
            .add(cert.with_context(|| format!("--ca {ca}"))?)
            .with_context(|| format!("--ca {ca}"))?;
    }
    if roots.is_empty() {
        bail!("--ca {ca}: no certificate found");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Parse `scheme://host[:port][/...]` and resolve it; refuse anything that is not loopback. `schemes` are the
/// plain scheme and its TLS one (`ws`/`wss`, `http`/`https`); the TLS one needs `tls` (from `--ca`).
pub fn resolve(
    url: &str,
    schemes: [&str; 2],
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<Target> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| anyhow!("URL {url:?} has no scheme"))?;
    if !schemes.contains(&scheme) {
        bail!("URL {url:?}: scheme must be one of {schemes:?}");
    }
    let secure = scheme == schemes[1];
    if secure && tls.is_none() {
        bail!("URL {url:?}: TLS needs --ca FILE (the PEM CA that signed the server's certificate)");
    }
    let default_port = if secure { 443 } else { 80 };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.is_empty() {
        bail!("URL {url:?} has no host");
    }
    let with_port = if authority.starts_with('[') {
        if authority.contains("]:") {
            authority.to_string()
        } else {
            format!("{authority}:{default_port}")
        }
    } else if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:{default_port}")
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
    let tls = match tls.filter(|_| secure) {
        None => None,
        Some(config) => {
            let host = match authority.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or(""),
                None => authority.split(':').next().unwrap_or(""),
            };
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .with_context(|| format!("{host} is not a valid TLS server name"))?;
            Some((tokio_rustls::TlsConnector::from(config.clone()), name))
        }
    };
    Ok(Target {
        addr,
        host_header: authority.to_string(),
        tls,
    })
}

/// A client connection, plain or TLS.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Connects to `target` (from `source` when given) and completes the TLS handshake for a TLS target.
pub async fn open(target: &Target, source: Option<Ipv4Addr>) -> std::io::Result<Conn> {
    let tcp = connect(target.addr, source).await?;
    match &target.tls {
        None => Ok(Conn::Plain(tcp)),
        Some((connector, name)) => Ok(Conn::Tls(Box::new(
            connector.connect(name.clone(), tcp).await?,
        ))),
    }
}

impl Conn {
    /// The local port (seeds the WebSocket masks).
    pub fn local_port(&self) -> Option<u16> {
        let tcp = match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref().0,
        };
        tcp.local_addr().ok().map(|a| a.port())
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
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
        const WS: [&str; 2] = ["ws", "wss"];
        assert!(resolve("ws://10.1.2.3:6001", WS, None).is_err());
        assert!(resolve("ws://8.8.8.8", WS, None).is_err());
        assert!(resolve("http://127.0.0.1:6001", WS, None).is_err());
        let no_ca = resolve("wss://127.0.0.1:6001", WS, None).unwrap_err();
        assert!(no_ca.to_string().contains("--ca"), "{no_ca}");
        let t = resolve("ws://127.0.0.1:6001/app/x", WS, None).unwrap();
        assert_eq!(t.addr.port(), 6001);
        assert!(resolve("ws://[::1]:6001", WS, None)
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
