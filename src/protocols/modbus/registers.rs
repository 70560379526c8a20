//! Modbus register maps, sans-IO: the planner that merges a stream's registers into as few
//! read requests as possible, the decoding of words and bits into physical values, and the
//! encoding of command values into register writes. The wire protocol is tokio-modbus's.

use super::config::{RegisterFormat, RegisterKind, WordOrder};
use crate::messages::{Message, MessageType, Scalar};
use std::collections::BTreeMap;

/// Most registers one read may ask for (Modbus limit for function codes 3 and 4).
pub const MAX_WORDS: u16 = 125;
/// Most coils or discrete inputs one read may ask for (function codes 1 and 2).
pub const MAX_BITS: u16 = 2000;

/// A register to read, as the robot file describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Register {
    pub name: String,
    pub unit: u8,
    pub kind: RegisterKind,
    pub address: u16,
    pub format: RegisterFormat,
    pub word_order: WordOrder,
    pub scale: f64,
    pub offset: f64,
}

impl Register {
    /// Words (or bits) the register spans.
    pub fn width(&self) -> u16 {
        match (self.kind, self.format) {
            (RegisterKind::Coil | RegisterKind::Discrete, _) => 1,
            (_, RegisterFormat::U32 | RegisterFormat::I32 | RegisterFormat::F32) => 2,
            _ => 1,
        }
    }

    fn end(&self) -> u32 {
        self.address as u32 + self.width() as u32
    }
}

/// One read request and which registers its answer carries.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadRequest {
    pub unit: u8,
    pub kind: RegisterKind,
    pub address: u16,
    pub count: u16,
    /// `(index into the stream's registers, offset of its first word/bit in the answer)`.
    pub members: Vec<(usize, u16)>,
}

/// Groups registers by unit and kind and merges contiguous (or overlapping) ones into
/// requests no larger than the protocol allows. Requests come out ordered by unit, kind
/// and address, so a poll walks the bus in a fixed order.
pub fn plan(registers: &[Register]) -> Vec<ReadRequest> {
    let mut order: Vec<usize> = (0..registers.len()).collect();
    order.sort_by_key(|&i| {
        let r = &registers[i];
        (r.unit, r.kind, r.address, std::cmp::Reverse(r.width()))
    });
    let mut out: Vec<ReadRequest> = Vec::new();
    for i in order {
        let r = &registers[i];
        let max = match r.kind {
            RegisterKind::Coil | RegisterKind::Discrete => MAX_BITS,
            _ => MAX_WORDS,
        } as u32;
        if let Some(last) = out.last_mut() {
            let last_end = last.address as u32 + last.count as u32;
            let same = last.unit == r.unit && last.kind == r.kind;
            if same
                && r.address as u32 <= last_end
                && r.end().max(last_end) - last.address as u32 <= max
            {
                last.count = (r.end().max(last_end) - last.address as u32) as u16;
                last.members.push((i, r.address - last.address));
                continue;
            }
        }
        out.push(ReadRequest {
            unit: r.unit,
            kind: r.kind,
            address: r.address,
            count: r.width(),
            members: vec![(i, 0)],
        });
    }
    out
}

/// A read's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Words(Vec<u16>),
    Bits(Vec<bool>),
}

fn join(a: u16, b: u16, order: WordOrder) -> u32 {
    match order {
        WordOrder::Big => (a as u32) << 16 | b as u32,
        WordOrder::Little => (b as u32) << 16 | a as u32,
    }
}

/// The physical value of `reg`, found `at` words/bits into `answer`: raw × scale + offset.
/// Integers without scaling stay integers; `bool` is a bool.
pub fn decode(reg: &Register, answer: &Answer, at: u16) -> Option<Scalar> {
    let at = at as usize;
    let raw: f64 = match (answer, reg.format) {
        (Answer::Bits(bits), _) => return bits.get(at).map(|b| Scalar::Bool(*b)),
        (Answer::Words(w), RegisterFormat::Bool) => {
            return w.get(at).map(|v| Scalar::Bool(*v != 0))
        }
        (Answer::Words(w), RegisterFormat::U16) => *w.get(at)? as f64,
        (Answer::Words(w), RegisterFormat::I16) => *w.get(at)? as i16 as f64,
        (Answer::Words(w), f) => {
            let v = join(*w.get(at)?, *w.get(at + 1)?, reg.word_order);
            match f {
                RegisterFormat::U32 => v as f64,
                RegisterFormat::I32 => v as i32 as f64,
                _ => f32::from_bits(v) as f64,
            }
        }
    };
    let integral = !matches!(reg.format, RegisterFormat::F32);
    if integral && reg.scale == 1.0 && reg.offset == 0.0 {
        return Some(Scalar::Int(raw as i64));
    }
    let value = raw * reg.scale + reg.offset;
    // Keep the decimal a reader expects: 1234 × 0.1 is 123.4, not 123.40000000000001.
    let value = if integral {
        let rounded: f64 = format!("{value:.9}").parse().unwrap_or(value);
        rounded
    } else if reg.scale == 1.0 && reg.offset == 0.0 {
        (raw as f32).to_string().parse().unwrap_or(value)
    } else {
        value
    };
    Some(Scalar::Float(value))
}

