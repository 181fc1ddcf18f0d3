//! TLS set up one way for every program: the store's listeners (server side, optionally
//! requiring client certificates) and every client of a store (the agent's shipper, `tally
//! check`, `tally rules test`) build their rustls configurations from PEM files here.
//!
//! rustls with the `ring` provider, chosen explicitly rather than through rustls' process-wide
//! default (which would be aws-lc, whose build needs cmake and nasm). Every error names the file
//! and says what is wrong with it, for `--check-config` and for the log of a reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

pub use rustls;

/// The crypto provider every Tally TLS configuration uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate chain in a PEM file (end entity first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            format!("{}: no private key in the file", path.display())
        }
        e => pem_error(path, e),
    })
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as E;
    let what = match e {
        E::Io(io) => return format!("{}: {io}", path.display()),
        E::MissingSectionEnd { end_marker } => format!(
            "a section has no \"-----END {}-----\" line (is the file whole?)",
            String::from_utf8_lossy(&end_marker)
        ),
        E::IllegalSectionStart { line } => format!(
            "bad BEGIN line \"{}\"",
            String::from_utf8_lossy(&line)
                .chars()
                .take(80)
                .collect::<String>()
        ),
        E::Base64Decode(why) => format!("bad base64 ({why})"),
        e => e.to_string(),
    };
    format!("{}: not PEM: {what}", path.display())
}

/// Every certificate of a PEM file as trust anchors.
fn roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: not a CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}

/// A server's certificate and key, and the CA its clients' certificates must chain to (which
/// makes a client certificate required), as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

impl ServerFiles {
    /// Reads the files into a server configuration; the key must belong to the certificate.
    pub fn load(&self) -> Result<ServerConfig, String> {
        let provider = provider();
        let certs = load_certs(&self.cert_file)?;
        let key = load_key(&self.key_file)?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let builder = match &self.client_ca_file {
            Some(ca) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider)
                        .build()
                        .map_err(|e| format!("{}: {e}", ca.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        builder.with_single_cert(certs, key).map_err(|e| {
            format!(
                "{} and {}: not a certificate and its key: {e}",
                self.cert_file.display(),
                self.key_file.display()
            )
        })
    }
}

/// How a client verifies a store and identifies itself: the CA file the server's certificate
/// must chain to (without one, the usual public roots), and a certificate and key to present
/// to a server that asks (mTLS).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientFiles {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl ClientFiles {
    /// Whether any file is named.
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }

    /// Reads the files into a client configuration. A certificate needs its key and a key its
    /// certificate; `names` are how the caller calls the three (flags or config keys), for the
    /// messages.
    pub fn load(&self, names: [&str; 3]) -> Result<ClientConfig, String> {
        let roots = match &self.ca_file {
            Some(ca) => roots(ca)?,
            None => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots);
        match (&self.cert_file, &self.key_file) {
            (None, None) => Ok(builder.with_no_client_auth()),
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
                .map_err(|e| {
                    format!(
                        "{} and {}: not a certificate and its key: {e}",
                        cert.display(),
                        key.display()
                    )
                }),
            (Some(_), None) => Err(format!("{} needs {}", names[1], names[2])),
            (None, Some(_)) => Err(format!("{} needs {}", names[2], names[1])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: [&str; 3] = ["--ca-file", "--client-cert", "--client-key"];

    struct Pki {
        dir: tempfile::TempDir,
    }

    impl Pki {
        fn new() -> Pki {
            let dir = tempfile::tempdir().expect("tempdir");
            let ca_key = rcgen::KeyPair::generate().expect("key");
            let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let ca = ca.self_signed(&ca_key).expect("ca");
            let key = rcgen::KeyPair::generate().expect("key");
            let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
                .expect("params")
                .signed_by(&key, &ca, &ca_key)
                .expect("cert");
            let other = rcgen::KeyPair::generate().expect("key");
            for (name, text) in [
                ("ca.pem", ca.pem()),
                ("cert.pem", cert.pem()),
                ("key.pem", key.serialize_pem()),
                ("other-key.pem", other.serialize_pem()),
                ("garbage.pem", "not pem at all\n".to_string()),
            ] {
                std::fs::write(dir.path().join(name), text).expect("write");
            }
            Pki { dir }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }
    }

    #[test]
    fn a_pair_and_a_client_ca_load() {
        let pki = Pki::new();
        let server = ServerFiles {
            cert_file: pki.path("cert.pem"),
            key_file: pki.path("key.pem"),
            client_ca_file: Some(pki.path("ca.pem")),
        };
        server.load().expect("loads");
        let client = ClientFiles {
            ca_file: Some(pki.path("ca.pem")),
            cert_file: Some(pki.path("cert.pem")),
            key_file: Some(pki.path("key.pem")),
        };
        client.load(NAMES).expect("loads");
        ClientFiles::default().load(NAMES).expect("public roots");
    }

    #[test]
    fn every_bad_file_is_named_with_what_is_wrong() {
        let pki = Pki::new();
        let server = |cert: &str, key: &str| {
            ServerFiles {
                cert_file: pki.path(cert),
                key_file: pki.path(key),
                client_ca_file: None,
            }
            .load()
            .expect_err("refused")
        };
        let e = server("missing.pem", "key.pem");
        assert!(
            e.contains("missing.pem") && e.contains("No such file"),
            "{e}"
        );
        std::fs::write(pki.path("cut.pem"), "-----BEGIN CERTIFICATE-----\nMIIB\n").expect("write");
        let e = server("cut.pem", "key.pem");
        assert!(
            e.ends_with("cut.pem: not PEM: a section has no \"-----END CERTIFICATE-----\" line (is the file whole?)"),
            "{e}"
        );
        let e = server("garbage.pem", "key.pem");
        assert!(e.contains("garbage.pem: no certificate in the file"), "{e}");
        let e = server("cert.pem", "cert.pem");
        assert!(e.contains("cert.pem: no private key in the file"), "{e}");
        let e = server("cert.pem", "other-key.pem");
        assert!(
            e.contains("other-key.pem: not a certificate and its key"),
            "{e}"
        );
        let half = ClientFiles {
            cert_file: Some(pki.path("cert.pem")),
            ..ClientFiles::default()
        };
        assert_eq!(
            half.load(NAMES).expect_err("half"),
            "--client-cert needs --client-key"
        );
    }
}
