//! TLS client settings shared by the email channel and the database sources (rustls with
//! the ring provider): which certificates are trusted — the system's roots plus a
//! `ca_file` — and how much of the server's certificate is checked ([`Check`]).
//!
//! [`client_config`] builds the rustls configuration for a [`Check`]; [`failure_hint`]
//! turns a certificate failure found in an error's causes into what the user should change.

use std::error::Error as StdError;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};

/// The certificates of a `ca_file` (PEM); an error names the file and says what is wrong.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = crate::fsread::read_bytes(path, crate::fsread::Kind::CaFile)
        .map_err(|e| e.named("ca_file"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("ca_file {}: not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "ca_file {} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
            path.display()
        ));
    }
    Ok(certs)
}

/// The system's root certificates, read once per process.
pub fn system_roots() -> &'static [CertificateDer<'static>] {
    static SYSTEM: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    SYSTEM.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

/// The certificates a connection trusts: the system's roots plus `ca_file`'s.
pub fn trusted_roots(ca_file: Option<&Path>) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut roots = system_roots().to_vec();
    if let Some(ca) = ca_file {
        roots.extend(read_ca_file(ca)?);
    }
    Ok(roots)
}

/// The crypto provider ferry uses everywhere (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// How much of the server's certificate a connection checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// A trusted CA signed it and it names the host connected to.
    Full,
    /// A trusted CA signed it; the name is not compared.
    ChainOnly,
    /// Nothing: the connection is encrypted but the server is not authenticated (only the
    /// handshake's own signature is verified, which proves nothing about who signed).
    Nothing,
}

/// A rustls client configuration that checks the server's certificate as `check` says,
/// trusting the system's roots plus `ca_file`'s certificates.
pub fn client_config(check: Check, ca_file: Option<&Path>) -> Result<ClientConfig, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = match check {
        Check::Nothing => Arc::new(Unchecked(provider)),
        Check::Full | Check::ChainOnly => {
            let mut store = RootCertStore::empty();
            store.add_parsable_certificates(trusted_roots(ca_file)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider)
                .build()
                .map_err(|e| format!("TLS setup failed: {e}"))?;
            if check == Check::Full {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        }
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The standard check without the host-name comparison. webpki checks the chain (and
/// validity dates) before the name, so a name error means everything else passed.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Accepts any certificate (`tls: require`, `prefer`): encryption against a passive
/// listener only.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The rustls error among `e` and its causes (also inside an `io::Error`), if any.
pub fn rustls_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(r) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

/// What to change when a certificate check failed (found among `e` and its causes), as
/// a sentence naming the datasource settings `ca_file` and `tls`; `None` for other errors.
/// `chain_only`: whether the backend offers `tls: verify-ca` (MySQL does not yet).
pub fn failure_hint(e: &(dyn StdError + 'static), chain_only: bool) -> Option<&'static str> {
    let rustls::Error::InvalidCertificate(cert) = rustls_error(e)? else {
        return None;
    };
    Some(match cert {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            if chain_only =>
        {
            "the server's certificate is not valid for the host name in `url`: connect with a \
             name the certificate lists, or set `tls: verify-ca` to check only that a trusted \
             CA signed it"
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "the server's certificate is not valid for the host name in `url`: connect with a \
             name the certificate lists"
        }
        CertificateError::Expired
        | CertificateError::ExpiredContext { .. }
        | CertificateError::NotValidYet
        | CertificateError::NotValidYetContext { .. } => {
            "the server's certificate is outside its validity dates: renew it on the server \
             (or check this machine's clock)"
        }
        _ => {
            "the server's certificate is not signed by a CA ferry trusts: set `ca_file` to the \
             CA certificate (PEM) that signed it, or, accepting that the server is not \
             authenticated, `tls: require`"
        }
    })
}
