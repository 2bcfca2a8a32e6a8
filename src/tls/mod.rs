//! TLS on the main port (`ssl.*`), with rustls driven by hand: the certificate and key ([`material`]), the
//! encrypted socket ([`stream`]) and the plain-HTTP listener that redirects to `https://` ([`redirect`]).

pub mod material;
pub mod redirect;
pub mod stream;

pub use material::{load, MaterialError};
pub use stream::TlsStream;
