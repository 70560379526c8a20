//! A TCP proxy between the daemon and the broker, like the netproxy of Paho's interop
//! suite: it forwards both directions and can cut or stall the link on demand.

use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

struct ProxyCtl {
    upstream: u16,
    /// While true, no byte is forwarded in either direction, on any connection (new ones
    /// are accepted and then held too), but every socket stays open: a half-open link.
    stalled: tokio::sync::watch::Sender<bool>,
    /// Bumped by [`Proxy::cut`]; each connection closes when it changes.
    cut: tokio::sync::watch::Sender<u64>,
    accepted: std::sync::Mutex<Vec<Instant>>,
}

/// A TCP proxy between the daemon and the broker, like the netproxy of Paho's interop
/// suite: it forwards both directions and can cut or stall the link on demand.
pub struct Proxy {
    port: u16,
    ctl: std::sync::Arc<ProxyCtl>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards each connection to `upstream_port`.
    /// Call it inside a tokio runtime; [`BrokerOptions::proxy`](super::BrokerOptions::proxy)
    /// does.
    pub fn start(upstream_port: u16) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener
            .set_nonblocking(true)
            .expect("non-blocking proxy socket");
        let listener =
            tokio::net::TcpListener::from_std(listener).expect("the proxy needs a tokio runtime");
        let port = listener.local_addr().expect("proxy address").port();
        let ctl = std::sync::Arc::new(ProxyCtl {
            upstream: upstream_port,
            stalled: tokio::sync::watch::channel(false).0,
            cut: tokio::sync::watch::channel(0).0,
            accepted: std::sync::Mutex::new(Vec::new()),
        });
        let c = ctl.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((down, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                // Subscribed before anything else, so a cut from now on closes this one.
                let cut = c.cut.subscribe();
                c.accepted.lock().unwrap().push(Instant::now());
                tokio::spawn(proxy_connection(down, c.clone(), cut));
            }
        });
        Proxy { port, ctl, task }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL to give the daemon (`BOTBUS_MQTT__URL`).
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Closes every current connection (both sides); new ones are accepted as usual.
    pub fn cut(&self) {
        self.ctl.cut.send_modify(|g| *g += 1);
    }

    /// Stops (`true`) or resumes (`false`) forwarding, keeping every socket open.
    pub fn stall(&self, on: bool) {
        self.ctl.stalled.send_replace(on);
    }

    /// How many connections it has accepted so far.
    pub fn connections(&self) -> usize {
        self.ctl.accepted.lock().unwrap().len()
    }

    /// When each connection was accepted.
    pub fn accepted_at(&self) -> Vec<Instant> {
        self.ctl.accepted.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

async fn proxy_connection(
    down: tokio::net::TcpStream,
    ctl: std::sync::Arc<ProxyCtl>,
    mut cut: tokio::sync::watch::Receiver<u64>,
) {
    let up = tokio::select! {
        r = tokio::net::TcpStream::connect(("127.0.0.1", ctl.upstream)) => match r {
            Ok(s) => s,
            // Broker down: the client sees its connection closed.
            Err(_) => return,
        },
        _ = cut.changed() => return,
    };
    let _ = down.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let (dr, dw) = down.into_split();
    let (ur, uw) = up.into_split();
    tokio::select! {
        _ = proxy_pump(dr, uw, ctl.stalled.subscribe()) => {}
        _ = proxy_pump(ur, dw, ctl.stalled.subscribe()) => {}
        _ = cut.changed() => {}
    }
    // Dropping the four halves closes both sockets.
}

async fn proxy_pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read just as the stall began are held, not forwarded, until it ends.
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
