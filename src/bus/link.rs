//! Opening a broker connection: TCP with TCP_NODELAY (and quick ACKs), optional TLS (rustls, with mutual
//! X.509 authentication), then CONNECT and the broker's CONNACK.

use super::{BusConfig, Outgoing};
use crate::tls::{ClientTls, TlsError};
use bytes::BytesMut;
use rumqttc::tokio_rustls::client::TlsStream;
use rumqttc::{ConnectReturnCode, LastWill, Login, Packet, Protocol};
use rustls_pki_types::ServerName;
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
    TlsSetup(#[from] TlsError),
    /// The handshake failed, or the broker refused us right after it; in plain words.
    #[error("TLS with {addr}: {reason}")]
    Tls { addr: String, reason: String },
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
        matches!(
            self,
            LinkError::Refused(_) | LinkError::TlsSetup(_) | LinkError::Tls { .. }
        )
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
    let tcp = connect_tcp(cfg, addr).await?;
    let quickack = QuickAck::of(&tcp);
    if !cfg.url.tls {
        let mut stream: Box<dyn Stream> = Box::new(tcp);
        let rbuf = mqtt_connect(&mut stream, cfg, None, addr).await?;
        return Ok(Link {
            stream,
            rbuf,
            quickack,
        });
    }
    // The files are read on every attempt, so fixing them needs no restart.
    let tls = ClientTls::new(&cfg.tls)?;
    let mut stream: Box<dyn Stream> = Box::new(handshake(&tls, tcp, cfg, addr).await?);
    let rbuf = mqtt_connect(&mut stream, cfg, Some(&tls), addr).await?;
    Ok(Link {
        stream,
        rbuf,
        quickack,
    })
}

/// A TCP connection to the broker, with Nagle off: telemetry is many small packets, and
/// Nagle would hold each one back for an ACK.
pub async fn connect_tcp(cfg: &BusConfig, addr: &str) -> Result<TcpStream, LinkError> {
    let tcp = TcpStream::connect((cfg.url.host.as_str(), cfg.url.port))
        .await
        .map_err(|source| LinkError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// The TLS handshake, its failure explained in plain words.
pub async fn handshake(
    tls: &ClientTls,
    tcp: TcpStream,
    cfg: &BusConfig,
    addr: &str,
) -> Result<TlsStream<TcpStream>, LinkError> {
    let name = ServerName::try_from(cfg.url.host.clone()).map_err(|e| {
        LinkError::TlsSetup(TlsError::Setup(format!(
            "server name `{}`: {e}",
            cfg.url.host
        )))
    })?;
    tls.connector()
        .connect(name, tcp)
        .await
        .map_err(|e| LinkError::Tls {
            addr: addr.to_string(),
            reason: tls.explain(&e, &cfg.url.host),
        })
}

/// CONNECT, then the broker's CONNACK; returns the bytes read after it. Over TLS
/// (`tls`), an I/O failure is explained: under TLS 1.3 the broker checks our certificate
/// after the handshake has ended for us, so its refusal arrives as an alert here.
pub async fn mqtt_connect(
    stream: &mut Box<dyn Stream>,
    cfg: &BusConfig,
    tls: Option<&ClientTls>,
    addr: &str,
) -> Result<BytesMut, LinkError> {
    exchange_connect(stream, cfg)
        .await
        .map_err(|e| match (e, tls) {
            (LinkError::Io(io), Some(tls)) => LinkError::Tls {
                addr: addr.to_string(),
                reason: tls.explain(&io, &cfg.url.host),
            },
            (other, _) => other,
        })
}

async fn exchange_connect(
    stream: &mut Box<dyn Stream>,
    cfg: &BusConfig,
) -> Result<BytesMut, LinkError> {
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
                return Ok(rbuf);
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
