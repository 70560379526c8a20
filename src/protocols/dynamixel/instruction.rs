//! Instruction packets botbus sends: ping, read, write, reboot, sync read, sync write,
//! bulk read and bulk write, each returned as the bytes to write to the port (stuffed and
//! CRC'd). Ids and lengths are checked here, so a bad request fails before it reaches a
//! bus where it would only time out.

use super::error::DynamixelError;
use super::packet::{encode, Instruction, BROADCAST_ID, MAX_DEVICE_ID};

/// One device's part of a Bulk Read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkRead {
    pub id: u8,
    pub address: u16,
    pub length: u16,
}

/// One device's part of a Bulk Write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkWrite<'a> {
    pub id: u8,
    pub address: u16,
    pub data: &'a [u8],
}

/// `id` when it names one device.
fn device(id: u8) -> Result<u8, DynamixelError> {
    if id <= MAX_DEVICE_ID {
        Ok(id)
    } else {
        Err(DynamixelError::BadId { id })
    }
}

/// `id` when it names one device or all of them.
fn target(id: u8) -> Result<u8, DynamixelError> {
    if id == BROADCAST_ID {
        Ok(id)
    } else {
        device(id)
    }
}

/// Checks the ids of a multi-device request: devices, each once, at least one. A repeated
/// id would make two devices (or one twice) answer in the slot of one.
fn distinct(what: &'static str, ids: impl IntoIterator<Item = u8>) -> Result<(), DynamixelError> {
    let mut seen = [false; 256];
    let mut any = false;
    for id in ids {
        device(id)?;
        if std::mem::replace(&mut seen[id as usize], true) {
            return Err(DynamixelError::DuplicateId { id });
        }
        any = true;
    }
    if any {
        Ok(())
    } else {
        Err(DynamixelError::Empty { what })
    }
}

/// A length in a parameter field: anything over the packet limit fails `encode` anyway,
/// so saturating only has to keep the arithmetic honest.
fn len16(len: usize) -> [u8; 2] {
    u16::try_from(len).unwrap_or(u16::MAX).to_le_bytes()
}

/// Ping `id`, or every device with [`BROADCAST_ID`]. Always answered, whatever the
/// device's Status Return Level.
pub fn ping(id: u8) -> Result<Vec<u8>, DynamixelError> {
    encode(target(id)?, Instruction::Ping, &[])
}

/// Read `length` bytes from `address` of one device (a broadcast read is not answered).
pub fn read(id: u8, address: u16, length: u16) -> Result<Vec<u8>, DynamixelError> {
    let [a0, a1] = address.to_le_bytes();
    let [l0, l1] = length.to_le_bytes();
    encode(device(id)?, Instruction::Read, &[a0, a1, l0, l1])
}

/// Write `data` at `address` of `id`, or of every device with [`BROADCAST_ID`].
pub fn write(id: u8, address: u16, data: &[u8]) -> Result<Vec<u8>, DynamixelError> {
    if data.is_empty() {
        return Err(DynamixelError::Empty { what: "write" });
    }
    let mut params = Vec::with_capacity(2 + data.len());
    params.extend_from_slice(&address.to_le_bytes());
    params.extend_from_slice(data);
    encode(target(id)?, Instruction::Write, &params)
}

/// Reboot `id`, or every device with [`BROADCAST_ID`].
pub fn reboot(id: u8) -> Result<Vec<u8>, DynamixelError> {
    encode(target(id)?, Instruction::Reboot, &[])
}

/// Read `length` bytes at `address` from each of `ids`; each answers with its own status,
/// in the order of `ids`.
pub fn sync_read(address: u16, length: u16, ids: &[u8]) -> Result<Vec<u8>, DynamixelError> {
    distinct("sync read", ids.iter().copied())?;
    let mut params = Vec::with_capacity(4 + ids.len());
    params.extend_from_slice(&address.to_le_bytes());
    params.extend_from_slice(&length.to_le_bytes());
    params.extend_from_slice(ids);
    encode(BROADCAST_ID, Instruction::SyncRead, &params)
}

