//! Fuzz target for Modbus answers as the driver receives them: real tokio-modbus RTU and
//! TCP clients on an in-memory pipe, answered by a unit that sends well-formed replies with
//! the wrong count, exceptions, other units or functions, wrong echoes, and mutated or cut
//! frames. No answer panics the driver; a read succeeds only with exactly the registers or
//! coils asked for, and a write only with its exact echo.

use super::*;
use crate::fuzzing::{apply, config};
use proptest::prelude::*;
use proptest::sample::Index;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_MODBUS);

/// How the unit answers.
#[derive(Debug, Clone)]
enum Reply {
    /// What was asked, well formed.
    Right,
    /// A read's answer with this many words, or bytes of coils.
    Count(u8),
    /// A write's echo with this address and value (or count).
    Echo(u16, u16),
    Exception(u8),
    /// A well-formed answer, but from this unit.
    Unit(u8),
    /// A well-formed answer of this function code.
    Function(u8),
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        4 => Just(Reply::Right),
        3 => any::<u8>().prop_map(Reply::Count),
        2 => (any::<u16>(), any::<u16>()).prop_map(|(a, v)| Reply::Echo(a, v)),
        1 => (1u8..12).prop_map(Reply::Exception),
        1 => any::<u8>().prop_map(Reply::Unit),
        1 => any::<u8>().prop_map(Reply::Function),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Read(ReadRequest),
    Write(WriteOp),
}

fn op() -> impl Strategy<Value = Op> {
    let kind = prop::sample::select(vec![
        RegisterKind::Holding,
        RegisterKind::Input,
        RegisterKind::Coil,
        RegisterKind::Discrete,
    ]);
    prop_oneof![
        (1u8..=247, kind, any::<u16>(), 1u16..=2000).prop_map(|(unit, kind, address, count)| {
            let bits = matches!(kind, RegisterKind::Coil | RegisterKind::Discrete);
            Op::Read(ReadRequest {
                unit,
                kind,
                address,
                // The protocol's limits: 2000 coils, 125 registers a read.
                count: if bits { count } else { 1 + count % 125 },
                members: Vec::new(),
            })
        }),
        (1u8..=247, any::<u16>(), any::<bool>()).prop_map(|(unit, address, value)| Op::Write(
            WriteOp::Coil {
                unit,
                address,
                value
            }
        )),
        (
            1u8..=247,
            any::<u16>(),
            proptest::collection::vec(any::<u16>(), 1..6)
        )
            .prop_map(|(unit, address, words)| Op::Write(WriteOp::Registers {
                unit,
                address,
                words
            })),
    ]
}

/// The words (or packed coil bytes) a unit holds: a fixed pattern, so answers are known.
fn data_byte(i: usize) -> u8 {
    (i as u8).wrapping_mul(37).wrapping_add(11)
}

/// The PDU of a reply to `op`, and the answer the driver must then give for `Right`.
fn pdu(op: &Op, reply: &Reply) -> Vec<u8> {
    let mut p = Vec::new();
    let fc = match op {
        Op::Read(r) => match r.kind {
            RegisterKind::Coil => 1,
            RegisterKind::Discrete => 2,
            RegisterKind::Holding => 3,
            RegisterKind::Input => 4,
        },
        Op::Write(WriteOp::Coil { .. }) => 5,
        Op::Write(WriteOp::Registers { words, .. }) if words.len() == 1 => 6,
        Op::Write(WriteOp::Registers { .. }) => 16,
    };
    if let Reply::Exception(code) = reply {
        return vec![fc | 0x80, *code];
    }
    p.push(match reply {
        Reply::Function(f) => *f,
        _ => fc,
    });
    match op {
        Op::Read(r) => {
            let bytes = match (reply, r.kind) {
                (Reply::Count(n), RegisterKind::Holding | RegisterKind::Input) => {
                    2 * (*n as usize).min(127)
                }
                (Reply::Count(n), _) => *n as usize,
                (_, RegisterKind::Holding | RegisterKind::Input) => 2 * r.count as usize,
                _ => (r.count as usize).div_ceil(8),
            };
            p.push(bytes as u8);
            p.extend((0..bytes).map(data_byte));
        }
        Op::Write(w) => {
            let (address, value) = match (w, reply) {
                (_, Reply::Echo(a, v)) => (*a, *v),
                (WriteOp::Coil { address, value, .. }, _) => {
                    (*address, if *value { 0xFF00 } else { 0 })
                }
                (WriteOp::Registers { address, words, .. }, _) if words.len() == 1 => {
                    (*address, words[0])
                }
                (WriteOp::Registers { address, words, .. }, _) => (*address, words.len() as u16),
            };
            p.extend_from_slice(&address.to_be_bytes());
            p.extend_from_slice(&value.to_be_bytes());
        }
    }
    p
}

fn unit_of(op: &Op, reply: &Reply) -> u8 {
    match (reply, op) {
        (Reply::Unit(u), _) => *u,
        (_, Op::Read(r)) => r.unit,
        (_, Op::Write(WriteOp::Coil { unit, .. } | WriteOp::Registers { unit, .. })) => *unit,
    }
}

