//! Instruction packets read back off the wire, the inverse of [`instruction`]'s builders:
//! what a device (or the simulated bus in [`sim`](super::sim)) makes of the bytes a host
//! writes. Framing, CRC and resync are [`Framer`]'s, as for statuses.
//!
//! [`instruction`]: super::instruction

use super::error::DynamixelError;
use super::instruction::BulkRead;
use super::packet::{unstuff, Framer, Instruction, BROADCAST_ID};
use thiserror::Error;

/// One device's part of a Bulk Write, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkWriteData {
    pub id: u8,
    pub address: u16,
    pub data: Vec<u8>,
}

/// An instruction packet, decoded. `id` is the packet's id, [`BROADCAST_ID`] included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Ping {
        id: u8,
    },
    Read {
        id: u8,
        address: u16,
        length: u16,
    },
    Write {
        id: u8,
        address: u16,
        data: Vec<u8>,
    },
    Reboot {
        id: u8,
    },
    SyncRead {
        address: u16,
        length: u16,
        ids: Vec<u8>,
    },
    /// `data` holds each listed id with its `length` bytes, in the packet's order.
    SyncWrite {
        address: u16,
        length: u16,
        data: Vec<(u8, Vec<u8>)>,
    },
    BulkRead {
        reads: Vec<BulkRead>,
    },
    BulkWrite {
        writes: Vec<BulkWriteData>,
    },
}

/// Why bytes on the wire are no request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RequestError {
    /// A bad header or CRC, as the framing found it.
    #[error(transparent)]
    Wire(#[from] DynamixelError),
    /// A well-formed packet whose instruction is a status or one botbus does not send.
    #[error("dynamixel packet to id {id} has instruction {instruction:#04x}, not a request")]
    NotRequest { id: u8, instruction: u8 },
    /// A packet with a valid CRC whose parameters do not fit its instruction.
    #[error("dynamixel instruction packet to id {id}: {reason}")]
    Malformed { id: u8, reason: &'static str },
}

/// Cuts requests out of a byte stream fed in arbitrary chunks.
#[derive(Debug, Default)]
pub struct RequestParser {
    framer: Framer,
}

impl RequestParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held for the next [`push`](Self::push).
    pub fn pending(&self) -> usize {
        self.framer.pending()
    }

    /// Feeds `bytes`; each request, and each packet that is none, goes to `out` in order.
    pub fn push(&mut self, bytes: &[u8], mut out: impl FnMut(Result<Request, RequestError>)) {
        self.framer.push(bytes, |frame| {
            out(frame
                .map_err(RequestError::from)
                .and_then(|f| decode(f.id, f.region)))
        });
    }
}

/// The request in a packet to `id` whose CRC matched; `region` is its stuffed instruction
/// and parameters.
fn decode(id: u8, region: &[u8]) -> Result<Request, RequestError> {
    let malformed = |reason| RequestError::Malformed { id, reason };
    let plain = unstuff(region).ok_or_else(|| malformed("its byte stuffing is broken"))?;
    let Some((&code, params)) = plain.split_first() else {
        return Err(malformed("no instruction"));
    };
    let not_request = || RequestError::NotRequest {
        id,
        instruction: code,
    };
    let instruction = Instruction::from_code(code).ok_or_else(not_request)?;
    let multi = matches!(
        instruction,
        Instruction::SyncRead
            | Instruction::SyncWrite
            | Instruction::BulkRead
            | Instruction::BulkWrite
    );
    if multi && id != BROADCAST_ID {
        return Err(malformed(
            "sync and bulk instructions go to the broadcast id",
        ));
    }
    match instruction {
        Instruction::Status => Err(not_request()),
        Instruction::Ping => {
            no_params(params, Request::Ping { id }).ok_or(malformed("a ping has no parameters"))
        }
        Instruction::Reboot => {
            no_params(params, Request::Reboot { id }).ok_or(malformed("a reboot has no parameters"))
        }
        Instruction::Read => read(id, params).ok_or(malformed("a read is an address and a length")),
        Instruction::Write => write(id, params).ok_or(malformed("a write is an address and data")),
        Instruction::SyncRead => {
            sync_read(params).ok_or(malformed("a sync read is an address, a length and ids"))
        }
        Instruction::SyncWrite => sync_write(params).ok_or(malformed(
            "a sync write's data do not split into its length",
        )),
        Instruction::BulkRead => {
            bulk_read(params).ok_or(malformed("a bulk read's entries are 5 bytes each"))
        }
        Instruction::BulkWrite => {
            bulk_write(params).ok_or(malformed("a bulk write's entries do not add up"))
        }
    }
}

