//! The simulated device's side of the benchmark: lines `s=<seq> t=<µs since the epoch>`
//! written into a byte stream (the pty the daemon reads, or `mosquitto_pub`'s stdin), at a
//! fixed rate or as one burst.

use std::io::Write as _;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Workload {
    /// `hz` lines a second for `duration`.
    Rate { hz: u32, duration: Duration },
    /// `count` lines, written as fast as the reader takes them.
    Burst { count: u64 },
}

impl Workload {
    /// How many lines the workload writes.
    pub fn total(&self) -> u64 {
        match *self {
            Workload::Rate { hz, duration } => {
                ((hz as f64 * duration.as_secs_f64()).round() as u64).max(1)
            }
            Workload::Burst { count } => count,
        }
    }
}

/// What was written, and when the first and last lines went out.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub sent: u64,
    pub first: Instant,
    pub last: Instant,
}

/// Lines per write in a burst: small enough that a line's send time is close to when the
/// reader can take it.
const BURST_CHUNK: u64 = 64;

/// Appends the lines `from..to`, all stamped `t_us`.
pub fn lines(buf: &mut Vec<u8>, from: u64, to: u64, t_us: u64) {
    for seq in from..to {
        let _ = writeln!(buf, "s={seq} t={t_us}");
    }
}

/// Writes `workload` into `w`, each line stamped with the time it is written.
pub async fn write_samples<W: AsyncWrite + Unpin>(
    w: &mut W,
    workload: Workload,
    epoch: Instant,
) -> std::io::Result<Written> {
    let total = workload.total();
    let start = Instant::now();
    let mut sent = 0;
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut last = start;
    match workload {
        Workload::Burst { .. } => {
            while sent < total {
                let to = (sent + BURST_CHUNK).min(total);
                buf.clear();
                lines(&mut buf, sent, to, epoch.elapsed().as_micros() as u64);
                w.write_all(&buf).await?;
                sent = to;
            }
            last = Instant::now();
        }
        Workload::Rate { hz, .. } => {
            // Every tick writes the lines due by then; a tick of 1 ms at most keeps the
            // pacing within a millisecond at any rate.
            let tick = Duration::from_secs_f64(1.0 / hz as f64).max(Duration::from_millis(1));
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while sent < total {
                interval.tick().await;
                let due = ((start.elapsed().as_secs_f64() * hz as f64) as u64 + 1).min(total);
                if due > sent {
                    buf.clear();
                    lines(&mut buf, sent, due, epoch.elapsed().as_micros() as u64);
                    w.write_all(&buf).await?;
                    sent = due;
                    last = Instant::now();
                }
            }
        }
    }
    w.flush().await?;
    Ok(Written {
        sent,
        first: start,
        last,
    })
}

/// Reads the lines the daemon writes to the device, each with the time it arrived, until
/// the stream ends or the receiver is dropped.
pub fn read_lines<R: AsyncRead + Unpin + Send + 'static>(
    r: R,
) -> mpsc::UnboundedReceiver<(String, Instant)> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let line = line.trim_end_matches('\r').to_string();
            if tx.send((line, Instant::now())).is_err() {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_carries_its_sequence_number_and_send_time() {
        let mut buf = Vec::new();
        lines(&mut buf, 3, 5, 1234);
        assert_eq!(buf, b"s=3 t=1234\ns=4 t=1234\n");
    }

    #[test]
    fn a_rate_writes_rate_times_seconds_lines() {
        let w = Workload::Rate {
            hz: 1000,
            duration: Duration::from_millis(2500),
        };
        assert_eq!(w.total(), 2500);
        assert_eq!(Workload::Burst { count: 7 }.total(), 7);
    }

    #[tokio::test]
    async fn a_burst_writes_every_line_in_order() {
        let mut out = Vec::new();
        let w = write_samples(&mut out, Workload::Burst { count: 200 }, Instant::now())
            .await
            .unwrap();
        assert_eq!(w.sent, 200);
        let text = String::from_utf8(out).unwrap();
        let seqs: Vec<u64> = text
            .lines()
            .map(|l| l.split(['=', ' ']).nth(1).unwrap().parse().unwrap())
            .collect();
        assert_eq!(seqs, (0..200).collect::<Vec<_>>());
    }
}
