//! TLS on the store's listeners: one certificate and key (and optionally the CA that client
//! certificates must chain to, which makes them required) for the HTTP port and, when asked,
//! the plaintext TCP port.
//!
//! The files are read again on SIGHUP without closing the listeners: connections accepted after
//! the reload get the new certificate, those already open keep theirs. A new pair that does
//! not load (a missing file, a key of another certificate, a half-written file) is logged and
//! the old one stays in use, so a botched renewal never takes the port down.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tally_common::tls::rustls::ServerConfig;
use tally_common::tls::ServerFiles;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{error, info};

/// How long a plaintext-port client may take over its TLS handshake (the HTTP port uses its
/// header timeout).
pub(crate) const LINE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server side of TLS, reloadable.
#[derive(Debug)]
pub(crate) struct Tls {
    files: ServerFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Reads the files once; an error names the file and what is wrong with it.
    pub(crate) fn load(files: ServerFiles) -> Result<Tls, String> {
        let config = files.load()?;
        Ok(Tls {
            files,
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Reads the files again; on any problem the old configuration stays and the problem is
    /// returned.
    pub(crate) fn reload(&self) -> Result<(), String> {
        let config = self.files.load()?;
        *self.current.write() = Arc::new(config);
        Ok(())
    }

    /// [`Tls::reload`], logged.
    pub(crate) fn reload_logged(&self) {
        match self.reload() {
            Ok(()) => info!(cert = %self.files.cert_file.display(), "TLS certificate reloaded"),
            Err(e) => {
                error!(error = %e, "TLS certificate not reloaded; the previous one stays in use")
            }
        }
    }

    /// The handshake of one accepted connection, with the configuration in use now.
    pub(crate) async fn accept<S>(&self, stream: S) -> std::io::Result<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let config = self.current.read().clone();
        TlsAcceptor::from(config).accept(stream).await
    }
}
