//! Fuzz target for Modbus register decoding: any register map a robot file can declare,
//! planned into reads, with answers that are right, short, long, of the wrong kind or
//! missing. Requests stay inside the protocol's limits and the address space, assembling
//! never panics, a sample comes only when every register has its value, and every value
//! is what its words, format, scale and offset make.

use super::*;
use crate::fuzzing::config;
use crate::messages::{Message, MessageType, Scalar};
use proptest::prelude::*;

/// A register as validation lets it through: coils and discrete inputs hold a bool, and
/// no register runs past address 65535.
fn register() -> impl Strategy<Value = Register> {
    let kind = prop::sample::select(vec![
        RegisterKind::Holding,
        RegisterKind::Input,
        RegisterKind::Coil,
        RegisterKind::Discrete,
    ]);
    let format = prop::sample::select(vec![
        RegisterFormat::U16,
        RegisterFormat::I16,
        RegisterFormat::U32,
        RegisterFormat::I32,
        RegisterFormat::F32,
        RegisterFormat::Bool,
    ]);
    let scale = prop_oneof![Just((1.0, 0.0)), (-1e3..1e3f64, -1e6..1e6f64)]
        .prop_map(|(s, o)| (if s == 0.0 { 1.0 } else { s }, o));
    (
        0u8..3,
        kind,
        prop_oneof![any::<u16>(), 65_530u16..=65_535, 0u16..300],
        format,
        any::<bool>(),
        scale,
    )
        .prop_map(|(unit, kind, address, format, big, (scale, offset))| {
            let bits = matches!(kind, RegisterKind::Coil | RegisterKind::Discrete);
            let format = if bits { RegisterFormat::Bool } else { format };
            let mut r = Register {
                name: String::new(),
                unit,
                kind,
                address,
                format,
                word_order: if big {
                    WordOrder::Big
                } else {
                    WordOrder::Little
                },
                scale,
                offset,
            };
            r.address = address.min((65_536 - r.width() as u32) as u16);
            r
        })
}

/// How a unit answers one request.
#[derive(Debug, Clone)]
enum Reply {
    Right,
    /// This many words or bits, whatever was asked.
    Count(usize),
    /// Bits for words, or words for bits.
    OtherKind,
    None,
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        6 => Just(Reply::Right),
        1 => (0usize..300).prop_map(Reply::Count),
        1 => Just(Reply::OtherKind),
        1 => Just(Reply::None),
    ]
}

fn answer(req: &ReadRequest, reply: &Reply, seed: u16) -> Option<Answer> {
    let words = |n: usize| {
        (0..n)
            .map(|i| seed.wrapping_mul(i as u16 + 7).rotate_left(i as u32))
            .collect::<Vec<u16>>()
    };
    let bits = |n: usize| words(n).iter().map(|w| w & 1 == 1).collect::<Vec<bool>>();
    let is_bits = matches!(req.kind, RegisterKind::Coil | RegisterKind::Discrete);
    let n = match reply {
        Reply::None => return None,
        Reply::Count(n) => *n,
        _ => req.count as usize,
    };
    let as_bits = is_bits != matches!(reply, Reply::OtherKind);
    Some(if as_bits {
        Answer::Bits(bits(n))
    } else {
        Answer::Words(words(n))
    })
}

/// The value a register's raw bits must give, before the decimal tidying.
fn raw_value(r: &Register, answer: &Answer, at: usize) -> Option<f64> {
    let w = |i: usize| match answer {
        Answer::Words(w) => w.get(i).copied(),
        Answer::Bits(_) => None,
    };
    let joined = || {
        let (a, b) = (w(at)? as u32, w(at + 1)? as u32);
        Some(match r.word_order {
            WordOrder::Big => a << 16 | b,
            WordOrder::Little => b << 16 | a,
        })
    };
    Some(match r.format {
        RegisterFormat::U16 => w(at)? as f64,
        RegisterFormat::I16 => w(at)? as i16 as f64,
        RegisterFormat::U32 => joined()? as f64,
        RegisterFormat::I32 => joined()? as i32 as f64,
        RegisterFormat::F32 => f32::from_bits(joined()?) as f64,
        RegisterFormat::Bool => return None,
    })
}