/// How a polled stream's registers become its message.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleMap {
    pub msg_type: MessageType,
    pub registers: Vec<Register>,
    /// `(message field path, register name)`; empty for `map` means every register.
    pub fields: Vec<(String, String)>,
}

impl SampleMap {
    /// The sample of one poll: `plan`'s requests and their answers, `None` for a request
    /// that went unanswered. A sample needs every register it maps, so a unit that did not
    /// answer leaves the stream without a sample this round (`Ok(None)`) rather than with
    /// stale or default values. `Err` lists each field the value did not fit.
    pub fn assemble(
        &self,
        plan: &[ReadRequest],
        answers: &[Option<Answer>],
    ) -> Result<Option<Message>, Vec<String>> {
        let mut values = BTreeMap::new();
        for (req, answer) in plan.iter().zip(answers) {
            let Some(answer) = answer else { continue };
            for (i, at) in &req.members {
                let reg = &self.registers[*i];
                if let Some(v) = decode(reg, answer, *at) {
                    values.insert(reg.name.as_str(), v);
                }
            }
        }
        if values.len() != self.registers.len() {
            return Ok(None);
        }
        let mut msg = self.msg_type.new_message();
        let mut errors = Vec::new();
        if self.fields.is_empty() {
            if let Message::Map(m) = &mut msg {
                for r in &self.registers {
                    m.insert(&r.name, values[r.name.as_str()].clone());
                }
            }
        } else {
            for (path, name) in &self.fields {
                if let Err(e) = msg.set_path(path, &values[name.as_str()]) {
                    errors.push(format!("{path} = register {name}: {e}"));
                }
            }
        }
        if errors.is_empty() {
            Ok(Some(msg))
        } else {
            Err(errors)
        }
    }
}

/// Where a command field is written.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterWrite {
    pub field: String,
    pub unit: u8,
    /// `Holding` or `Coil`.
    pub kind: RegisterKind,
    pub address: u16,
    pub format: RegisterFormat,
    pub word_order: WordOrder,
    pub scale: f64,
    pub offset: f64,
}

/// One write on the bus.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    Coil {
        unit: u8,
        address: u16,
        value: bool,
    },
    Registers {
        unit: u8,
        address: u16,
        words: Vec<u16>,
    },
}

/// Why a command value cannot be written to its register. The text is the command's ack.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegisterWriteError {
    #[error("{field}: `{value}` is not a bool")]
    NotBool { field: String, value: Scalar },
    #[error("{field}: `{value}` is not a number")]
    NotNumber { field: String, value: Scalar },
    #[error("{field}: {value} does not scale to a finite register value")]
    NotFinite { field: String, value: f64 },
    #[error(
        "{field}: {value} is {raw} in the register, outside its {format:?} range [{lo}, {hi}]"
    )]
    OutOfRange {
        field: String,
        value: f64,
        raw: f64,
        format: RegisterFormat,
        lo: f64,
        hi: f64,
    },
    #[error("{field}: {value} does not fit an f32")]
    NotF32 { field: String, value: f64 },
}