/// Write the same number of bytes at `address` of each device: `(id, data)` pairs. Not
/// answered.
pub fn sync_write(address: u16, entries: &[(u8, &[u8])]) -> Result<Vec<u8>, DynamixelError> {
    distinct("sync write", entries.iter().map(|(id, _)| *id))?;
    let want = entries.first().map_or(0, |(_, d)| d.len());
    if want == 0 {
        return Err(DynamixelError::Empty {
            what: "sync write's data",
        });
    }
    let mut params = Vec::with_capacity(4 + entries.len() * (1 + want));
    params.extend_from_slice(&address.to_le_bytes());
    params.extend_from_slice(&len16(want));
    for (id, data) in entries {
        if data.len() != want {
            return Err(DynamixelError::DataLength {
                id: *id,
                want,
                got: data.len(),
            });
        }
        params.push(*id);
        params.extend_from_slice(data);
    }
    encode(BROADCAST_ID, Instruction::SyncWrite, &params)
}

/// Read a different range from each device; each answers with its own status, in order.
pub fn bulk_read(reads: &[BulkRead]) -> Result<Vec<u8>, DynamixelError> {
    distinct("bulk read", reads.iter().map(|r| r.id))?;
    let mut params = Vec::with_capacity(5 * reads.len());
    for r in reads {
        params.push(r.id);
        params.extend_from_slice(&r.address.to_le_bytes());
        params.extend_from_slice(&r.length.to_le_bytes());
    }
    encode(BROADCAST_ID, Instruction::BulkRead, &params)
}

