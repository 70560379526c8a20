//! Opening a device: serial ports through tokio-serial, or TCP for ser2net-style serial
//! servers, in one factory. Drivers only see `AsyncRead + AsyncWrite`, so tests can use
//! pseudo-terminals or in-memory pipes.

use crate::spec::{FlowControlConfig, ParityConfig, SerialSpec, TransportSpec};
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_serial::SerialPortBuilderExt;

pub trait DeviceStream: AsyncRead + AsyncWrite + Send + Unpin + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + std::fmt::Debug> DeviceStream for T {}

pub type BoxedStream = Box<dyn DeviceStream>;

#[derive(Debug, Error)]
pub enum TransportError {
    #[error("{path}: no such device")]
    Missing { path: String },
    #[error("{path}: {message}")]
    Serial { path: String, message: String },
    #[error("tcp {addr}: {source}")]
    Tcp {
        addr: String,
        source: std::io::Error,
    },
    #[error("tcp {addr}: timed out connecting")]
    TcpTimeout { addr: String },
}

fn open_serial(s: &SerialSpec) -> Result<BoxedStream, TransportError> {
    let path = s.path.display().to_string();
    // Checked first so an unplugged adapter reads as "missing", not as an ioctl error.
    if !s.path.exists() {
        return Err(TransportError::Missing { path });
    }
    let data_bits = match s.data_bits {
        5 => tokio_serial::DataBits::Five,
        6 => tokio_serial::DataBits::Six,
        7 => tokio_serial::DataBits::Seven,
        _ => tokio_serial::DataBits::Eight,
    };
    let parity = match s.parity {
        ParityConfig::None => tokio_serial::Parity::None,
        ParityConfig::Odd => tokio_serial::Parity::Odd,
        ParityConfig::Even => tokio_serial::Parity::Even,
    };
    let stop_bits = match s.stop_bits {
        2 => tokio_serial::StopBits::Two,
        _ => tokio_serial::StopBits::One,
    };
    let flow = match s.flow_control {
        FlowControlConfig::None => tokio_serial::FlowControl::None,
        FlowControlConfig::Software => tokio_serial::FlowControl::Software,
        FlowControlConfig::Hardware => tokio_serial::FlowControl::Hardware,
    };
    let port = tokio_serial::new(path.clone(), s.baud)
        .data_bits(data_bits)
        .parity(parity)
        .stop_bits(stop_bits)
        .flow_control(flow)
        .open_native_async()
        .map_err(|e| TransportError::Serial {
            path,
            message: e.to_string(),
        })?;
    Ok(Box::new(port))
}

/// Opens the device's transport.
pub async fn open(spec: &TransportSpec) -> Result<BoxedStream, TransportError> {
    match spec {
        TransportSpec::Serial(s) => open_serial(s),
        TransportSpec::Tcp(addr) => {
            let connect = tokio::net::TcpStream::connect(addr.as_str());
            let tcp = tokio::time::timeout(Duration::from_secs(5), connect)
                .await
                .map_err(|_| TransportError::TcpTimeout { addr: addr.clone() })?
                .map_err(|source| TransportError::Tcp {
                    addr: addr.clone(),
                    source,
                })?;
            let _ = tcp.set_nodelay(true);
            Ok(Box::new(tcp))
        }
    }
}
