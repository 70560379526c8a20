//! CAN signals from DBC files, sans-IO: the `can-dbc` crate parses the file; this module
//! turns messages into a compact form and decodes and encodes signal values: Intel and
//! Motorola byte order, signed values, factor and offset, multiplexed signals.

use crate::messages::Scalar;
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DbcLoadError {
    #[error("{path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}: not a valid DBC file: {source}")]
    Parse {
        path: String,
        source: DbcSyntaxError,
    },
}

/// Why values cannot be written as a DBC message. The text is the command's ack.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EncodeError {
    #[error("{signal}: {value} is not finite")]
    NotFinite { signal: String, value: f64 },
    #[error("{signal}: {value} is outside the DBC range [{min}, {max}]")]
    OutOfRange {
        signal: String,
        value: f64,
        min: f64,
        max: f64,
    },
    #[error("{signal}: {value} needs raw {raw}, beyond the signal's {bits} bits")]
    TooWide {
        signal: String,
        value: f64,
        raw: f64,
        bits: u32,
    },
    #[error("{message}: no signal `{signal}`")]
    NoSignal { message: String, signal: String },
    #[error("{message}: signal `{signal}` does not fit the frame")]
    OutsideFrame { message: String, signal: String },
    #[error("{message}: signal `{signal}` belongs to multiplexor value {needs}, not {switch}")]
    OtherMux {
        message: String,
        signal: String,
        needs: u64,
        switch: u64,
    },
}

/// What can-dbc found wrong in a DBC file's text.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("{0}")]
pub struct DbcSyntaxError(String);

