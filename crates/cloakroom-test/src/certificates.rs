//! Throwaway TLS certificates for test servers.

use std::process::{Command, Stdio};
use std::sync::Arc;

use anyhow::{Context, bail};

/// A private CA and one server certificate it signed (for 127.0.0.1 and localhost), in a
/// temporary directory. Every node of a TLS cluster shares one, so one CA verifies them all.
pub struct TestCertificates {
    dir: tempfile::TempDir,
}

impl TestCertificates {
    /// A throwaway CA and a server certificate for 127.0.0.1 and localhost, made with openssl.
    pub fn generate() -> anyhow::Result<Arc<Self>> {
        let certificates = Self {
            dir: tempfile::tempdir().context("creating a directory for certificates")?,
        };
        let dir = certificates.dir.path();
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )?;
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let steps: [Vec<&str>; 3] = [
            [
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=cloakroom test CA",
                ],
            ]
            .concat(),
            [
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=127.0.0.1",
                ],
            ]
            .concat(),
            vec![
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
        ];
        for args in steps {
            let output = Command::new("openssl")
                .args(&args)
                .current_dir(dir)
                .stdin(Stdio::null())
                .output();
            let output = match output {
                Ok(output) => output,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    bail!("`openssl` was not found: install it (Debian: apt-get install openssl)")
                }
                Err(e) => return Err(e).context("running openssl"),
            };
            anyhow::ensure!(
                output.status.success(),
                "openssl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(Arc::new(certificates))
    }

    /// The CA's certificate, PEM.
    pub fn ca_pem(&self) -> anyhow::Result<Vec<u8>> {
        Ok(std::fs::read(self.dir.path().join("ca.crt"))?)
    }

    /// The path of one of the files: `ca.crt`, `server.crt` or `server.key`.
    pub fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}
