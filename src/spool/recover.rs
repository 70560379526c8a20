//! Start-up recovery: reads what a previous run left in the spool directory, cuts torn
//! tails and removes acknowledged segments. It runs once in [`super::Spool::open`], before
//! the bus task starts, so it may touch files directly; afterwards only the I/O thread does.

use super::io::{head_path, seg_path, write_head};
use super::{record, Segment, SpoolError};
use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::path::Path;

/// What a previous run left.
pub struct Found {
    /// The lowest id not yet acknowledged.
    pub head: u64,
    pub segments: VecDeque<Segment>,
    /// Segments whose tail was cut off because it was torn or corrupt.
    pub repaired: Vec<String>,
}

pub fn recover(dir: &Path) -> Result<Found, SpoolError> {
    std::fs::create_dir_all(dir).map_err(|e| SpoolError::io(dir, e))?;
    let head_file = head_path(dir);
    let mut head = match std::fs::read(&head_file) {
        Ok(b) => record::decode_head(&b).unwrap_or_else(|| {
            tracing::warn!(path = %head_file.display(), "spool head file is corrupt; resending everything in the spool");
            0
        }),
        Err(_) => 0,
    };
    let mut firsts: Vec<u64> = std::fs::read_dir(dir)
        .map_err(|e| SpoolError::io(dir, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".seg")?.parse::<u64>().ok()
        })
        .collect();
    firsts.sort_unstable();
    let mut repaired = Vec::new();
    let mut segments = VecDeque::new();
    for first in firsts {
        let path = seg_path(dir, first);
        let data = std::fs::read(&path).map_err(|e| SpoolError::io(&path, e))?;
        let (offsets, end) = record::scan(&data);
        if end < data.len() {
            tracing::warn!(
                path = %path.display(),
                kept = offsets.len(),
                cut_bytes = data.len() - end,
                "spool segment has a torn or corrupt tail (power cut?); recovered up to the last whole record"
            );
            repaired.push(path.display().to_string());
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| SpoolError::io(&path, e))?;
            f.set_len(end as u64)
                .and_then(|()| f.sync_all())
                .map_err(|e| SpoolError::io(&path, e))?;
        }
        let seg = Segment {
            first,
            offsets,
            bytes: end as u64,
        };
        if seg.end() <= head || seg.offsets.is_empty() {
            // Fully acknowledged, or empty: nothing to keep.
            let _ = std::fs::remove_file(&path);
            continue;
        }
        segments.push_back(seg);
    }
    if let Some(s) = segments.front() {
        head = head.max(s.first);
    }
    write_head(dir, head).map_err(|e| SpoolError::io(&head_file, e))?;
    Ok(Found {
        head,
        segments,
        repaired,
    })
}
