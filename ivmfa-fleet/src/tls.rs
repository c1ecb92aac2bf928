//! TLS to the database, verify-full in the connector itself (tokio-postgres has no
//! `sslmode=verify-full` of its own): the server's certificate must chain to the pinned CA
//! alone, and carry the address connected to as an IP subject alternative name. Host names
//! play no part: the name checked is the IP the socket is connected to, whatever a caller or
//! a library passes along.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, Tls12Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, TlsConnect};

use crate::credentials::Loaded;
use crate::settings::Settings;

/// The server certificate check: the chain against the pinned roots, then the connected
/// address against the certificate's IP SANs (webpki matches an IP name only against
/// iPAddress entries, never against a common name).
#[derive(Debug)]
struct PinnedServer {
    chain: Arc<WebPkiServerVerifier>,
    address: IpAddr,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let connected = ServerName::IpAddress(self.address.into());
        self.chain
            .verify_server_cert(end_entity, intermediates, &connected, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// rustls's ring provider, with P-256 first among the key exchange groups. The client sends
/// a key share for the first group only, and PostgreSQL accepts P-256 alone unless told
/// otherwise (`ssl_ecdh_curve`, default `prime256v1`): with rustls's X25519 first, every
/// connection took a HelloRetryRequest, one more round trip and a wasted key. The same groups
/// stay offered, so a server that wants another still gets it, as before.
fn provider() -> CryptoProvider {
    use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
    CryptoProvider {
        kx_groups: vec![SECP256R1, X25519, SECP384R1],
        ..rustls::crypto::ring::default_provider()
    }
}

/// TLS kept from one connection to the next of the same owner: per server address, the
/// client set-up (pinned CA, client certificate) and the sessions that server offered to
/// resume. One login's second round then skips both certificate checks, the server's (done
/// on this same address seconds before) and the client's: about 1.5 ms less to connect
/// through PgBouncer, and some of its CPU (docs/BENCHMARKS.md, run 6). PostgreSQL itself
/// offers no session to resume.
///
/// rustls resumes a session only with the set-up that made it (the same verifier and client
/// certificate, compared by identity), hence the set-up is kept too: the first connection's
/// to an address with the same settings serves the later ones. Only TLS 1.3 sessions are
/// resumed, always with a fresh key exchange (rustls offers no other mode) and never with
/// early data; TLS 1.2 sessions are not kept. Nothing is written anywhere: the module's
/// [`TlsSessions`] lasts one PAM call, and with it the client key parsed into the first
/// set-up (the files are still read and checked at every connection, and refused as ever if
/// they became unsafe).
#[derive(Debug, Default)]
pub struct TlsSessions(RefCell<Vec<Kept>>);

#[derive(Debug)]
struct Kept {
    address: IpAddr,
    /// What `config` was made for: another role, CA or certificate gets a set-up of its own.
    settings: Settings,
    config: Arc<ClientConfig>,
}

impl TlsSessions {
    /// The set-up for `address` and `settings`: the kept one, or a new one from `loaded`
    /// (read for `settings`), then kept.
    fn config(
        &self,
        settings: &Settings,
        loaded: &Loaded,
        address: IpAddr,
    ) -> Result<Arc<ClientConfig>, String> {
        let kept = self.0.borrow();
        if let Some(k) = kept
            .iter()
            .find(|k| k.address == address && k.settings == *settings)
        {
            return Ok(Arc::clone(&k.config));
        }
        drop(kept);
        let config = Arc::new(client_config(loaded, address)?);
        self.0.borrow_mut().push(Kept {
            address,
            settings: settings.clone(),
            config: Arc::clone(&config),
        });
        Ok(config)
    }
}

/// The client side of TLS for one connection to `address`, resuming a session of
/// `sessions` when the server takes one; `resumed` says whether it did.
pub(crate) fn connector(
    settings: &Settings,
    loaded: &Loaded,
    address: IpAddr,
    sessions: &TlsSessions,
    resumed: Arc<AtomicBool>,
) -> Result<Tls, String> {
    Ok(Tls {
        config: sessions.config(settings, loaded, address)?,
        address,
        resumed,
    })
}

fn client_config(loaded: &Loaded, address: IpAddr) -> Result<ClientConfig, String> {
    let provider = Arc::new(provider());
    let chain = WebPkiServerVerifier::builder_with_provider(
        loaded.roots.clone(),
        Arc::<CryptoProvider>::clone(&provider),
    )
    .build()
    .map_err(|e| format!("cannot use the pinned CA: {e}"))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServer { chain, address }));
    let mut config = match &loaded.client {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| format!("cannot use the client certificate and key: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    // What PostgreSQL 17 expects of a client that offers ALPN; older servers ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    config.resumption =
        Resumption::in_memory_sessions(4).tls12_resumption(Tls12Resumption::Disabled);
    Ok(config)
}

pub(crate) struct Tls {
    config: Arc<ClientConfig>,
    address: IpAddr,
    resumed: Arc<AtomicBool>,
}

impl<S> TlsConnect<S> for Tls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        let name = ServerName::IpAddress(self.address.into());
        let resumed = self.resumed;
        Box::pin(async move {
            let stream = connector.connect(name, stream).await?;
            let kind = stream.get_ref().1.handshake_kind();
            resumed.store(kind == Some(HandshakeKind::Resumed), Ordering::Relaxed);
            Ok(TlsStream(stream))
        })
    }
}

pub struct TlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for TlsStream<S> {
    /// No channel binding: the server is authenticated by the certificate check above, so
    /// SCRAM gains nothing from binding to it.
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p256_is_offered_first_and_no_group_is_dropped() {
        let ours: Vec<_> = provider().kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(ours[0], rustls::NamedGroup::secp256r1);
        let mut defaults: Vec<_> = rustls::crypto::ring::default_provider()
            .kx_groups
            .iter()
            .map(|g| g.name())
            .collect();
        let mut sorted = ours.clone();
        sorted.sort_by_key(|g| u16::from(*g));
        defaults.sort_by_key(|g| u16::from(*g));
        assert_eq!(sorted, defaults);
    }
}
