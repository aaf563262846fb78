//! Certificates for the TLS tests, written as cert-manager writes a Secret: `tls.crt`,
//! `tls.key`, `ca.crt` in one directory.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair, SanType};

/// A certificate authority that signs the tests' server and client certificates.
pub struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for `localhost` and 127.0.0.1, signed by this CA: (certificate, key).
    pub fn issue(&self, name: &str) -> (String, String) {
        self.issue_for(name, true)
    }

    /// A certificate for `<name>.pika.test`, and for localhost and 127.0.0.1 too when
    /// `local`: a node's certificate usually names its DNS names, not the pod IP it is dialled
    /// by.
    pub fn issue_for(&self, name: &str, local: bool) -> (String, String) {
        let mut params = CertificateParams::new(vec![format!("{name}.pika.test")]).unwrap();
        if local {
            params.subject_alt_names.push(SanType::DnsName("localhost".try_into().unwrap()));
            params.subject_alt_names.push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        }
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes a Secret's worth of files for `name` into `dir` (replacing any there), and
    /// returns the directory.
    pub fn write_secret(&self, dir: &Path, name: &str) -> PathBuf {
        self.write_secret_for(dir, name, true)
    }

    /// As `write_secret`, the certificate naming only `<name>.pika.test` unless `local`.
    pub fn write_secret_for(&self, dir: &Path, name: &str, local: bool) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let (cert, key) = self.issue_for(name, local);
        // Written aside and renamed in, as a Secret volume's update is atomic.
        for (file, text) in [("tls.crt", cert), ("tls.key", key), ("ca.crt", self.pem())] {
            let tmp = dir.join(format!(".{file}.new"));
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, dir.join(file)).unwrap();
        }
        dir.to_path_buf()
    }
}

/// pika.conf entries for a TLS port on `port` with the files in `dir`.
pub fn tls_conf(dir: &Path, port: u16) -> Vec<(String, String)> {
    let file = |f: &str| dir.join(f).display().to_string();
    vec![
        ("tls-port".into(), port.to_string()),
        ("tls-cert-file".into(), file("tls.crt")),
        ("tls-key-file".into(), file("tls.key")),
        ("tls-ca-cert-file".into(), file("ca.crt")),
    ]
}

/// A `redis` crate client for `rediss://127.0.0.1:port` trusting the CA in `dir`, presenting
/// the certificate in `identity` when given.
pub fn tls_client(port: u16, dir: &Path, identity: Option<&Path>) -> redis::Client {
    let client_tls = identity.map(|id| redis::ClientTlsConfig {
        client_cert: std::fs::read(id.join("tls.crt")).unwrap(),
        client_key: std::fs::read(id.join("tls.key")).unwrap(),
    });
    let root_cert = Some(std::fs::read(dir.join("ca.crt")).unwrap());
    redis::Client::build_with_tls(
        format!("rediss://127.0.0.1:{port}/"),
        redis::TlsCertificates { client_tls, root_cert },
    )
    .unwrap()
}

/// redis-cli over TLS; None when redis-cli is missing.
pub fn cli_tls(port: u16, secret: &Path, identity: Option<&Path>, args: &[&str]) -> Option<(bool, String)> {
    if !super::have_redis_cli() {
        println!("skipped: redis-cli is not installed");
        return None;
    }
    let mut cmd = std::process::Command::new("redis-cli");
    cmd.args(["--tls", "--cacert"]).arg(secret.join("ca.crt"));
    if let Some(id) = identity {
        cmd.arg("--cert").arg(id.join("tls.crt")).arg("--key").arg(id.join("tls.key"));
    }
    let out = cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()]).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Some((out.status.success(), text.trim().to_string()))
}