fn no_params(params: &[u8], request: Request) -> Option<Request> {
    params.is_empty().then_some(request)
}

/// The two little-endian u16s that open Read, Sync Read and Sync Write parameters, and
/// the bytes after them.
fn address_length(params: &[u8]) -> Option<(u16, u16, &[u8])> {
    match params {
        [a0, a1, l0, l1, rest @ ..] => Some((
            u16::from_le_bytes([*a0, *a1]),
            u16::from_le_bytes([*l0, *l1]),
            rest,
        )),
        _ => None,
    }
}

fn read(id: u8, params: &[u8]) -> Option<Request> {
    match address_length(params)? {
        (address, length, []) => Some(Request::Read {
            id,
            address,
            length,
        }),
        _ => None,
    }
}

fn write(id: u8, params: &[u8]) -> Option<Request> {
    match params {
        [a0, a1, data @ ..] if !data.is_empty() => Some(Request::Write {
            id,
            address: u16::from_le_bytes([*a0, *a1]),
            data: data.to_vec(),
        }),
        _ => None,
    }
}

fn sync_read(params: &[u8]) -> Option<Request> {
    let (address, length, ids) = address_length(params)?;
    (!ids.is_empty()).then(|| Request::SyncRead {
        address,
        length,
        ids: ids.to_vec(),
    })
}

fn sync_write(params: &[u8]) -> Option<Request> {
    let (address, length, rest) = address_length(params)?;
    let entry = 1 + length as usize;
    if length == 0 || rest.is_empty() || rest.len() % entry != 0 {
        return None;
    }
    let data = rest
        .chunks_exact(entry)
        .filter_map(|c| c.split_first())
        .map(|(id, d)| (*id, d.to_vec()))
        .collect();
    Some(Request::SyncWrite {
        address,
        length,
        data,
    })
}

fn bulk_read(params: &[u8]) -> Option<Request> {
    if params.is_empty() || params.len() % 5 != 0 {
        return None;
    }
    let reads = params
        .chunks_exact(5)
        .filter_map(|c| {
            let (id, rest) = c.split_first()?;
            let (address, length, _) = address_length(rest)?;
            Some(BulkRead {
                id: *id,
                address,
                length,
            })
        })
        .collect();
    Some(Request::BulkRead { reads })
}

fn bulk_write(mut params: &[u8]) -> Option<Request> {
    let mut writes = Vec::new();
    while let Some((&id, rest)) = params.split_first() {
        let (address, length, rest) = address_length(rest)?;
        if length == 0 {
            return None;
        }
        let (data, after) = rest.split_at_checked(length as usize)?;
        writes.push(BulkWriteData {
            id,
            address,
            data: data.to_vec(),
        });
        params = after;
    }
    (!writes.is_empty()).then_some(Request::BulkWrite { writes })
}

#[cfg(test)]
mod tests {
    use super::super::instruction::{self, BulkWrite};
    use super::super::packet::encode;
    use super::*;

    fn parse(bytes: &[u8]) -> Vec<Result<Request, RequestError>> {
        let mut out = Vec::new();
        RequestParser::new().push(bytes, |r| out.push(r));
        out
    }