/// When a signal is present in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mux {
    Plain,
    /// The multiplexor switch itself.
    Switch,
    /// Present when the switch has this value.
    On(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SignalDef {
    pub name: String,
    pub start_bit: u32,
    pub size: u32,
    /// Intel (`@1`) when true, Motorola (`@0`) otherwise.
    pub little_endian: bool,
    pub signed: bool,
    pub factor: f64,
    pub offset: f64,
    /// DBC range; both zero means unspecified.
    pub min: f64,
    pub max: f64,
    pub mux: Mux,
    /// Raw value from `GenSigStartValue`, if the file gives one.
    pub initial_raw: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MessageDef {
    pub name: String,
    /// The 11- or 29-bit identifier.
    pub id: u32,
    pub extended: bool,
    /// Sent as a CAN FD frame: the file says so (`VFrameFormat`), or it is longer than 8.
    pub fd: bool,
    pub dlc: u8,
    pub signals: Vec<SignalDef>,
}

/// The messages of one DBC file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Database {
    pub messages: Vec<MessageDef>,
}

fn numeric(v: &can_dbc::NumericValue) -> f64 {
    match v {
        can_dbc::NumericValue::Uint(u) => *u as f64,
        can_dbc::NumericValue::Int(i) => *i as f64,
        can_dbc::NumericValue::Double(d) => *d,
    }
}

/// Whether the file declares a message CAN FD: its `VFrameFormat` (or the attribute's
/// default) names a `StandardCAN_FD` or `ExtendedCAN_FD` entry. The value is an index into
/// the attribute's own enum list, which tools write with different lengths, so the name is
/// looked up rather than the number trusted (as cantools does).
fn declared_fd(dbc: &can_dbc::Dbc, id: can_dbc::MessageId) -> bool {
    let names = dbc.attribute_definitions.iter().find_map(|d| match d {
        can_dbc::AttributeDefinition::Message(name, can_dbc::AttributeValueType::Enum(names))
            if name == "VFrameFormat" =>
        {
            Some(names)
        }
        _ => None,
    });
    let name = match dbc.resolved_message_attribute(id, "VFrameFormat") {
        Some(can_dbc::AttributeValue::String(s)) => Some(s.as_str()),
        Some(can_dbc::AttributeValue::Uint(i)) => {
            names.and_then(|n| n.get(*i as usize)).map(String::as_str)
        }
        Some(can_dbc::AttributeValue::Int(i)) => names
            .and_then(|n| n.get(usize::try_from(*i).ok()?))
            .map(String::as_str),
        _ => None,
    };
    name.is_some_and(|n| n.ends_with("CAN_FD"))
}

impl Database {
    pub fn load(path: &Path) -> Result<Database, DbcLoadError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| DbcLoadError::Read {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        // DBC files are often Windows-1252; keep what is ASCII and replace the rest.
        let text = String::from_utf8_lossy(&bytes);
        Database::parse(&text).map_err(|source| DbcLoadError::Parse {
            path: shown,
            source,
        })
    }

    pub fn parse(text: &str) -> Result<Database, DbcSyntaxError> {
        let dbc = can_dbc::Dbc::try_from(text).map_err(|e| DbcSyntaxError(format!("{e:?}")))?;
        let mut messages = Vec::new();
        for m in &dbc.messages {
            let (id, extended) = match m.id {
                can_dbc::MessageId::Standard(id) => (id as u32, false),
                can_dbc::MessageId::Extended(id) => (id, true),
            };
            let signals = m
                .signals
                .iter()
                .map(|s| {
                    let initial_raw =
                        match dbc.resolved_signal_attribute(m.id, &s.name, "GenSigStartValue") {
                            Some(can_dbc::AttributeValue::Uint(u)) => Some(*u as i64),
                            Some(can_dbc::AttributeValue::Int(i)) => Some(*i),
                            Some(can_dbc::AttributeValue::Double(d)) => Some(d.round() as i64),
                            _ => None,
                        };
                    SignalDef {
                        name: s.name.clone(),
                        start_bit: s.start_bit as u32,
                        size: s.size as u32,
                        little_endian: s.byte_order == can_dbc::ByteOrder::LittleEndian,
                        signed: s.value_type == can_dbc::ValueType::Signed,
                        factor: s.factor,
                        offset: s.offset,
                        min: numeric(&s.min),
                        max: numeric(&s.max),
                        mux: match s.multiplexer_indicator {
                            can_dbc::MultiplexIndicator::Plain => Mux::Plain,
                            can_dbc::MultiplexIndicator::Multiplexor => Mux::Switch,
                            can_dbc::MultiplexIndicator::MultiplexedSignal(v)
                            | can_dbc::MultiplexIndicator::MultiplexorAndMultiplexedSignal(v) => {
                                Mux::On(v)
                            }
                        },
                        initial_raw,
                    }
                })
                .collect();
            messages.push(MessageDef {
                name: m.name.clone(),
                id,
                extended,
                fd: m.size > 8 || declared_fd(&dbc, m.id),
                dlc: m.size.min(64) as u8,
                signals,
            });
        }
        Ok(Database { messages })
    }

    pub fn message(&self, name: &str) -> Option<&MessageDef> {
        self.messages.iter().find(|m| m.name == name)
    }

    pub fn by_id(&self, id: u32, extended: bool) -> Option<&MessageDef> {
        self.messages
            .iter()
            .find(|m| m.id == id && m.extended == extended)
    }
}

/// Whether the signal's bits lie inside `len` bytes.
fn fits(s: &SignalDef, len: usize) -> bool {
    let total = len as u32 * 8;
    if s.size == 0 || s.size > 64 || s.start_bit >= total {
        return false;
    }
    if s.little_endian {
        s.start_bit + s.size <= total
    } else {
        // Motorola: walk from the MSB downwards in DBC's sawtooth bit numbering.
        let mut pos = s.start_bit as i64;
        for _ in 1..s.size {
            pos = if pos % 8 == 0 { pos + 15 } else { pos - 1 };
        }
        pos >= 0 && (pos as u32) < total
    }
}

/// The signal's raw bits.
pub fn raw_get(data: &[u8], s: &SignalDef) -> Option<u64> {
    if !fits(s, data.len()) {
        return None;
    }
    let mut raw: u64 = 0;
    if s.little_endian {
        for i in 0..s.size {
            let p = s.start_bit + i;
            let bit = (data[(p / 8) as usize] >> (p % 8)) & 1;
            raw |= (bit as u64) << i;
        }
    } else {
        let mut pos = s.start_bit;
        for _ in 0..s.size {
            let bit = (data[(pos / 8) as usize] >> (pos % 8)) & 1;
            raw = (raw << 1) | bit as u64;
            pos = if pos % 8 == 0 { pos + 15 } else { pos - 1 };
        }
    }
    Some(raw)
}

/// Writes the signal's raw bits into `data`.
pub fn raw_set(data: &mut [u8], s: &SignalDef, raw: u64) -> Option<()> {
    if !fits(s, data.len()) {
        return None;
    }
    if s.little_endian {
        for i in 0..s.size {
            let p = s.start_bit + i;
            let (byte, bit) = ((p / 8) as usize, p % 8);
            data[byte] = (data[byte] & !(1 << bit)) | ((((raw >> i) & 1) as u8) << bit);
        }
    } else {
        let mut pos = s.start_bit;
        for i in (0..s.size).rev() {
            let (byte, bit) = ((pos / 8) as usize, pos % 8);
            data[byte] = (data[byte] & !(1 << bit)) | ((((raw >> i) & 1) as u8) << bit);
            pos = if pos % 8 == 0 { pos + 15 } else { pos - 1 };
        }
    }
    Some(())
}

fn to_signed(raw: u64, size: u32) -> i64 {
    if size >= 64 {
        return raw as i64;
    }
    let shift = 64 - size;
    ((raw << shift) as i64) >> shift
}

/// The physical values a signal's bits can hold (raw × factor + offset over its raw
/// range), lowest first, counting at most `max_bits` of its size.
pub fn bits_range(s: &SignalDef, max_bits: u32) -> (f64, f64) {
    let bits = s.size.min(max_bits) as i32;
    let (raw_lo, raw_hi) = if s.signed {
        (-(2f64.powi(bits - 1)), 2f64.powi(bits - 1) - 1.0)
    } else {
        (0.0, 2f64.powi(bits) - 1.0)
    };
    let (a, b) = (raw_lo * s.factor + s.offset, raw_hi * s.factor + s.offset);
    (a.min(b), a.max(b))
}

/// The physical value: raw × factor + offset. Integral results stay integers.
pub fn physical(s: &SignalDef, raw: u64) -> Scalar {
    let r = if s.signed {
        to_signed(raw, s.size) as f64
    } else {
        raw as f64
    };
    let v = r * s.factor + s.offset;
    if s.factor.fract() == 0.0 && s.offset.fract() == 0.0 && v.abs() < 9.0e15 {
        Scalar::Int(v as i64)
    } else {
        // Keep the decimal a reader expects: 1234 × 0.1 is 123.4, not 123.40000000000001.
        Scalar::Float(format!("{v:.10}").parse().unwrap_or(v))
    }
}

/// The raw bits for a physical value, refusing what the signal cannot hold.
pub fn raw_for(s: &SignalDef, value: f64) -> Result<u64, EncodeError> {
    if !value.is_finite() {
        return Err(EncodeError::NotFinite {
            signal: s.name.clone(),
            value,
        });
    }
    if (s.min != 0.0 || s.max != 0.0) && (value < s.min - 1e-9 || value > s.max + 1e-9) {
        return Err(EncodeError::OutOfRange {
            signal: s.name.clone(),
            value,
            min: s.min,
            max: s.max,
        });
    }
    let raw = ((value - s.offset) / s.factor).round();
    let (lo, hi) = if s.signed {
        (
            -(2f64.powi(s.size as i32 - 1)),
            2f64.powi(s.size as i32 - 1) - 1.0,
        )
    } else {
        (0.0, 2f64.powi(s.size as i32) - 1.0)
    };
    if raw < lo || raw > hi {
        return Err(EncodeError::TooWide {
            signal: s.name.clone(),
            value,
            raw,
            bits: s.size,
        });
    }
    let bits = if s.signed {
        raw as i64 as u64
    } else {
        raw as u64
    };
    let mask = if s.size >= 64 {
        u64::MAX
    } else {
        (1u64 << s.size) - 1
    };
    Ok(bits & mask)
}

/// Every signal present in the frame, by name: plain signals, the switch, and the
/// multiplexed signals of the switch's current value.
pub fn decode(m: &MessageDef, data: &[u8], out: &mut Vec<(String, Scalar)>) {
    let switch = m
        .signals
        .iter()
        .find(|s| s.mux == Mux::Switch)
        .and_then(|s| raw_get(data, s));
    for s in &m.signals {
        let present = match s.mux {
            Mux::Plain | Mux::Switch => true,
            Mux::On(v) => switch == Some(v),
        };
        if !present {
            continue;
        }
        if let Some(raw) = raw_get(data, s) {
            out.push((s.name.clone(), physical(s, raw)));
        }
    }
}

/// A frame's payload for `values` (signal name → physical value). Signals not given take
/// the DBC's initial value, or 0; multiplexed signals must belong to the switch value.
pub fn encode(m: &MessageDef, values: &[(String, f64)]) -> Result<Vec<u8>, EncodeError> {
    for (name, _) in values {
        if !m.signals.iter().any(|s| &s.name == name) {
            return Err(EncodeError::NoSignal {
                message: m.name.clone(),
                signal: name.clone(),
            });
        }
    }
    let mut data = vec![0u8; m.dlc as usize];
    let given = |name: &str| values.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    let switch_sig = m.signals.iter().find(|s| s.mux == Mux::Switch);
    let switch_val = match switch_sig {
        Some(s) => Some(match given(&s.name) {
            Some(v) => raw_for(s, v)?,
            None => s.initial_raw.unwrap_or(0) as u64 & ((1u64 << s.size.min(63)) - 1),
        }),
        None => None,
    };
    for s in &m.signals {
        if let Mux::On(v) = s.mux {
            if Some(v) != switch_val {
                if given(&s.name).is_some() {
                    return Err(EncodeError::OtherMux {
                        message: m.name.clone(),
                        signal: s.name.clone(),
                        needs: v,
                        switch: switch_val.unwrap_or(0),
                    });
                }
                continue;
            }
        }
        let raw = match given(&s.name) {
            Some(v) => raw_for(s, v)?,
            None => match s.initial_raw {
                Some(r) => {
                    let mask = if s.size >= 64 {
                        u64::MAX
                    } else {
                        (1u64 << s.size) - 1
                    };
                    r as u64 & mask
                }
                None => raw_for(s, 0.0).unwrap_or(0),
            },
        };
        raw_set(&mut data, s, raw).ok_or_else(|| EncodeError::OutsideFrame {
            message: m.name.clone(),
            signal: s.name.clone(),
        })?;
    }
    Ok(data)
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fixture(name: &str) -> Database {
        static CACHE: std::sync::OnceLock<std::sync::Mutex<Vec<(String, Database)>>> =
            std::sync::OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let mut c = cache.lock().unwrap();
        if let Some((_, db)) = c.iter().find(|(n, _)| n == name) {
            return db.clone();
        }
        let p = format!("{}/tests/fixtures/dbc/{name}", env!("CARGO_MANIFEST_DIR"));
        let db = Database::load(Path::new(&p)).unwrap();
        c.push((name.to_string(), db.clone()));
        db
    }

    fn values(m: &MessageDef, data: &[u8]) -> Vec<(String, Scalar)> {
        let mut out = Vec::new();
        decode(m, data, &mut out);
        out
    }

    fn get(v: &[(String, Scalar)], name: &str) -> Scalar {
        v.iter().find(|(n, _)| n == name).unwrap().1.clone()
    }

    #[test]
    fn can_fd_is_what_vframeformat_names_or_a_length_past_eight() {
        let p = format!("{}/tests/data/arm_fd.dbc", env!("CARGO_MANIFEST_DIR"));
        let db = Database::load(Path::new(&p)).unwrap();
        let fd = |name: &str| db.message(name).unwrap().fd;
        assert!(fd("ARM_STATE"), "64 bytes, and declared FD");
        assert!(fd("ARM_GOAL"), "8 bytes, declared FD by VFrameFormat 14");
        assert!(!fd("ARM_HEARTBEAT"), "the default, StandardCAN");
        assert_eq!(db.message("ARM_STATE").unwrap().dlc, 64);

        // A shorter enum list, as some tools write it: index 2 is StandardCAN_FD there.
        let short = r#"VERSION ""
NS_ :
BS_:
BU_: A
BO_ 16 SHORT_FD: 8 A
 SG_ X : 0|8@1+ (1,0) [0|255] "" A
BO_ 17 PLAIN: 8 A
 SG_ Y : 0|8@1+ (1,0) [0|255] "" A
BA_DEF_ BO_ "VFrameFormat" ENUM "StandardCAN","ExtendedCAN","StandardCAN_FD","ExtendedCAN_FD";
BA_DEF_DEF_ "VFrameFormat" "StandardCAN";
BA_ "VFrameFormat" BO_ 16 2;
BA_ "VFrameFormat" BO_ 17 1;
"#;
        let db = Database::parse(short).unwrap();
        assert!(db.message("SHORT_FD").unwrap().fd);
        assert!(!db.message("PLAIN").unwrap().fd);
        // The real files declare nothing and have no message past 8 bytes.
        for f in ["comma_body.dbc", "tesla_model3_party.dbc"] {
            assert!(fixture(f).messages.iter().all(|m| !m.fd), "{f}");
        }
    }

    #[test]
    fn every_fixture_file_loads() {
        assert_eq!(
            fixture("gm_global_a_high_voltage_management.dbc")
                .messages
                .len(),
            12
        );
        assert_eq!(fixture("tesla_model3_party.dbc").messages.len(), 21);
        assert_eq!(fixture("comma_body.dbc").messages.len(), 14);
    }

    /// comma_body MOTORS_DATA: SPEED_L 7|16@0- and SPEED_R 23|16@0-, factor 1.
    /// Bytes 0..2 hold SPEED_L big-endian: 0xFF 0x38 = -200; bytes 2..4 0x01 0x2C = 300.
    #[test]
    fn motorola_signed_signals_decode_by_hand() {
        let db = fixture("comma_body.dbc");
        let m = db.message("MOTORS_DATA").unwrap();
        let v = values(m, &[0xFF, 0x38, 0x01, 0x2C, 0, 0, 0, 0]);
        assert_eq!(
            get(&v, "SPEED_L").as_f64(),
            Some(-200.0 * sig(m, "SPEED_L").factor + sig(m, "SPEED_L").offset)
        );
        assert_eq!(
            get(&v, "SPEED_R").as_f64(),
            Some(300.0 * sig(m, "SPEED_R").factor + sig(m, "SPEED_R").offset)
        );
    }

    fn sig<'a>(m: &'a MessageDef, name: &str) -> &'a SignalDef {
        m.signals.iter().find(|s| s.name == name).unwrap()
    }

    /// Tesla DI_torque: DI_torqueCommand 12|13@1- (2,0): bits 12..24 little-endian, signed.
    /// Raw -5 (13 bits: 0x1FFB) placed at bit 12 → bytes 1..3 = 0xB0, 0xFF, 0x01.
    #[test]
    fn intel_signed_13_bit_signal_decodes_by_hand() {
        let db = fixture("tesla_model3_party.dbc");
        let m = db.message("DI_torque").unwrap();
        let s = sig(m, "DI_torqueCommand");
        assert_eq!(
            (s.start_bit, s.size, s.little_endian, s.signed),
            (12, 13, true, true)
        );
        let mut data = vec![0u8; m.dlc as usize];
        data[1] = 0xB0;
        data[2] = 0xFF;
        data[3] = 0x01;
        assert_eq!(raw_get(&data, s), Some(0x1FFB));
        assert_eq!(physical(s, 0x1FFB), Scalar::Int(-10));
    }

    /// GM Pack_Stats: Pack_Current 23|8@0- (0.1,-0.1): byte 2 holds it (MSB bit 23).
    #[test]
    fn motorola_signed_with_offset_decodes_by_hand() {
        let db = fixture("gm_global_a_high_voltage_management.dbc");
        let m = db.message("Pack_Stats").unwrap();
        let s = sig(m, "Pack_Current");
        let mut data = vec![0u8; m.dlc as usize];
        data[2] = 0xF6; // -10 → -10 × 0.1 − 0.1 = −1.1
        assert_eq!(raw_get(&data, s), Some(0xF6));
        assert_eq!(physical(s, 0xF6), Scalar::Float(-1.1));
    }

    /// GM Battery_temp is multiplexed by a 1-bit Intel switch at bit 2.
    #[test]
    fn multiplexed_signals_follow_their_switch() {
        let db = fixture("gm_global_a_high_voltage_management.dbc");
        let m = db.message("Battery_temp").unwrap();
        let switch = m.signals.iter().find(|s| s.mux == Mux::Switch).unwrap();
        let page0: Vec<&str> = m
            .signals
            .iter()
            .filter(|s| s.mux == Mux::On(0))
            .map(|s| s.name.as_str())
            .collect();
        let page1: Vec<&str> = m
            .signals
            .iter()
            .filter(|s| s.mux == Mux::On(1))
            .map(|s| s.name.as_str())
            .collect();
        let mut data = vec![0u8; m.dlc as usize];
        raw_set(&mut data, switch, 1).unwrap();
        let v = values(m, &data);
        assert!(page1.iter().all(|n| v.iter().any(|(k, _)| k == n)));
        assert!(page0.iter().all(|n| !v.iter().any(|(k, _)| k == n)));
        // Encoding a page-0 signal while the switch says 1 is refused.
        let e = encode(
            m,
            &[(switch.name.clone(), 1.0), (page0[0].to_string(), 0.0)],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("multiplexor value 0"), "{e}");
    }

    #[test]
    fn values_outside_the_dbc_range_or_the_bits_are_refused() {
        let s = SignalDef {
            name: "x".into(),
            start_bit: 0,
            size: 8,
            little_endian: true,
            signed: false,
            factor: 0.5,
            offset: 0.0,
            min: 0.0,
            max: 100.0,
            mux: Mux::Plain,
            initial_raw: None,
        };
        assert_eq!(raw_for(&s, 50.0), Ok(100));
        assert_eq!(
            raw_for(&s, 101.0).unwrap_err().to_string(),
            "x: 101 is outside the DBC range [0, 100]"
        );
        let open = SignalDef {
            min: 0.0,
            max: 0.0,
            ..s.clone()
        };
        assert_eq!(
            raw_for(&open, 200.0).unwrap_err().to_string(),
            "x: 200 needs raw 400, beyond the signal's 8 bits"
        );
    }

    fn arb_signal() -> impl Strategy<Value = (SignalDef, u64)> {
        (
            0u32..64,
            1u32..=32,
            any::<bool>(),
            any::<bool>(),
            any::<u64>(),
        )
            .prop_filter_map("fits 8 bytes", |(start, size, le, signed, raw)| {
                let s = SignalDef {
                    name: "s".into(),
                    start_bit: start,
                    size,
                    little_endian: le,
                    signed,
                    factor: 1.0,
                    offset: 0.0,
                    min: 0.0,
                    max: 0.0,
                    mux: Mux::Plain,
                    initial_raw: None,
                };
                fits(&s, 8).then(|| (s, raw & ((1u64 << size) - 1)))
            })
    }

    proptest! {
        #[test]
        fn raw_bits_round_trip_in_both_byte_orders((s, raw) in arb_signal(), noise in any::<[u8; 8]>()) {
            let mut data = noise;
            raw_set(&mut data, &s, raw).unwrap();
            prop_assert_eq!(raw_get(&data, &s), Some(raw));
            // Bits outside the signal are untouched.
            let mut cleared = noise;
            raw_set(&mut cleared, &s, 0).unwrap();
            let mut again = data;
            raw_set(&mut again, &s, 0).unwrap();
            prop_assert_eq!(cleared, again);
        }

        #[test]
        fn every_fixture_message_round_trips_through_encode(seed in any::<u64>()) {
            for file in ["comma_body.dbc", "tesla_model3_party.dbc", "gm_global_a_high_voltage_management.dbc"] {
                let db = fixture(file);
                for m in &db.messages {
                    // A random payload, decoded, encoded and decoded again, is stable.
                    let mut data = vec![0u8; m.dlc as usize];
                    let mut x = seed ^ m.id as u64;
                    for b in &mut data {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        *b = (x >> 56) as u8;
                    }
                    let first = values(m, &data);
                    let as_f64: Vec<(String, f64)> = first.iter().filter_map(|(n, v)| v.as_f64().map(|f| (n.clone(), f))).collect();
                    // Skip payloads whose values the DBC's own range forbids.
                    if let Ok(bytes) = encode(m, &as_f64) {
                        prop_assert_eq!(values(m, &bytes), first.clone());
                    }
                }
            }
        }
    }
}
