//! Per-run PKI for the fake API server: a throw-away CA and a serving
//! certificate with the SANs a real API server carries, plus the rustls
//! server configuration ([`crate::net::server::tls_config`]).

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::net::server::tls_config;

/// DNS names on the serving certificate, as on a kubeadm API server.
const DNS_SANS: [&str; 4] = [
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// The generated CA (PEM, for `ca.crt`) and the TLS server configuration.
pub(crate) struct Pki {
    pub ca_pem: String,
    pub server_config: Arc<rustls::ServerConfig>,
}

fn new_ca(common_name: &str) -> (CertificateParams, KeyPair) {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    let key = KeyPair::generate().expect("generate CA key");
    (params, key)
}

/// A fresh CA certificate (PEM) that signed nothing the fake serves: for
/// tests that check a client rejects a server it should not trust.
pub(crate) fn unrelated_ca_pem() -> String {
    let (params, key) = new_ca("unrelated-ca");
    params.self_signed(&key).expect("self-sign CA").pem()
}

/// Generates the CA and the serving certificate for 127.0.0.1.
pub(crate) fn generate() -> Pki {
    let (ca_params, ca_key) = new_ca("kubernetes");
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
    let issuer = Issuer::new(ca_params, ca_key);

    let mut sans: Vec<String> = DNS_SANS.iter().map(|s| s.to_string()).collect();
    sans.push("127.0.0.1".into());
    let mut params = CertificateParams::new(sans).expect("valid SANs");
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().expect("generate server key");
    let cert = params.signed_by(&key, &issuer).expect("sign server cert");

    Pki {
        ca_pem: ca_cert.pem(),
        server_config: tls_config(&cert, &key),
    }
}
