//! Loading the certificate chain and private key (PEM) into a rustls server configuration, with errors that name
//! the file and what is wrong with it. Used at start and on SIGHUP.

use crate::config::SslConfig;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::sync::Arc;

/// Why the TLS material cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    /// `ssl.cert_path` cannot be read or holds no usable certificate.
    #[error("ssl.cert_path {path}: {message}")]
    Certificate {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// `ssl.key_path` cannot be read or holds no usable private key.
    #[error("ssl.key_path {path}: {message}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Both files read, but rustls refuses the pair (key does not match the certificate, unsupported key type).
    #[error("ssl.cert_path {cert} with ssl.key_path {key}: {message}")]
    Pair {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// What rustls said.
        message: String,
    },
}

/// The only application protocol served: HTTP/1.1 (WebSocket upgrades and REST).
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Reads `ssl.cert_path` and `ssl.key_path` and builds the server configuration every new TLS connection uses.
///
/// Session resumption is off: a resumption cache shared by every shard would be a lock on the accept path, and a
/// client reconnecting lands on any shard (`SO_REUSEPORT`), so a per-shard cache would rarely hit.
pub fn load(ssl: &SslConfig) -> Result<Arc<ServerConfig>, MaterialError> {
    let chain = read_chain(&ssl.cert_path)?;
    let key = read_key(&ssl.key_path)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pair_error = |e: rustls::Error| MaterialError::Pair {
        cert: ssl.cert_path.clone(),
        key: ssl.key_path.clone(),
        message: e.to_string(),
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(pair_error)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(pair_error)?;
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

fn read_chain(path: &str) -> Result<Vec<CertificateDer<'static>>, MaterialError> {
    let bad = |message: String| MaterialError::Certificate {
        path: path.to_string(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(pem_problem(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(pem_problem(e)))?;
    if chain.is_empty() {
        return Err(bad(
            "no \"BEGIN CERTIFICATE\" section found (expected a PEM certificate chain, leaf first)"
                .into(),
        ));
    }
    Ok(chain)
}

fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, MaterialError> {
    let bad = |message: String| MaterialError::Key {
        path: path.to_string(),
        message,
    };
    match PrivateKeyDer::from_pem_file(path) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => {
            let encrypted = std::fs::read_to_string(path)
                .is_ok_and(|text| text.contains("ENCRYPTED PRIVATE KEY"));
            Err(bad(if encrypted {
                "the key is encrypted; ssl.passphrase is not supported, store the key unencrypted \
                 (readable by the server's user only)"
                    .into()
            } else {
                "no private key found (expected PEM \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \
                 \"BEGIN EC PRIVATE KEY\")"
                    .into()
            }))
        }
        Err(e) => Err(bad(pem_problem(e))),
    }
}

fn pem_problem(e: pem::Error) -> String {
    match e {
        pem::Error::Io(io) => format!("cannot read: {io}"),
        other => format!("not valid PEM: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn ssl(cert: &Path, key: &Path) -> SslConfig {
        SslConfig {
            enabled: true,
            cert_path: cert.display().to_string(),
            key_path: key.display().to_string(),
            ..SslConfig::default()
        }
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("sockudo-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn self_signed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let cert =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert.cert.pem()).expect("write");
        std::fs::write(&k, cert.signing_key.serialize_pem()).expect("write");
        (c, k)
    }

    #[test]
    fn a_matching_pair_loads_with_http1_alpn() {
        let dir = temp_dir("ok");
        let (c, k) = self_signed(&dir);
        let config = load(&ssl(&c, &k)).expect("loads");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn problems_name_the_file_and_what_is_wrong() {
        let dir = temp_dir("bad");
        let (c, k) = self_signed(&dir);
        let missing = dir.join("missing.pem");
        let err = load(&ssl(&missing, &k)).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("ssl.cert_path {}: cannot read", missing.display())),
            "{err}"
        );

        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "hello\n").expect("write");
        let err = load(&ssl(&garbage, &k)).unwrap_err().to_string();
        assert!(err.contains("no \"BEGIN CERTIFICATE\" section"), "{err}");
        let err = load(&ssl(&c, &garbage)).unwrap_err().to_string();
        assert!(err.starts_with("ssl.key_path"), "{err}");
        assert!(err.contains("no private key found"), "{err}");

        let encrypted = dir.join("enc.pem");
        std::fs::write(
            &encrypted,
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .expect("write");
        let err = load(&ssl(&c, &encrypted)).unwrap_err().to_string();
        assert!(err.contains("passphrase is not supported"), "{err}");

        let other_dir = temp_dir("other");
        let (_, other_key) = self_signed(&other_dir);
        let err = load(&ssl(&c, &other_key)).unwrap_err().to_string();
        assert!(
            err.starts_with("ssl.cert_path") && err.contains("with ssl.key_path"),
            "{err}"
        );
    }
}