/// Encodes a command value for `w`: raw = (value − offset) / scale, rounded for integer
/// formats, and refused when it does not fit the register.
pub fn encode_write(w: &RegisterWrite, value: &Scalar) -> Result<WriteOp, RegisterWriteError> {
    if w.kind == RegisterKind::Coil || w.format == RegisterFormat::Bool {
        let b = value
            .as_bool()
            .or_else(|| value.as_f64().map(|f| f != 0.0))
            .ok_or_else(|| RegisterWriteError::NotBool {
                field: w.field.clone(),
                value: value.clone(),
            })?;
        return Ok(match w.kind {
            RegisterKind::Coil => WriteOp::Coil {
                unit: w.unit,
                address: w.address,
                value: b,
            },
            _ => WriteOp::Registers {
                unit: w.unit,
                address: w.address,
                words: vec![b as u16],
            },
        });
    }
    let v = value
        .as_f64()
        .ok_or_else(|| RegisterWriteError::NotNumber {
            field: w.field.clone(),
            value: value.clone(),
        })?;
    let raw = (v - w.offset) / w.scale;
    if !raw.is_finite() {
        return Err(RegisterWriteError::NotFinite {
            field: w.field.clone(),
            value: v,
        });
    }
    let fits = |lo: f64, hi: f64| -> Result<f64, RegisterWriteError> {
        let r = raw.round();
        if r < lo || r > hi {
            Err(RegisterWriteError::OutOfRange {
                field: w.field.clone(),
                value: v,
                raw: r,
                format: w.format,
                lo,
                hi,
            })
        } else {
            Ok(r)
        }
    };
    let split = |x: u32| -> Vec<u16> {
        let (hi, lo) = ((x >> 16) as u16, x as u16);
        match w.word_order {
            WordOrder::Big => vec![hi, lo],
            WordOrder::Little => vec![lo, hi],
        }
    };
    let words = match w.format {
        RegisterFormat::U16 => vec![fits(0.0, 65535.0)? as u16],
        RegisterFormat::I16 => vec![fits(-32768.0, 32767.0)? as i16 as u16],
        RegisterFormat::U32 => split(fits(0.0, u32::MAX as f64)? as u32),
        RegisterFormat::I32 => split(fits(i32::MIN as f64, i32::MAX as f64)? as i32 as u32),
        RegisterFormat::F32 => {
            if raw.abs() > f32::MAX as f64 {
                return Err(RegisterWriteError::NotF32 {
                    field: w.field.clone(),
                    value: v,
                });
            }
            split((raw as f32).to_bits())
        }
        RegisterFormat::Bool => unreachable!("handled above"),
    };
    Ok(WriteOp::Registers {
        unit: w.unit,
        address: w.address,
        words,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reg(
        name: &str,
        unit: u8,
        kind: RegisterKind,
        address: u16,
        format: RegisterFormat,
    ) -> Register {
        Register {
            name: name.into(),
            unit,
            kind,
            address,
            format,
            word_order: WordOrder::Big,
            scale: 1.0,
            offset: 0.0,
        }
    }

    fn battery_map() -> SampleMap {
        use RegisterFormat::*;
        use RegisterKind::*;
        let mut volts = reg("volts", 1, Holding, 10, U16);
        volts.scale = 0.01;
        SampleMap {
            msg_type: MessageType::BatteryState,
            registers: vec![volts, reg("amps", 2, Input, 0, I16)],
            fields: vec![
                ("voltage".into(), "volts".into()),
                ("current".into(), "amps".into()),
            ],
        }
    }

    #[test]
    fn a_poll_with_every_answer_becomes_a_sample_of_the_mapped_fields() {
        let map = battery_map();
        let plan = plan(&map.registers);
        assert_eq!(plan.len(), 2, "two units: two requests");
        let answers: Vec<Option<Answer>> = plan
            .iter()
            .map(|r| {
                Some(Answer::Words(if r.unit == 1 {
                    vec![2412]
                } else {
                    vec![(-150i16) as u16]
                }))
            })
            .collect();
        let msg = map.assemble(&plan, &answers).unwrap().unwrap();
        let Message::BatteryState(b) = &msg else {
            panic!("{msg:?}")
        };
        assert_eq!((b.voltage, b.current), (24.12, -150.0));
    }

    #[test]
    fn a_poll_a_unit_did_not_answer_makes_no_sample() {
        let map = battery_map();
        let plan = plan(&map.registers);
        let answers: Vec<Option<Answer>> = plan
            .iter()
            .map(|r| (r.unit == 1).then(|| Answer::Words(vec![2412])))
            .collect();
        assert_eq!(map.assemble(&plan, &answers), Ok(None));
    }

    #[test]
    fn a_map_stream_takes_every_register_by_name() {
        use RegisterFormat::*;
        use RegisterKind::*;
        let map = SampleMap {
            msg_type: MessageType::Map,
            registers: vec![reg("run", 1, Coil, 0, Bool), reg("rpm", 1, Holding, 4, U16)],
            fields: vec![],
        };
        let plan = plan(&map.registers);
        let answers: Vec<Option<Answer>> = plan
            .iter()
            .map(|r| {
                Some(match r.kind {
                    Coil => Answer::Bits(vec![true]),
                    _ => Answer::Words(vec![1500]),
                })
            })
            .collect();
        let msg = map.assemble(&plan, &answers).unwrap().unwrap();
        assert_eq!(msg.get_path("run"), Some(Scalar::Bool(true)));
        assert_eq!(msg.get_path("rpm"), Some(Scalar::Int(1500)));
    }

    #[test]
    fn a_value_that_does_not_fit_its_field_is_reported_and_makes_no_sample() {
        use RegisterFormat::*;
        use RegisterKind::*;
        // NavSatFix's status is an i8: 300 does not fit.
        let map = SampleMap {
            msg_type: MessageType::NavSatFix,
            registers: vec![reg("fix", 1, Holding, 0, U16)],
            fields: vec![("status.status".into(), "fix".into())],
        };
        let plan = plan(&map.registers);
        let answers = vec![Some(Answer::Words(vec![300]))];
        let errors = map.assemble(&plan, &answers).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("status.status = register fix: "),
            "{errors:?}"
        );
    }

    #[test]
    fn contiguous_registers_of_a_unit_merge_into_one_request() {
        use RegisterFormat::*;
        use RegisterKind::*;
        let regs = vec![
            reg("speed", 1, Holding, 100, I16),
            reg("power", 1, Holding, 101, F32),
            reg("temp", 1, Holding, 103, U16),
            reg("far", 1, Holding, 200, U16),
            reg("other_unit", 2, Holding, 100, U16),
            reg("input", 1, Input, 100, U16),
            reg("flag", 1, Coil, 5, Bool),
            reg("flag2", 1, Coil, 6, Bool),
        ];
        let p = plan(&regs);
        let summary: Vec<(u8, RegisterKind, u16, u16)> = p
            .iter()
            .map(|r| (r.unit, r.kind, r.address, r.count))
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, Holding, 100, 4),
                (1, Holding, 200, 1),
                (1, Input, 100, 1),
                (1, Coil, 5, 2),
                (2, Holding, 100, 1),
            ]
        );
        assert_eq!(p[0].members, vec![(0, 0), (1, 1), (2, 3)]);
    }

    #[test]
    fn requests_never_exceed_the_protocol_limit() {
        let regs: Vec<Register> = (0..300)
            .map(|i| {
                reg(
                    &format!("r{i}"),
                    1,
                    RegisterKind::Holding,
                    i,
                    RegisterFormat::U16,
                )
            })
            .collect();
        let p = plan(&regs);
        assert_eq!(
            p.iter().map(|r| r.count).collect::<Vec<_>>(),
            vec![125, 125, 50]
        );
        assert_eq!(p.iter().map(|r| r.members.len()).sum::<usize>(), 300);
    }

    #[test]
    fn overlapping_registers_share_words() {
        let regs = vec![
            reg("whole", 1, RegisterKind::Holding, 10, RegisterFormat::U32),
            reg("high", 1, RegisterKind::Holding, 10, RegisterFormat::U16),
        ];
        let p = plan(&regs);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].count, 2);
    }

    #[test]
    fn every_format_and_word_order_decodes() {
        let words = Answer::Words(vec![0xFFFE, 0x0001, 0x3FC0, 0x0000, 0x0000, 0x3FC0]);
        let mut r = reg("x", 1, RegisterKind::Holding, 0, RegisterFormat::U16);
        assert_eq!(decode(&r, &words, 0), Some(Scalar::Int(65534)));
        r.format = RegisterFormat::I16;
        assert_eq!(decode(&r, &words, 0), Some(Scalar::Int(-2)));
        r.format = RegisterFormat::U32;
        assert_eq!(decode(&r, &words, 0), Some(Scalar::Int(0xFFFE_0001)));
        r.format = RegisterFormat::I32;
        assert_eq!(
            decode(&r, &words, 0),
            Some(Scalar::Int(0xFFFE_0001u32 as i32 as i64))
        );
        r.word_order = WordOrder::Little;
        assert_eq!(decode(&r, &words, 0), Some(Scalar::Int(0x0001_FFFE)));
        r.format = RegisterFormat::F32;
        assert_eq!(decode(&r, &words, 4), Some(Scalar::Float(1.5)));
        r.word_order = WordOrder::Big;
        assert_eq!(decode(&r, &words, 2), Some(Scalar::Float(1.5)));
        r.format = RegisterFormat::Bool;
        assert_eq!(decode(&r, &words, 3), Some(Scalar::Bool(false)));
        assert_eq!(decode(&r, &words, 9), None);
    }

    #[test]
    fn scale_and_offset_give_physical_values() {
        let mut r = reg("t", 1, RegisterKind::Input, 0, RegisterFormat::I16);
        r.scale = 0.1;
        r.offset = -40.0;
        assert_eq!(
            decode(&r, &Answer::Words(vec![652]), 0),
            Some(Scalar::Float(25.2))
        );
        assert_eq!(
            decode(&r, &Answer::Words(vec![(-12i16) as u16]), 0),
            Some(Scalar::Float(-41.2))
        );
    }

    fn write(format: RegisterFormat, scale: f64) -> RegisterWrite {
        RegisterWrite {
            field: "data".into(),
            unit: 3,
            kind: RegisterKind::Holding,
            address: 40,
            format,
            word_order: WordOrder::Big,
            scale,
            offset: 0.0,
        }
    }

    #[test]
    fn writes_scale_round_and_refuse_what_does_not_fit() {
        let op = encode_write(&write(RegisterFormat::I16, 0.1), &Scalar::Float(-12.34)).unwrap();
        assert_eq!(
            op,
            WriteOp::Registers {
                unit: 3,
                address: 40,
                words: vec![(-123i16) as u16]
            }
        );
        let e = encode_write(&write(RegisterFormat::U16, 0.01), &Scalar::Float(700.0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside its U16 range"), "{e}");
        let op = encode_write(&write(RegisterFormat::F32, 1.0), &Scalar::Float(1.5)).unwrap();
        assert_eq!(
            op,
            WriteOp::Registers {
                unit: 3,
                address: 40,
                words: vec![0x3FC0, 0]
            }
        );
        let mut coil = write(RegisterFormat::Bool, 1.0);
        coil.kind = RegisterKind::Coil;
        assert_eq!(
            encode_write(&coil, &Scalar::Bool(true)).unwrap(),
            WriteOp::Coil {
                unit: 3,
                address: 40,
                value: true
            }
        );
    }

    proptest! {
        #[test]
        fn what_is_written_reads_back_as_the_same_value(
            raw in any::<i32>(),
            order in prop_oneof![Just(WordOrder::Big), Just(WordOrder::Little)],
        ) {
            let mut w = write(RegisterFormat::I32, 0.01);
            w.word_order = order;
            let value = raw as f64 * 0.01;
            let WriteOp::Registers { words, .. } = encode_write(&w, &Scalar::Float(value)).unwrap() else {
                panic!()
            };
            let r = Register { name: "x".into(), unit: 3, kind: RegisterKind::Holding, address: 40,
                format: RegisterFormat::I32, word_order: order, scale: 0.01, offset: 0.0 };
            let back = decode(&r, &Answer::Words(words), 0).unwrap().as_f64().unwrap();
            prop_assert!((back - value).abs() < 1e-6, "{} vs {}", back, value);
        }

        #[test]
        fn the_planner_covers_every_register_within_limits(
            regs in proptest::collection::vec((0u8..3, 0u16..400, 0usize..3), 1..60)
        ) {
            let formats = [RegisterFormat::U16, RegisterFormat::F32, RegisterFormat::I32];
            let regs: Vec<Register> = regs.iter().enumerate().map(|(i, (u, a, f))| {
                reg(&format!("r{i}"), *u, RegisterKind::Holding, *a, formats[*f])
            }).collect();
            let p = plan(&regs);
            let mut seen = vec![false; regs.len()];
            for q in &p {
                prop_assert!(q.count <= MAX_WORDS);
                for (i, off) in &q.members {
                    let r = &regs[*i];
                    prop_assert_eq!(r.unit, q.unit);
                    prop_assert_eq!(q.address + off, r.address);
                    prop_assert!(off + r.width() <= q.count);
                    seen[*i] = true;
                }
            }
            prop_assert!(seen.iter().all(|s| *s));
        }
    }
}
