//! Opening a broker connection: TCP with TCP_NODELAY (and quick ACKs), optional TLS (rustls, with mutual
//! X.509 authentication), then CONNECT and the broker's CONNACK.

use super::{BusConfig, Outgoing};
use bytes::BytesMut;
use rumqttc::tokio_rustls::rustls;
use rumqttc::tokio_rustls::TlsConnector;
use rumqttc::{ConnectReturnCode, LastWill, Login, Packet, Protocol};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

#[derive(Debug, Error)]
pub enum LinkError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("timed out connecting to {0}")]
    Timeout(String),
    #[error("TLS setup: {0}")]
    TlsSetup(String),
    #[error("TLS handshake with {addr}: {source}")]
    Tls {
        addr: String,
        source: std::io::Error,
    },
    #[error("broker refused the connection: {0}")]
    Refused(&'static str),
    #[error("broker closed the connection during CONNECT")]
    Closed,
    #[error("broker sent {0} instead of CONNACK")]
    Protocol(String),
    #[error("connection I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl LinkError {
    /// Refusals a retry cannot fix without a config change, worth a louder log line.
    pub fn is_refusal(&self) -> bool {
        matches!(self, LinkError::Refused(_) | LinkError::TlsSetup(_))
    }
}

pub struct Link {
    pub stream: Box<dyn Stream>,
    /// Bytes read after the CONNACK, already belonging to the session.
    pub rbuf: BytesMut,
    pub quickack: QuickAck,
}

/// Acknowledges the broker's segments at once (TCP_QUICKACK) after a read that nothing of
/// ours answers (a PUBACK for our telemetry, say). A broker with Nagle on (mosquitto's
/// default) holds its next PUBLISH until our ACK of the previous segment, and the kernel's
/// delayed ACK waits up to 40 ms for data to ride on: a command would wait for it. Linux
/// turns quick-ack mode off by itself, hence once per such read.
pub struct QuickAck(Option<std::os::fd::OwnedFd>);

impl QuickAck {
    fn of(tcp: &TcpStream) -> QuickAck {
        use std::os::fd::AsFd;
        // A duplicate of the socket's descriptor, so it works under TLS as well.
        QuickAck(tcp.as_fd().try_clone_to_owned().ok())
    }

    pub fn after_read(&self) {
        #[cfg(target_os = "linux")]
        if let Some(fd) = &self.0 {
            // Best effort: failing only means the kernel's default ACK timing.
            let _ = socket2::SockRef::from(fd).set_tcp_quickack(true);
        }
    }
}

fn tls_connector(cfg: &BusConfig) -> Result<TlsConnector, LinkError> {
    let setup = |m: String| LinkError::TlsSetup(m);
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.tls.ca_file {
        Some(ca) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
                .map_err(|e| setup(format!("{}: {e}", ca.display())))?
                .collect::<Result<_, _>>()
                .map_err(|e| setup(format!("{}: {e}", ca.display())))?;
            if certs.is_empty() {
                return Err(setup(format!("{}: no certificates in file", ca.display())));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| setup(format!("{}: {e}", ca.display())))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    // The provider is named, not looked up, so a dependency enabling a second rustls
    // backend cannot turn this into a runtime panic.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(format!("TLS versions: {e}")))?
        .with_root_certificates(roots);
    let config = match (&cfg.tls.cert_file, &cfg.tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| setup(format!("{}: {e}", cert.display())))?
                .collect::<Result<_, _>>()
                .map_err(|e| setup(format!("{}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| setup(format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| setup(format!("client certificate: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

fn refusal(code: ConnectReturnCode) -> &'static str {
    match code {
        ConnectReturnCode::Success => "success",
        ConnectReturnCode::RefusedProtocolVersion => "unsupported protocol version",
        ConnectReturnCode::BadClientId => "client id rejected",
        ConnectReturnCode::ServiceUnavailable => "service unavailable",
        ConnectReturnCode::BadUserNamePassword => "bad username or password",
        ConnectReturnCode::NotAuthorized => "not authorized",
    }
}

fn will_of(w: &Outgoing) -> LastWill {
    LastWill {
        topic: w.topic.to_string(),
        message: w.payload.clone(),
        qos: w.qos,
        retain: w.retain,
    }
}

/// Connects and completes the MQTT handshake within `timeout`.
pub async fn open(cfg: &BusConfig, timeout: Duration) -> Result<Link, LinkError> {
    let addr = format!("{}:{}", cfg.url.host, cfg.url.port);
    tokio::time::timeout(timeout, open_inner(cfg, &addr))
        .await
        .map_err(|_| LinkError::Timeout(addr.clone()))?
}

async fn open_inner(cfg: &BusConfig, addr: &str) -> Result<Link, LinkError> {
    let tcp = TcpStream::connect((cfg.url.host.as_str(), cfg.url.port))
        .await
        .map_err(|source| LinkError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    // Telemetry is many small packets; Nagle would hold each one back for an ack.
    tcp.set_nodelay(true)?;
    let quickack = QuickAck::of(&tcp);
    let mut stream: Box<dyn Stream> = if cfg.url.tls {
        let connector = tls_connector(cfg)?;
        let name = ServerName::try_from(cfg.url.host.clone())
            .map_err(|e| LinkError::TlsSetup(format!("server name `{}`: {e}", cfg.url.host)))?;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|source| LinkError::Tls {
                addr: addr.to_string(),
                source,
            })?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };

    let connect = rumqttc::Connect {
        protocol: Protocol::V4,
        keep_alive: cfg.keep_alive.as_secs().min(u16::MAX as u64) as u16,
        client_id: cfg.client_id.clone(),
        clean_session: true,
        last_will: cfg.will.as_ref().map(will_of),
        login: cfg
            .username
            .as_ref()
            .map(|u| Login::new(u.clone(), cfg.password.clone().unwrap_or_default())),
    };
    let mut wbuf = BytesMut::new();
    Packet::Connect(connect)
        .write(&mut wbuf, usize::MAX)
        .map_err(|e| LinkError::Protocol(format!("cannot encode CONNECT: {e}")))?;
    stream.write_all(&wbuf).await?;
    stream.flush().await?;

    let mut rbuf = BytesMut::with_capacity(4096);
    loop {
        match Packet::read(&mut rbuf, cfg.max_incoming) {
            Ok(Packet::ConnAck(ack)) => {
                if ack.code != ConnectReturnCode::Success {
                    return Err(LinkError::Refused(refusal(ack.code)));
                }
                return Ok(Link {
                    stream,
                    rbuf,
                    quickack,
                });
            }
            Ok(other) => return Err(LinkError::Protocol(format!("{other:?}"))),
            Err(rumqttc::Error::InsufficientBytes(_)) => {
                if stream.read_buf(&mut rbuf).await? == 0 {
                    return Err(LinkError::Closed);
                }
            }
            Err(e) => return Err(LinkError::Protocol(e.to_string())),
        }
    }
}
