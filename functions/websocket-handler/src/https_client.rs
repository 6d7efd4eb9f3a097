//! The HTTP client the function's AWS SDK clients share, trusting only the
//! root CAs AWS service endpoints chain to.
//!
//! The SDK's default HTTPS client loads the machine's whole certificate store
//! when it starts (the CA bundle and every file of `/etc/ssl/certs`), about
//! half of the function's cold start. This one is the SDK's own client with
//! the same TLS stack (rustls with aws-lc, the crypto the SDK already links),
//! given a trust store of the Amazon Trust Services roots compiled in from
//! `certs/aws-roots.pem` (see `certs/README.md`). Plain `http://` endpoints,
//! as the local stack and the tests set them, need no certificates and work
//! as before. Unlike the default client it does not read `HTTPS_PROXY`-style
//! variables, which Lambda does not set.

use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, HttpClientError};
use aws_types::sdk_config::SharedHttpClient;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::{self, PemObject};

/// Amazon Root CA 1–4 and Starfield Services Root Certificate Authority – G2,
/// as PEM: the only roots the SDK clients trust.
pub const AWS_ROOTS_PEM: &[u8] = include_bytes!("../certs/aws-roots.pem");

/// Why an HTTP client could not be built. With the bundle the unit tests
/// check, none of these happens: a broken bundle fails those tests (and the
/// post client's first post says why) rather than reaching Lambda.
#[derive(thiserror::Error)]
pub enum HttpsClientError {
    #[error("the compiled-in root certificates (certs/aws-roots.pem) are not valid PEM: {0}")]
    Pem(#[source] pem::Error),
    #[error("the compiled-in root certificates (certs/aws-roots.pem) hold no certificate")]
    NoCertificate,
    #[error(
        "certificate {index} of the compiled-in roots (certs/aws-roots.pem) is not a usable root: {source}"
    )]
    Root {
        index: usize,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot configure TLS for the AWS SDK: {0}")]
    Tls(#[from] HttpClientError),
    #[error("cannot configure TLS for the management API: {0}")]
    Rustls(#[source] rustls::Error),
}

/// `main` returns this error, and Rust prints an error returned from `main`
/// with `Debug`: make that the readable message.
impl std::fmt::Debug for HttpsClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

/// The SDK's HTTPS client (rustls, aws-lc) trusting [`AWS_ROOTS_PEM`] only;
/// pass it to `aws_config::defaults(..).http_client(..)`.
pub fn https_client() -> Result<SharedHttpClient, HttpsClientError> {
    // The bundle is compiled in and checked by this module's tests; parsing
    // it here too cost half as much again as the SDK's own parse (callgrind:
    // about 0.4 million instructions of every cold start).
    let trust_store = TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(AWS_ROOTS_PEM);
    let tls_context = TlsContext::builder()
        .with_trust_store(trust_store)
        .build()?;
    Ok(Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(tls_context)
        .build_https())
}

/// The roots in `pem`, added to a rustls store as the SDK adds them.
pub fn root_store(pem: &[u8]) -> Result<RootCertStore, HttpsClientError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(HttpsClientError::Pem)?;
    if certificates.is_empty() {
        return Err(HttpsClientError::NoCertificate);
    }
    let mut roots = RootCertStore::empty();
    for (index, certificate) in certificates.into_iter().enumerate() {
        roots
            .add(certificate)
            .map_err(|source| HttpsClientError::Root { index, source })?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

    /// The Amazon Trust Services roots AWS documents for its endpoints
    /// (https://www.amazontrust.com/repository/).
    const EXPECTED_SUBJECTS: [&str; 5] = [
        "C=US, O=Amazon, CN=Amazon Root CA 1",
        "C=US, O=Amazon, CN=Amazon Root CA 2",
        "C=US, O=Amazon, CN=Amazon Root CA 3",
        "C=US, O=Amazon, CN=Amazon Root CA 4",
        "C=US, ST=Arizona, L=Scottsdale, O=Starfield Technologies, Inc., CN=Starfield Services Root Certificate Authority - G2",
    ];

    #[test]
    fn the_bundle_holds_exactly_the_amazon_trust_services_roots() {
        let roots = root_store(AWS_ROOTS_PEM).unwrap();
        let trusted: Vec<String> = roots
            .subjects()
            .iter()
            .map(|name| X509Name::from_der(name.as_ref()).unwrap().1.to_string())
            .collect();
        assert_eq!(trusted, EXPECTED_SUBJECTS);

        // Each is a self-issued CA certificate: a root, not an intermediate.
        for certificate in CertificateDer::pem_slice_iter(AWS_ROOTS_PEM) {
            let certificate = certificate.unwrap();
            let (rest, parsed) = X509Certificate::from_der(certificate.as_ref()).unwrap();
            assert!(rest.is_empty());
            assert!(parsed.is_ca(), "{} is not a CA", parsed.subject());
            assert_eq!(parsed.subject(), parsed.issuer());
        }
    }

    #[test]
    fn a_broken_bundle_is_an_error_not_a_panic() {
        assert!(matches!(
            root_store(b""),
            Err(HttpsClientError::NoCertificate)
        ));
        assert!(matches!(
            root_store(b"# only a comment\n"),
            Err(HttpsClientError::NoCertificate)
        ));

        let bad_base64 = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let error = root_store(bad_base64).unwrap_err();
        assert!(matches!(error, HttpsClientError::Pem(_)), "{error}");

        // Well-formed PEM whose content is not a certificate.
        let not_a_certificate =
            b"-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
        let error = root_store(not_a_certificate).unwrap_err();
        assert!(
            matches!(error, HttpsClientError::Root { index: 0, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("certs/aws-roots.pem"));

        // A truncated copy of the real bundle.
        let truncated = &AWS_ROOTS_PEM[..AWS_ROOTS_PEM.len() / 2];
        assert!(root_store(truncated).is_err());
    }

    /// `main` returns this error and Rust prints it with `Debug`: the
    /// operator reads the sentence, not a struct dump.
    #[test]
    fn an_error_from_main_reads_as_its_message() {
        let error = HttpsClientError::Rustls(rustls::Error::General("no ciphers".into()));
        assert_eq!(format!("{error:?}"), error.to_string());
        assert!(
            format!("{error:?}").starts_with("cannot configure TLS for the management API"),
            "{error:?}"
        );
    }
}