/// Write different data at a different address of each device. Not answered.
pub fn bulk_write(writes: &[BulkWrite<'_>]) -> Result<Vec<u8>, DynamixelError> {
    distinct("bulk write", writes.iter().map(|w| w.id))?;
    let mut params = Vec::new();
    for w in writes {
        if w.data.is_empty() {
            return Err(DynamixelError::Empty {
                what: "bulk write's data",
            });
        }
        params.push(w.id);
        params.extend_from_slice(&w.address.to_le_bytes());
        params.extend_from_slice(&len16(w.data.len()));
        params.extend_from_slice(w.data);
    }
    encode(BROADCAST_ID, Instruction::BulkWrite, &params)
}

/// Byte-for-byte against the instruction packets of the ROBOTIS e-Manual, Protocol 2.0
/// page ("Instruction Details" examples; source ROBOTIS-GIT/emanual
/// `docs/en/dxl/protocol2.md`).
#[cfg(test)]
mod tests {
    use super::super::packet::MAX_PACKET;
    use super::*;

    #[test]
    fn ping_matches_the_emanual() {
        // Ping, example 1 (ID 1) and example 2 (broadcast).
        assert_eq!(
            ping(1).unwrap(),
            [0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x03, 0x00, 0x01, 0x19, 0x4E]
        );
        assert_eq!(
            ping(BROADCAST_ID).unwrap(),
            [0xFF, 0xFF, 0xFD, 0x00, 0xFE, 0x03, 0x00, 0x01, 0x31, 0x42]
        );
    }

    #[test]
    fn read_matches_the_emanual() {
        // Read: Present Position (132, 4 bytes) of ID 1.
        assert_eq!(
            read(1, 132, 4).unwrap(),
            [0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x07, 0x00, 0x02, 0x84, 0x00, 0x04, 0x00, 0x1D, 0x15]
        );
    }

    #[test]
    fn write_matches_the_emanual() {
        // Write: 512 to Goal Position (116, 4 bytes) of ID 1.
        assert_eq!(
            write(1, 116, &512i32.to_le_bytes()).unwrap(),
            [
                0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x09, 0x00, 0x03, 0x74, 0x00, 0x00, 0x02, 0x00, 0x00,
                0xCA, 0x89
            ]
        );
    }

    #[test]
    fn reboot_matches_the_emanual() {
        assert_eq!(
            reboot(1).unwrap(),
            [0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x03, 0x00, 0x08, 0x2F, 0x4E]
        );
    }

    #[test]
    fn sync_read_matches_the_emanual() {
        // Sync Read: Present Position (132, 4 bytes) of IDs 1 and 2.
        assert_eq!(
            sync_read(132, 4, &[1, 2]).unwrap(),
            [
                0xFF, 0xFF, 0xFD, 0x00, 0xFE, 0x09, 0x00, 0x82, 0x84, 0x00, 0x04, 0x00, 0x01, 0x02,
                0xCE, 0xFA
            ]
        );
    }

    #[test]
    fn sync_write_matches_the_emanual() {
        // Sync Write: Goal Position (116, 4 bytes) 150 to ID 1 and 170 to ID 2.
        let (a, b) = (150i32.to_le_bytes(), 170i32.to_le_bytes());
        assert_eq!(
            sync_write(116, &[(1, &a), (2, &b)]).unwrap(),
            [
                0xFF, 0xFF, 0xFD, 0x00, 0xFE, 0x11, 0x00, 0x83, 0x74, 0x00, 0x04, 0x00, 0x01, 0x96,
                0x00, 0x00, 0x00, 0x02, 0xAA, 0x00, 0x00, 0x00, 0x82, 0x87
            ]
        );
    }

    #[test]
    fn bulk_read_matches_the_emanual() {
        // Bulk Read: Present Input Voltage (144, 2) of ID 1, Present Temperature (146, 1)
        // of ID 2.
        let reads = [
            BulkRead {
                id: 1,
                address: 144,
                length: 2,
            },
            BulkRead {
                id: 2,
                address: 146,
                length: 1,
            },
        ];
        assert_eq!(
            bulk_read(&reads).unwrap(),
            [
                0xFF, 0xFF, 0xFD, 0x00, 0xFE, 0x0D, 0x00, 0x92, 0x01, 0x90, 0x00, 0x02, 0x00, 0x02,
                0x92, 0x00, 0x01, 0x00, 0x1A, 0x05
            ]
        );
    }

    #[test]
    fn bulk_write_matches_the_emanual() {
        // Bulk Write: Max Voltage Limit (32, 2) 160 to ID 1, Temperature Limit (31, 1) 80
        // to ID 2.
        let writes = [
            BulkWrite {
                id: 1,
                address: 32,
                data: &160u16.to_le_bytes(),
            },
            BulkWrite {
                id: 2,
                address: 31,
                data: &[80],
            },
        ];
        assert_eq!(
            bulk_write(&writes).unwrap(),
            [
                0xFF, 0xFF, 0xFD, 0x00, 0xFE, 0x10, 0x00, 0x93, 0x01, 0x20, 0x00, 0x02, 0x00, 0xA0,
                0x00, 0x02, 0x1F, 0x00, 0x01, 0x00, 0x50, 0xB7, 0x68
            ]
        );
    }

    #[test]
    fn bad_requests_are_refused_before_the_bus() {
        assert_eq!(ping(0xFD), Err(DynamixelError::BadId { id: 0xFD }));
        assert_eq!(
            read(BROADCAST_ID, 0, 1),
            Err(DynamixelError::BadId { id: 0xFE })
        );
        assert_eq!(
            write(1, 0, &[]),
            Err(DynamixelError::Empty { what: "write" })
        );
        assert_eq!(
            sync_read(0, 4, &[]),
            Err(DynamixelError::Empty { what: "sync read" })
        );
        assert_eq!(
            sync_read(0, 4, &[1, 2, 1]),
            Err(DynamixelError::DuplicateId { id: 1 })
        );
        assert_eq!(
            sync_read(0, 4, &[1, 0xFE]),
            Err(DynamixelError::BadId { id: 0xFE })
        );
        assert_eq!(
            sync_write(0, &[(1, &[1, 2]), (2, &[1])]),
            Err(DynamixelError::DataLength {
                id: 2,
                want: 2,
                got: 1
            })
        );
        let big = vec![0u8; MAX_PACKET];
        assert!(matches!(
            write(1, 0, &big),
            Err(DynamixelError::TooLong { .. })
        ));
        assert!(matches!(
            sync_write(0, &[(1, &big[..600]), (2, &big[..600])]),
            Err(DynamixelError::TooLong { .. })
        ));
    }
}
