//! Per-run PKI for the fake S3 in HTTPS mode: a throw-away CA and a serving
//! certificate for `127.0.0.1` and `localhost`, with the rustls server
//! configuration ([`crate::net::server::tls_config`]).

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::net::server::tls_config;

/// Generates the CA and the serving certificate: (CA PEM, server config).
pub(crate) fn generate() -> (String, Arc<rustls::ServerConfig>) {
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "wm-testkit fake S3 CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().expect("generate CA key");
    let ca_pem = ca.self_signed(&ca_key).expect("self-sign CA").pem();
    let issuer = Issuer::new(ca, ca_key);

    let mut params =
        CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).expect("valid SANs");
    params
        .distinguished_name
        .push(DnType::CommonName, "fake-s3");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().expect("generate server key");
    let cert = params.signed_by(&key, &issuer).expect("sign server cert");

    (ca_pem, tls_config(&cert, &key))
}