    #[test]
    fn every_builder_reads_back_as_what_it_built() {
        let goal = 0x00FD_FFFFi32.to_le_bytes();
        let cases: Vec<(Vec<u8>, Request)> = vec![
            (instruction::ping(1).unwrap(), Request::Ping { id: 1 }),
            (
                instruction::ping(BROADCAST_ID).unwrap(),
                Request::Ping { id: BROADCAST_ID },
            ),
            (
                instruction::read(2, 132, 4).unwrap(),
                Request::Read {
                    id: 2,
                    address: 132,
                    length: 4,
                },
            ),
            // Stuffed data must come back unstuffed.
            (
                instruction::write(1, 116, &goal).unwrap(),
                Request::Write {
                    id: 1,
                    address: 116,
                    data: goal.to_vec(),
                },
            ),
            (instruction::reboot(3).unwrap(), Request::Reboot { id: 3 }),
            (
                instruction::sync_read(126, 10, &[1, 2, 3]).unwrap(),
                Request::SyncRead {
                    address: 126,
                    length: 10,
                    ids: vec![1, 2, 3],
                },
            ),
            (
                instruction::sync_write(116, &[(1, &[1, 2][..]), (2, &[3, 4])]).unwrap(),
                Request::SyncWrite {
                    address: 116,
                    length: 2,
                    data: vec![(1, vec![1, 2]), (2, vec![3, 4])],
                },
            ),
            (
                instruction::bulk_read(&[BulkRead {
                    id: 1,
                    address: 144,
                    length: 2,
                }])
                .unwrap(),
                Request::BulkRead {
                    reads: vec![BulkRead {
                        id: 1,
                        address: 144,
                        length: 2,
                    }],
                },
            ),
            (
                instruction::bulk_write(&[
                    BulkWrite {
                        id: 1,
                        address: 32,
                        data: &[160, 0],
                    },
                    BulkWrite {
                        id: 2,
                        address: 31,
                        data: &[80],
                    },
                ])
                .unwrap(),
                Request::BulkWrite {
                    writes: vec![
                        BulkWriteData {
                            id: 1,
                            address: 32,
                            data: vec![160, 0],
                        },
                        BulkWriteData {
                            id: 2,
                            address: 31,
                            data: vec![80],
                        },
                    ],
                },
            ),
        ];
        for (wire, want) in cases {
            assert_eq!(parse(&wire), vec![Ok(want)]);
        }
    }

    #[test]
    fn packets_that_are_no_request_say_why() {
        let status = encode(1, Instruction::Status, &[0]).unwrap();
        let unknown = {
            let mut w = encode(1, Instruction::Ping, &[]).unwrap();
            w[7] = 0x05; // Action, which botbus does not send.
            let n = w.len() - 2;
            let crc = super::super::crc::crc16(&w[..n]).to_le_bytes();
            w[n..].copy_from_slice(&crc);
            w
        };
        let short_read = encode(1, Instruction::Read, &[132, 0, 4]).unwrap();
        let ragged_sync =
            encode(BROADCAST_ID, Instruction::SyncWrite, &[116, 0, 2, 0, 1, 5]).unwrap();
        let unicast_sync = encode(1, Instruction::SyncRead, &[126, 0, 10, 0, 1]).unwrap();
        let mut crc_bad = instruction::ping(1).unwrap();
        crc_bad[9] ^= 1;
        let mut all = Vec::new();
        for p in [
            &status,
            &unknown,
            &short_read,
            &ragged_sync,
            &unicast_sync,
            &crc_bad,
        ] {
            all.extend_from_slice(p);
        }
        let got = parse(&all);
        assert!(matches!(
            got[0],
            Err(RequestError::NotRequest {
                id: 1,
                instruction: 0x55
            })
        ));
        assert!(matches!(
            got[1],
            Err(RequestError::NotRequest {
                id: 1,
                instruction: 0x05
            })
        ));
        assert!(matches!(got[2], Err(RequestError::Malformed { id: 1, .. })));
        assert!(matches!(
            got[3],
            Err(RequestError::Malformed {
                id: BROADCAST_ID,
                ..
            })
        ));
        assert!(matches!(got[4], Err(RequestError::Malformed { id: 1, .. })));
        assert!(matches!(
            got[5],
            Err(RequestError::Wire(DynamixelError::Crc { id: 1, .. }))
        ));
        assert_eq!(got.len(), 6);
    }
}
