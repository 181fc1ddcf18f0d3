//! Certificates made at test time with rcgen: two CAs, a server certificate from each for
//! 127.0.0.1 and localhost, and a client certificate, as PEM files in a temp dir.

use std::path::PathBuf;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use tally_common::tls::ClientFiles;

pub struct Pki {
    pub dir: tempfile::TempDir,
}

fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    (params.self_signed(&key).expect("ca"), key)
}

fn leaf(
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
    issuer: &(rcgen::Certificate, KeyPair),
) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params");
    params.extended_key_usages = vec![usage];
    let cert = params
        .signed_by(&key, &issuer.0, &issuer.1)
        .expect("signed");
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    /// `ca.pem`, `server.pem` + `server-key.pem` and `client.pem` + `client-key.pem` under the
    /// first CA; `ca2.pem` and `server2.pem` + `server2-key.pem` under the second.
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("write pem");
        };
        let first = ca("tally test CA");
        let second = ca("tally second test CA");
        let names = ["127.0.0.1", "localhost"];
        let (cert, key) = leaf(&names, ExtendedKeyUsagePurpose::ServerAuth, &first);
        write("server.pem", &cert);
        write("server-key.pem", &key);
        let (cert, key) = leaf(&names, ExtendedKeyUsagePurpose::ServerAuth, &second);
        write("server2.pem", &cert);
        write("server2-key.pem", &key);
        let (cert, key) = leaf(
            &["agent.example"],
            ExtendedKeyUsagePurpose::ClientAuth,
            &first,
        );
        write("client.pem", &cert);
        write("client-key.pem", &key);
        write("ca.pem", &first.0.pem());
        write("ca2.pem", &second.0.pem());
        Pki { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The `[tls]` table of a store serving `server.pem`, requiring client certificates of
    /// the first CA when `mtls`.
    pub fn store_table(&self, mtls: bool, line: bool) -> String {
        let mut t = format!(
            "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nline = {line}\n",
            self.path("server.pem").display(),
            self.path("server-key.pem").display()
        );
        if mtls {
            t.push_str(&format!(
                "client_ca_file = \"{}\"\n",
                self.path("ca.pem").display()
            ));
        }
        t
    }

    /// The client files: trusting `ca` (a file name here, or the public roots), with the
    /// client certificate when `identity`.
    pub fn client_files(&self, ca: Option<&str>, identity: bool) -> ClientFiles {
        ClientFiles {
            ca_file: ca.map(|c| self.path(c)),
            cert_file: identity.then(|| self.path("client.pem")),
            key_file: identity.then(|| self.path("client-key.pem")),
        }
    }

    /// A blocking HTTPS client with those files.
    pub fn client(&self, ca: Option<&str>, identity: bool) -> reqwest::blocking::Client {
        let config = self
            .client_files(ca, identity)
            .load(["ca", "cert", "key"])
            .expect("client TLS config");
        reqwest::blocking::Client::builder()
            .use_preconfigured_tls(config)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client")
    }
}
