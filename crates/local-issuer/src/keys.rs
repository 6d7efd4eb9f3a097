//! The issuer's signing keys: an RSA 2048-bit key (RS256) and a P-256 key
//! (ES256), generated when the issuer starts so no private key is ever
//! committed. Each key's `kid` is its RFC 7638 thumbprint, as many real
//! issuers do, so a new key always has a new `kid`.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey};

use crate::IssuerError;

/// One private key with its public JWK.
#[derive(Clone)]
pub struct SigningKey {
    alg: Algorithm,
    kid: String,
    key: EncodingKey,
    jwk: Jwk,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new RSA 2048-bit key for RS256.
    pub fn generate_rs256() -> Result<Self, IssuerError> {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| IssuerError::KeyGeneration("RSA 2048"))?;
        let pkcs8 = pair
            .as_der()
            .map_err(|_| IssuerError::KeyGeneration("RSA 2048 (PKCS#8 export)"))?;
        let pkcs1 = pkcs1_from_pkcs8(pkcs8.as_ref())?;
        Self::new(Algorithm::RS256, EncodingKey::from_rsa_der(&pkcs1))
    }

    /// A new P-256 key for ES256.
    pub fn generate_es256() -> Result<Self, IssuerError> {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| IssuerError::KeyGeneration("P-256"))?;
        Self::new(Algorithm::ES256, EncodingKey::from_ec_der(pkcs8.as_ref()))
    }

    fn new(alg: Algorithm, key: EncodingKey) -> Result<Self, IssuerError> {
        let mut jwk = Jwk::from_encoding_key(&key, alg).map_err(IssuerError::Jwk)?;
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(IssuerError::Jwk)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(Self { alg, kid, key, jwk })
    }

    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half, as the JWKS lists it.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.key
    }
}

/// The `RSAPrivateKey` (PKCS#1) inside a PKCS#8 `PrivateKeyInfo`: version,
/// algorithm identifier, then the key as an OCTET STRING (RFC 5208 §5).
fn pkcs1_from_pkcs8(pkcs8: &[u8]) -> Result<Vec<u8>, IssuerError> {
    yasna::parse_der(pkcs8, |reader| {
        reader.read_sequence(|seq| {
            seq.next().read_u8()?;
            seq.next().read_der()?;
            seq.next().read_bytes()
        })
    })
    .map_err(|e| {
        IssuerError::KeyGeneration(if e.kind() == yasna::ASN1ErrorKind::Eof {
            "RSA 2048 (PKCS#8 truncated)"
        } else {
            "RSA 2048 (PKCS#8 not understood)"
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_has_a_new_kid_and_a_public_jwk_only() {
        let a = SigningKey::generate_rs256().expect("RSA key");
        let b = SigningKey::generate_rs256().expect("RSA key");
        assert_ne!(a.kid(), b.kid());
        let json = serde_json::to_value(a.jwk()).expect("JWK as JSON");
        assert_eq!(json["kty"], "RSA");
        assert_eq!(json["alg"], "RS256");
        assert_eq!(json["kid"], a.kid());
        assert!(
            json.get("d").is_none(),
            "a JWK must not carry the private exponent: {json}"
        );

        let ec = SigningKey::generate_es256().expect("P-256 key");
        let json = serde_json::to_value(ec.jwk()).expect("JWK as JSON");
        assert_eq!(json["kty"], "EC");
        assert_eq!(json["crv"], "P-256");
        assert!(json.get("d").is_none());
    }
}
