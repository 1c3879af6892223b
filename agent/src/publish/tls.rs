//! TLS to the broker (`mqtts://`): trust roots from `ca_file` or the system store, optional client certificate.

use std::path::Path;
use std::sync::Arc;

use rumqttc::{TlsConfiguration, Transport};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::AgentError;
use crate::config::BrokerConfig;
use crate::config::secret::{SecretError, read_secret};

fn tls_error(path: Option<&Path>, problem: impl Into<String>) -> AgentError {
    AgentError::Tls {
        file: path.map(|p| p.display().to_string()),
        problem: problem.into(),
    }
}

/// Read every certificate of a PEM file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, AgentError> {
    let pem =
        std::fs::read(path).map_err(|e| tls_error(Some(path), format!("cannot read: {e}")))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(Some(path), format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(tls_error(Some(path), "holds no PEM certificate"));
    }
    Ok(certs)
}

/// Read the client certificate's private key; a file every user may open is refused.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, AgentError> {
    let pem = read_secret(path).map_err(|e| match e {
        SecretError::Read { source, .. } => tls_error(Some(path), format!("cannot read: {source}")),
        SecretError::Exposed(e) => e.into(),
    })?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| tls_error(Some(path), format!("not a PEM key file: {e}")))?
        .ok_or_else(|| tls_error(Some(path), "holds no PEM private key"))
}

/// The rustls client config for the broker: roots from `ca_file` (only those) or the system
/// store, and the client certificate when `cert_file`/`key_file` are set.
pub fn client_config(broker: &BrokerConfig) -> Result<ClientConfig, AgentError> {
    let mut roots = RootCertStore::empty();
    match &broker.ca_file {
        Some(ca) => {
            for cert in read_certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| tls_error(Some(ca), format!("unusable CA certificate: {e}")))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                // A broken certificate in the system store is skipped, not fatal.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(tls_error(
                    None,
                    "no trusted CA certificates in the system store; set [broker] ca_file",
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(None, e.to_string()))?
        .with_root_certificates(roots);
    match (&broker.cert_file, &broker.key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert)?;
            let key_der = read_key(key)?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                tls_error(
                    Some(cert),
                    format!("cannot be used with key_file {}: {e}", key.display()),
                )
            })
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(tls_error(
            None,
            "[broker] cert_file and key_file must be set together",
        )),
    }
}

/// The rumqttc transport for `mqtts://`.
pub fn transport(broker: &BrokerConfig) -> Result<Transport, AgentError> {
    let config = client_config(broker)?;
    Ok(Transport::tls_with_config(TlsConfiguration::Rustls(
        Arc::new(config),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_bad_files_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not pem").expect("write");
        let broker = BrokerConfig {
            ca_file: Some(junk.clone()),
            ..BrokerConfig::default()
        };
        let e = client_config(&broker).expect_err("junk").to_string();
        assert!(
            e.contains("junk.pem") && e.contains("no PEM certificate"),
            "{e}"
        );

        let missing = dir.path().join("missing.pem");
        let broker = BrokerConfig {
            ca_file: Some(missing),
            ..BrokerConfig::default()
        };
        let e = client_config(&broker).expect_err("missing").to_string();
        assert!(
            e.contains("missing.pem") && e.contains("cannot read"),
            "{e}"
        );
    }

    #[test]
    fn world_readable_key_file_is_refused() {
        use crate::config::secret::tests::write_with_mode;
        let dir = tempfile::tempdir().expect("tempdir");
        let key = write_with_mode(dir.path(), "web-01.key", "not a key\n", 0o644);
        let e = read_key(&key).expect_err("world-readable");
        assert!(matches!(e, AgentError::ExposedCredentials(_)), "{e:?}");
        let p = key.display();
        assert_eq!(
            e.to_string(),
            format!(
                "{p}: readable by every user (mode 0644); the agent refuses world-readable credentials: chmod 0640 {p} && chown root:tocsin {p}"
            )
        );
        // 0640 and 0600 get past the permission rule to the PEM parsing.
        for mode in [0o640, 0o600] {
            let key = write_with_mode(dir.path(), "private.key", "not a key\n", mode);
            let e = read_key(&key).expect_err("not PEM").to_string();
            assert!(e.contains("holds no PEM private key"), "{mode:o}: {e}");
        }
    }
}
