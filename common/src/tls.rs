//! Mutual TLS between the services: each has a certificate and key signed by
//! one CA (`TLS_CERT_FILE`, `TLS_KEY_FILE`, `TLS_CA_FILE`), serves gRPC over
//! TLS with it, accepts a client certificate signed by that CA (a peer
//! presenting one is a trusted service, which may name the user in
//! `x-user-id`), and presents the same certificate when it calls the next
//! service at an `https://` URL. rustls with ring, as everywhere else.

use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret as _, SecretSlice};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

use crate::env::{ConfigError, Env};

/// A service's TLS material, as PEM; the private key never shows in
/// `Debug` output.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    pub cert_pem: Vec<u8>,
    pub key_pem: SecretSlice<u8>,
    pub ca_pem: Vec<u8>,
}

impl TlsConfig {
    /// `TLS_CERT_FILE`, `TLS_KEY_FILE` and `TLS_CA_FILE`: all three, or none
    /// (no TLS).
    pub fn from_env(env: &Env<'_>) -> Result<Option<Self>, ConfigError> {
        let vars = ["TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CA_FILE"];
        let paths = vars.map(|var| Some(env.string(var, "")).filter(|p| !p.is_empty()));
        if paths.iter().all(Option::is_none) {
            return Ok(None);
        }
        let mut pems = Vec::new();
        for (var, path) in vars.into_iter().zip(paths) {
            let path = path.ok_or_else(|| {
                ConfigError::new(
                    var,
                    "set TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_FILE together",
                )
            })?;
            let pem = std::fs::read(&path)
                .map_err(|e| ConfigError::new(var, format!("cannot read {path}: {e}")))?;
            pems.push(pem);
        }
        let [cert_pem, key_pem, ca_pem] = <[Vec<u8>; 3]>::try_from(pems).map_err(|_| {
            ConfigError::new(
                "TLS_CERT_FILE",
                "set TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_FILE together",
            )
        })?;
        Ok(Some(Self {
            cert_pem,
            key_pem: key_pem.into(),
            ca_pem,
        }))
    }

    fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, self.key_pem.expose_secret())
    }

    /// The server side: this service's certificate, and client
    /// certificates checked against the CA when presented (a caller without
    /// one must then prove itself with a user's token).
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity())
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
            .client_auth_optional(true)
    }

    /// The client side: the CA to check the next service with, and this
    /// service's certificate as its own identity.
    pub fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(self.identity())
    }
}

/// The channel settings every service uses to reach another (read from
/// `var`): connected lazily (the other may start later), 2 s to connect, no
/// Nagle delay, and mutual TLS for an `https://` URL.
pub fn endpoint(url: &str, var: &str, tls: Option<&TlsConfig>) -> anyhow::Result<Endpoint> {
    endpoint_for(url, var, tls, None)
}

/// [`endpoint`], checking the server's certificate for `domain` rather than
/// the URL's host (a replica reached by its address).
pub fn endpoint_for(
    url: &str,
    var: &str,
    tls: Option<&TlsConfig>,
    domain: Option<&str>,
) -> anyhow::Result<Endpoint> {
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("{var} {url:?} is not a valid URL"))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true);
    if url.starts_with("https://") {
        let tls = tls.with_context(|| {
            format!("{var} {url:?} is https: set TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_FILE")
        })?;
        let mut client = tls.client();
        if let Some(domain) = domain {
            client = client.domain_name(domain);
        }
        endpoint = endpoint
            .tls_config(client)
            .with_context(|| format!("{var}: cannot use the TLS settings"))?;
    }
    Ok(endpoint)
}

/// A certificate authority made in memory and the certificates it signs:
/// mutual TLS between the launcher's own services, and in tests. Its key
/// never leaves the process.
pub struct LocalCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl LocalCa {
    pub fn new() -> anyhow::Result<Self> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "taskagent local CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = rcgen::CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Self { issuer })
    }

    /// A certificate named `name`, for the host `name` (a compose service's
    /// name) and loopback (`localhost`, `127.0.0.1`, `::1`), good as a
    /// server's and as a client's, with this CA's.
    pub fn issue(&self, name: &str) -> anyhow::Result<TlsConfig> {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
        let hosts = [name, "localhost", "127.0.0.1", "::1"].map(str::to_owned);
        let mut params = CertificateParams::new(hosts.to_vec())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &*self.issuer)?;
        Ok(TlsConfig {
            cert_pem: cert.pem().into_bytes(),
            key_pem: key.serialize_pem().into_bytes().into(),
            ca_pem: self.ca_pem(),
        })
    }

    /// The CA's own certificate.
    pub fn ca_pem(&self) -> Vec<u8> {
        self.issuer.pem().into_bytes()
    }
}
