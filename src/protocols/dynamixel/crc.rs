//! The CRC-16 that ends every Protocol 2.0 packet: polynomial 0x8005, initial value 0, no
//! reflection and no final xor, which is the e-Manual's `update_crc` table. The `crc`
//! crate's catalogue calls it CRC-16/UMTS (also known as BUYPASS and VERIFONE).

const ALGORITHM: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_UMTS);

/// The CRC of `bytes`: a packet from its header through its last parameter, stuffing
/// included.
pub fn crc16(bytes: &[u8]) -> u16 {
    ALGORITHM.checksum(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The e-Manual's polynomial, bit by bit, to check the table against.
    fn bitwise(bytes: &[u8]) -> u16 {
        let mut crc = 0u16;
        for &b in bytes {
            crc ^= (b as u16) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x8005
                } else {
                    crc << 1
                };
            }
        }
        crc
    }

    /// e-Manual, Protocol 2.0, "Read" example: the instruction packet
    /// `FF FF FD 00 01 07 00 02 84 00 04 00` ends with CRC_L 0x1D, CRC_H 0x15.
    #[test]
    fn the_emanual_read_example_has_crc_0x151d() {
        let packet = [
            0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x07, 0x00, 0x02, 0x84, 0x00, 0x04, 0x00,
        ];
        assert_eq!(crc16(&packet), 0x151D);
    }

    /// The catalogue's check value for CRC-16/BUYPASS.
    #[test]
    fn the_check_string_gives_the_catalogue_value() {
        assert_eq!(crc16(b"123456789"), 0xFEE8);
        assert_eq!(bitwise(b"123456789"), 0xFEE8);
    }

    proptest! {
        #[test]
        fn the_table_agrees_with_the_polynomial(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(crc16(&bytes), bitwise(&bytes));
        }
    }
}