proptest! {
    #![proptest_config(config(3_000))]

    /// Any register map: every register is in exactly one request that covers it, and no
    /// request is over the protocol's size or runs past address 65535.
    #[test]
    fn plans_cover_every_register_within_the_protocol(regs in proptest::collection::vec(register(), 1..40)) {
        let p = plan(&regs);
        let mut seen = vec![0; regs.len()];
        for q in &p {
            let max = match q.kind {
                RegisterKind::Coil | RegisterKind::Discrete => MAX_BITS,
                _ => MAX_WORDS,
            };
            prop_assert!(q.count >= 1 && q.count <= max, "{:?}", q);
            prop_assert!(q.address as u32 + q.count as u32 <= 65_536, "{:?}", q);
            for (i, off) in &q.members {
                let r = &regs[*i];
                prop_assert_eq!((r.unit, r.kind, q.address as u32 + *off as u32), (q.unit, q.kind, r.address as u32));
                prop_assert!(off + r.width() <= q.count);
                seen[*i] += 1;
            }
        }
        prop_assert!(seen.iter().all(|s| *s == 1), "{:?}", seen);
    }

    /// Any answers: a sample only when every register decoded, each value from its own
    /// words (raw × scale + offset, to nine decimals), and never a panic.
    #[test]
    fn any_answers_make_a_sample_only_from_every_registers_words(
        regs in proptest::collection::vec(register(), 1..24),
        replies in proptest::collection::vec(reply(), 24),
        seed in any::<u16>(),
    ) {
        let regs: Vec<Register> = regs
            .into_iter()
            .enumerate()
            .map(|(i, r)| Register { name: format!("r{i}"), ..r })
            .collect();
        let p = plan(&regs);
        let answers: Vec<Option<Answer>> = p.iter().zip(replies.iter().cycle()).map(|(q, r)| answer(q, r, seed)).collect();
        let map = SampleMap { msg_type: MessageType::Map, registers: regs.clone(), fields: Vec::new() };
        let got = map.assemble(&p, &answers);
        let mut all = true;
        for (q, a) in p.iter().zip(&answers) {
            for (i, off) in &q.members {
                let r = &regs[*i];
                let v = a.as_ref().and_then(|a| decode(r, a, *off));
                all &= v.is_some();
                let (Some(a), Some(v)) = (a, v) else { continue };
                match (raw_value(r, a, *off as usize), &v) {
                    (None, Scalar::Bool(_)) => {}
                    (Some(raw), Scalar::Int(i)) => prop_assert_eq!(raw, *i as f64),
                    (Some(raw), Scalar::Float(f)) => {
                        let plain = r.scale == 1.0 && r.offset == 0.0;
                        let want = if plain { raw } else { raw * r.scale + r.offset };
                        let ok = if r.format == RegisterFormat::F32 && plain {
                            // The f32's shortest decimal: the same f32 (subnormals included).
                            *f as f32 == want as f32 || (f.is_nan() && want.is_nan())
                        } else if r.format == RegisterFormat::F32 {
                            f == &want || (f.is_nan() && want.is_nan())
                        } else {
                            (f - want).abs() <= 5e-10 + want.abs() * 1e-15
                        };
                        prop_assert!(ok, "{} from raw {}: {} vs {}", r.name, raw, f, want);
                    }
                    other => return Err(TestCaseError::fail(format!("{}: {other:?}", r.name))),
                }
            }
        }
        let Ok(sample) = got else {
            return Err(TestCaseError::fail("a map takes every value"));
        };
        prop_assert_eq!(sample.is_some(), all);
        if let Some(Message::Map(m)) = sample {
            prop_assert_eq!(m.values.len(), regs.len());
        }
    }
}