/// Runs `op` through a real client of `tcp` or RTU framing against a unit that answers
/// with `frame(request)`, then hangs up, so a short answer ends in an error, not a wait.
fn exchange(
    tcp: bool,
    op: &Op,
    frame: impl FnOnce(&[u8]) -> Vec<u8>,
) -> Result<Option<Answer>, Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (client, mut unit) = tokio::io::duplex(1 << 16);
        let mut ctx = if tcp {
            tokio_modbus::client::tcp::attach(client)
        } else {
            tokio_modbus::client::rtu::attach(client)
        };
        let answer = async {
            let timeout = Duration::from_secs(30);
            match op {
                Op::Read(r) => read(&mut ctx, r, timeout).await.map(Some),
                Op::Write(w) => write(&mut ctx, w, timeout).await.map(|()| None),
            }
        };
        let device = async move {
            let mut request = vec![0u8; 512];
            let n = unit.read(&mut request).await.unwrap_or(0);
            let _ = unit.write_all(&frame(&request[..n])).await;
        };
        tokio::join!(answer, device).0
    })
}

fn rtu_frame(unit: u8, pdu: &[u8]) -> Vec<u8> {
    let mut f = vec![unit];
    f.extend_from_slice(pdu);
    f.extend_from_slice(&CRC.checksum(&f).to_le_bytes());
    f
}

/// The MBAP header echoes the request's transaction id, as a TCP unit does.
fn tcp_frame(request: &[u8], unit: u8, pdu: &[u8]) -> Vec<u8> {
    let mut f = request.get(..2).unwrap_or(&[0, 0]).to_vec();
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&(pdu.len() as u16 + 1).to_be_bytes());
    f.push(unit);
    f.extend_from_slice(pdu);
    f
}

/// What a right answer to `op` carries.
fn expected(op: &Op) -> Option<Answer> {
    let Op::Read(r) = op else { return None };
    Some(match r.kind {
        RegisterKind::Holding | RegisterKind::Input => Answer::Words(
            (0..r.count as usize)
                .map(|i| u16::from_be_bytes([data_byte(2 * i), data_byte(2 * i + 1)]))
                .collect(),
        ),
        _ => Answer::Bits(
            (0..r.count as usize)
                .map(|i| data_byte(i / 8) >> (i % 8) & 1 == 1)
                .collect(),
        ),
    })
}

/// Whatever came back, it fits what was asked.
fn sound(op: &Op, got: &Result<Option<Answer>, Failure>) -> Result<(), TestCaseError> {
    prop_assert!(
        !matches!(got, Err(Failure::Timeout)),
        "the client hung: {:?}",
        got
    );
    if let (Op::Read(r), Ok(Some(a))) = (op, got) {
        let n = match a {
            Answer::Words(w) => w.len(),
            Answer::Bits(b) => b.len(),
        };
        prop_assert_eq!(n, r.count as usize, "asked for {}, got {:?}", r.count, a);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1_500))]

    /// Well-formed replies of every kind: a right one is the exact answer, an exception is
    /// the unit's refusal, and every other one (a wrong count, unit, function or echo) is a
    /// failure, never a panic or a short answer.
    #[test]
    fn well_formed_replies_are_answers_refusals_or_failures(
        op in op(),
        reply in reply(),
        tcp in any::<bool>(),
    ) {
        let unit = unit_of(&op, &reply);
        let body = pdu(&op, &reply);
        let got = exchange(tcp, &op, |req| if tcp { tcp_frame(req, unit, &body) } else { rtu_frame(unit, &body) });
        sound(&op, &got)?;
        // A reply that is byte for byte the right one (a count, echo, unit or function
        // that happens to be right) must be taken as right.
        let right = !matches!(reply, Reply::Exception(_))
            && pdu(&op, &reply) == pdu(&op, &Reply::Right)
            && unit == unit_of(&op, &Reply::Right);
        match &reply {
            _ if right => prop_assert_eq!(got, Ok(expected(&op))),
            Reply::Exception(_) => prop_assert!(matches!(got, Err(Failure::Exception(_))), "{:?}", got),
            _ => prop_assert!(got.is_err(), "{:?}", got),
        }
    }

    /// Replies flipped, cut, repeated or spliced (the CRC left as it was, or made right
    /// again): never a panic, a hang or an answer of the wrong size.
    #[test]
    fn mutated_replies_never_give_a_wrong_sized_answer(
        op in op(),
        reply in reply(),
        tcp in any::<bool>(),
        edits in proptest::collection::vec(crate::fuzzing::mutation(), 1..4),
        fix_crc in any::<bool>(),
        cut in proptest::option::of(any::<Index>()),
    ) {
        let unit = unit_of(&op, &reply);
        let body = pdu(&op, &reply);
        let got = exchange(tcp, &op, |req| {
            let whole = if tcp { tcp_frame(req, unit, &body) } else { rtu_frame(unit, &body) };
            let mut f = apply(whole.clone(), &edits, &[whole]);
            if fix_crc && !tcp && f.len() > 2 {
                f.truncate(f.len() - 2);
                f.extend_from_slice(&CRC.checksum(&f).to_le_bytes());
            }
            if let Some(c) = cut {
                f.truncate(c.index(f.len() + 1));
            }
            f
        });
        sound(&op, &got)?;
    }
}
