//! The message types of DESIGN.md section 4, with ROS 2 field names, encoded as named
//! MessagePack maps. They are public with serde so fleet controllers written in Rust share them.

pub mod fields;
mod map;
mod value;

pub use fields::{FieldError, FieldKind, Fields};
pub use map::MapMessage;
pub use value::Scalar;

use fields::impl_fields;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// `builtin_interfaces/Time`: seconds and nanoseconds since the Unix epoch, UTC.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(default, deny_unknown_fields)]
pub struct Time {
    pub sec: i64,
    pub nanosec: u32,
}

impl Time {
    pub fn now() -> Time {
        Time::from(SystemTime::now())
    }

    pub fn as_secs_f64(&self) -> f64 {
        self.sec as f64 + self.nanosec as f64 * 1e-9
    }
}

impl From<SystemTime> for Time {
    fn from(t: SystemTime) -> Time {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Time {
                sec: d.as_secs() as i64,
                nanosec: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                let (sec, nanosec) = if d.subsec_nanos() == 0 {
                    (-(d.as_secs() as i64), 0)
                } else {
                    (-(d.as_secs() as i64) - 1, 1_000_000_000 - d.subsec_nanos())
                };
                Time { sec, nanosec }
            }
        }
    }
}
impl_fields!(Time { sec, nanosec });

/// `std_msgs/Header`, with the ROS 1 style `seq` that lets consumers see gaps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Header {
    pub seq: u64,
    pub stamp: Time,
    pub frame_id: String,
}
impl_fields!(Header {
    seq,
    stamp,
    frame_id
});

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Vector3 {
    pub x: f64,
    pub y: f64,
    pub z: f64,
}
impl_fields!(Vector3 { x, y, z });

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Quaternion {
    pub x: f64,
    pub y: f64,
    pub z: f64,
    pub w: f64,
}
impl Default for Quaternion {
    /// The identity rotation, as in ROS 2.
    fn default() -> Self {
        Quaternion {
            x: 0.0,
            y: 0.0,
            z: 0.0,
            w: 1.0,
        }
    }
}
impl_fields!(Quaternion { x, y, z, w });

/// `sensor_msgs/NavSatStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NavSatStatus {
    pub status: i8,
    pub service: u16,
}
impl NavSatStatus {
    pub const STATUS_NO_FIX: i8 = -1;
    pub const STATUS_FIX: i8 = 0;
    pub const STATUS_SBAS_FIX: i8 = 1;
    pub const STATUS_GBAS_FIX: i8 = 2;
    pub const SERVICE_GPS: u16 = 1;
    pub const SERVICE_GLONASS: u16 = 2;
    pub const SERVICE_COMPASS: u16 = 4;
    pub const SERVICE_GALILEO: u16 = 8;
}
impl Default for NavSatStatus {
    fn default() -> Self {
        NavSatStatus {
            status: Self::STATUS_NO_FIX,
            service: Self::SERVICE_GPS,
        }
    }
}
impl_fields!(NavSatStatus { status, service });

/// `sensor_msgs/NavSatFix`. `altitude` is above the WGS 84 ellipsoid, as in ROS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NavSatFix {
    pub header: Header,
    pub status: NavSatStatus,
    pub latitude: f64,
    pub longitude: f64,
    pub altitude: f64,
    pub position_covariance: [f64; 9],
    pub position_covariance_type: u8,
}
impl NavSatFix {
    pub const COVARIANCE_TYPE_UNKNOWN: u8 = 0;
    pub const COVARIANCE_TYPE_APPROXIMATED: u8 = 1;
    pub const COVARIANCE_TYPE_DIAGONAL_KNOWN: u8 = 2;
    pub const COVARIANCE_TYPE_KNOWN: u8 = 3;
}
impl Default for NavSatFix {
    fn default() -> Self {
        NavSatFix {
            header: Header::default(),
            status: NavSatStatus::default(),
            latitude: f64::NAN,
            longitude: f64::NAN,
            altitude: f64::NAN,
            position_covariance: [0.0; 9],
            position_covariance_type: 0,
        }
    }
}
impl_fields!(NavSatFix {
    header,
    status,
    latitude,
    longitude,
    altitude,
    position_covariance,
    position_covariance_type
});

/// `sensor_msgs/Imu` (orientation, angular velocity in rad/s, linear acceleration in m/s²).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Imu {
    pub header: Header,
    pub orientation: Quaternion,
    pub angular_velocity: Vector3,
    pub linear_acceleration: Vector3,
}
impl_fields!(Imu {
    header,
    orientation,
    angular_velocity,
    linear_acceleration
});

/// `sensor_msgs/JointState` (SI units: rad, rad/s, N·m).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct JointState {
    pub header: Header,
    pub name: Vec<String>,
    pub position: Vec<f64>,
    pub velocity: Vec<f64>,
    pub effort: Vec<f64>,
}
impl_fields!(JointState {
    header,
    name,
    position,
    velocity,
    effort
});

/// `sensor_msgs/BatteryState`; unknown values are NaN, as in ROS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BatteryState {
    pub header: Header,
    pub voltage: f32,
    pub current: f32,
    pub charge: f32,
    pub percentage: f32,
    pub temperature: f32,
}
impl Default for BatteryState {
    fn default() -> Self {
        BatteryState {
            header: Header::default(),
            voltage: f32::NAN,
            current: f32::NAN,
            charge: f32::NAN,
            percentage: f32::NAN,
            temperature: f32::NAN,
        }
    }
}
impl_fields!(BatteryState {
    header,
    voltage,
    current,
    charge,
    percentage,
    temperature
});

/// `sensor_msgs/Temperature` (°C).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Temperature {
    pub header: Header,
    pub temperature: f64,
    pub variance: f64,
}
impl_fields!(Temperature {
    header,
    temperature,
    variance
});

/// `sensor_msgs/Range` (metres, radians).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Range {
    pub header: Header,
    pub radiation_type: u8,
    pub field_of_view: f32,
    pub min_range: f32,
    pub max_range: f32,
    pub range: f32,
}
impl_fields!(Range {
    header,
    radiation_type,
    field_of_view,
    min_range,
    max_range,
    range
});

/// `geometry_msgs/Twist`. As a command the header is optional and only `stamp` is read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Twist {
    pub header: Header,
    pub linear: Vector3,
    pub angular: Vector3,
}
impl_fields!(Twist {
    header,
    linear,
    angular
});

/// `std_msgs/Float64`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Float64 {
    pub header: Header,
    pub data: f64,
}
impl_fields!(Float64 { header, data });

/// `std_msgs/Bool`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BoolMsg {
    pub header: Header,
    pub data: bool,
}
impl_fields!(BoolMsg { header, data });

/// `std_msgs/String`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StringMsg {
    pub header: Header,
    pub data: String,
}
impl_fields!(StringMsg { header, data });

/// `can_msgs/Frame`; `data` is MessagePack bin. `is_fd` is our extension: a CAN FD frame
/// (up to 64 data bytes), which ROS's classic message cannot say.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Frame {
    pub header: Header,
    pub id: u32,
    pub is_extended: bool,
    pub is_rtr: bool,
    pub is_error: bool,
    pub is_fd: bool,
    pub dlc: u8,
    /// Bytes: `bin` in MessagePack; in viewers' JSON base64, as Foxglove reads bytes.
    #[serde(with = "serde_bytes")]
    #[schemars(with = "String", extend("contentEncoding" = "base64"))]
    pub data: Vec<u8>,
}

impl Fields for Frame {
    fn set_path(&mut self, path: &str, value: &Scalar) -> Result<(), FieldError> {
        match path {
            "data" => {
                let text = value.to_string();
                self.data = hex_decode(&text).ok_or(FieldError::Convert {
                    value: text,
                    expected: "hex byte string",
                })?;
                Ok(())
            }
            _ => {
                let (head, rest) = fields::split_path(path);
                match head {
                    "header" => self.header.set_path(rest, value),
                    "id" => self.id.set_path(rest, value),
                    "is_extended" => self.is_extended.set_path(rest, value),
                    "is_rtr" => self.is_rtr.set_path(rest, value),
                    "is_error" => self.is_error.set_path(rest, value),
                    "is_fd" => self.is_fd.set_path(rest, value),
                    "dlc" => self.dlc.set_path(rest, value),
                    _ => Err(FieldError::Unknown),
                }
            }
        }
    }
    fn get_path(&self, path: &str) -> Option<Scalar> {
        let (head, rest) = fields::split_path(path);
        match head {
            "header" => self.header.get_path(rest),
            "id" => self.id.get_path(rest),
            "is_extended" => self.is_extended.get_path(rest),
            "is_rtr" => self.is_rtr.get_path(rest),
            "is_error" => self.is_error.get_path(rest),
            "is_fd" => self.is_fd.get_path(rest),
            "dlc" => self.dlc.get_path(rest),
            "data" if rest.is_empty() => Some(Scalar::Str(hex_encode(&self.data))),
            _ => None,
        }
    }
    fn kind_of(path: &str) -> Option<FieldKind> {
        let (head, rest) = fields::split_path(path);
        match head {
            "header" => Header::kind_of(rest),
            "id" => u32::kind_of(rest),
            "is_extended" | "is_rtr" | "is_error" | "is_fd" => bool::kind_of(rest),
            "dlc" => u8::kind_of(rest),
            "data" if rest.is_empty() => Some(FieldKind::Bytes),
            _ => None,
        }
    }
    fn leaf_paths(prefix: &str, out: &mut Vec<String>) {
        let p = |n: &str| {
            if prefix.is_empty() {
                n.to_string()
            } else {
                format!("{prefix}.{n}")
            }
        };
        Header::leaf_paths(&p("header"), out);
        for n in [
            "id",
            "is_extended",
            "is_rtr",
            "is_error",
            "is_fd",
            "dlc",
            "data",
        ] {
            out.push(p(n));
        }
    }
}

pub fn hex_encode(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    let t: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if t.len() % 2 != 0 {
        return None;
    }
    t.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

/// The closed set of message types a stream or command can declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    NavSatFix,
    Imu,
    JointState,
    BatteryState,
    Temperature,
    Range,
    Twist,
    Float64,
    Bool,
    String,
    Frame,
    Map,
}

impl MessageType {
    pub const ALL: [MessageType; 12] = [
        MessageType::NavSatFix,
        MessageType::Imu,
        MessageType::JointState,
        MessageType::BatteryState,
        MessageType::Temperature,
        MessageType::Range,
        MessageType::Twist,
        MessageType::Float64,
        MessageType::Bool,
        MessageType::String,
        MessageType::Frame,
        MessageType::Map,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MessageType::NavSatFix => "sensor_msgs/NavSatFix",
            MessageType::Imu => "sensor_msgs/Imu",
            MessageType::JointState => "sensor_msgs/JointState",
            MessageType::BatteryState => "sensor_msgs/BatteryState",
            MessageType::Temperature => "sensor_msgs/Temperature",
            MessageType::Range => "sensor_msgs/Range",
            MessageType::Twist => "geometry_msgs/Twist",
            MessageType::Float64 => "std_msgs/Float64",
            MessageType::Bool => "std_msgs/Bool",
            MessageType::String => "std_msgs/String",
            MessageType::Frame => "can_msgs/Frame",
            MessageType::Map => "map",
        }
    }

    pub fn from_name(name: &str) -> Option<MessageType> {
        MessageType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The kind of the leaf at `path`; `map` accepts any single-segment name.
    pub fn kind_of(self, path: &str) -> Option<FieldKind> {
        match self {
            MessageType::NavSatFix => NavSatFix::kind_of(path),
            MessageType::Imu => Imu::kind_of(path),
            MessageType::JointState => JointState::kind_of(path),
            MessageType::BatteryState => BatteryState::kind_of(path),
            MessageType::Temperature => Temperature::kind_of(path),
            MessageType::Range => Range::kind_of(path),
            MessageType::Twist => Twist::kind_of(path),
            MessageType::Float64 => Float64::kind_of(path),
            MessageType::Bool => BoolMsg::kind_of(path),
            MessageType::String => StringMsg::kind_of(path),
            MessageType::Frame => Frame::kind_of(path),
            MessageType::Map => MapMessage::kind_of(path),
        }
    }

    /// Every leaf path of the type except the header, for simulators and documentation.
    pub fn leaf_paths(self) -> Vec<String> {
        let mut out = Vec::new();
        match self {
            MessageType::NavSatFix => NavSatFix::leaf_paths("", &mut out),
            MessageType::Imu => Imu::leaf_paths("", &mut out),
            MessageType::JointState => JointState::leaf_paths("", &mut out),
            MessageType::BatteryState => BatteryState::leaf_paths("", &mut out),
            MessageType::Temperature => Temperature::leaf_paths("", &mut out),
            MessageType::Range => Range::leaf_paths("", &mut out),
            MessageType::Twist => Twist::leaf_paths("", &mut out),
            MessageType::Float64 => Float64::leaf_paths("", &mut out),
            MessageType::Bool => BoolMsg::leaf_paths("", &mut out),
            MessageType::String => StringMsg::leaf_paths("", &mut out),
            MessageType::Frame => Frame::leaf_paths("", &mut out),
            MessageType::Map => {}
        }
        out.retain(|p| !p.starts_with("header."));
        out
    }

    pub fn new_message(self) -> Message {
        match self {
            MessageType::NavSatFix => Message::NavSatFix(NavSatFix::default()),
            MessageType::Imu => Message::Imu(Imu::default()),
            MessageType::JointState => Message::JointState(JointState::default()),
            MessageType::BatteryState => Message::BatteryState(BatteryState::default()),
            MessageType::Temperature => Message::Temperature(Temperature::default()),
            MessageType::Range => Message::Range(Range::default()),
            MessageType::Twist => Message::Twist(Twist::default()),
            MessageType::Float64 => Message::Float64(Float64::default()),
            MessageType::Bool => Message::Bool(BoolMsg::default()),
            MessageType::String => Message::String(StringMsg::default()),
            MessageType::Frame => Message::Frame(Frame::default()),
            MessageType::Map => Message::Map(MapMessage::default()),
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One message of any declared type.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    NavSatFix(NavSatFix),
    Imu(Imu),
    JointState(JointState),
    BatteryState(BatteryState),
    Temperature(Temperature),
    Range(Range),
    Twist(Twist),
    Float64(Float64),
    Bool(BoolMsg),
    String(StringMsg),
    Frame(Frame),
    Map(MapMessage),
}

macro_rules! each_message {
    ($self:expr, $m:ident => $body:expr) => {
        match $self {
            Message::NavSatFix($m) => $body,
            Message::Imu($m) => $body,
            Message::JointState($m) => $body,
            Message::BatteryState($m) => $body,
            Message::Temperature($m) => $body,
            Message::Range($m) => $body,
            Message::Twist($m) => $body,
            Message::Float64($m) => $body,
            Message::Bool($m) => $body,
            Message::String($m) => $body,
            Message::Frame($m) => $body,
            Message::Map($m) => $body,
        }
    };
}

impl Message {
    pub fn header(&self) -> &Header {
        each_message!(self, m => &m.header)
    }

    pub fn header_mut(&mut self) -> &mut Header {
        each_message!(self, m => &mut m.header)
    }

    pub fn set_path(&mut self, path: &str, value: &Scalar) -> Result<(), FieldError> {
        each_message!(self, m => m.set_path(path, value))
    }

    pub fn get_path(&self, path: &str) -> Option<Scalar> {
        each_message!(self, m => m.get_path(path))
    }

    /// Appends the named-map MessagePack encoding to `buf`, which callers reuse.
    pub fn encode_into(&self, buf: &mut Vec<u8>) -> Result<(), rmp_serde::encode::Error> {
        rmp_serde::encode::write_named(buf, self)
    }
}

impl Serialize for Message {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        each_message!(self, m => m.serialize(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_name_round_trips() {
        for t in MessageType::ALL {
            assert_eq!(MessageType::from_name(t.name()), Some(t));
        }
        assert_eq!(MessageType::from_name("sensor_msgs/Nope"), None);
    }

    #[test]
    fn field_paths_reach_nested_leaves() {
        let mut m = MessageType::Twist.new_message();
        m.set_path("linear.x", &Scalar::Str("0.5".into())).unwrap();
        assert_eq!(m.get_path("linear.x"), Some(Scalar::Float(0.5)));
        assert_eq!(
            m.set_path("linear.q", &Scalar::Float(1.0)),
            Err(FieldError::Unknown)
        );
        assert_eq!(
            MessageType::NavSatFix.kind_of("position_covariance[8]"),
            Some(FieldKind::Float)
        );
        assert_eq!(
            MessageType::NavSatFix.kind_of("position_covariance[9]"),
            None
        );
        assert_eq!(
            MessageType::NavSatFix.kind_of("status.status"),
            Some(FieldKind::Int {
                min: -128,
                max: 127
            })
        );
    }

    #[test]
    fn encoding_is_a_named_map_with_header() {
        let mut m = MessageType::BatteryState.new_message();
        m.set_path("voltage", &Scalar::Float(12.5)).unwrap();
        m.header_mut().seq = 3;
        m.header_mut().frame_id = "base".into();
        let mut buf = Vec::new();
        m.encode_into(&mut buf).unwrap();
        let v = rmpv::decode::read_value(&mut &buf[..]).unwrap();
        let map = v.as_map().unwrap();
        assert_eq!(map[0].0.as_str(), Some("header"));
        let header = map[0].1.as_map().unwrap();
        assert_eq!(header[0].0.as_str(), Some("seq"));
        assert_eq!(header[0].1.as_u64(), Some(3));
        let voltage = map
            .iter()
            .find(|(k, _)| k.as_str() == Some("voltage"))
            .unwrap();
        assert_eq!(voltage.1.as_f64(), Some(12.5));
        let current = map
            .iter()
            .find(|(k, _)| k.as_str() == Some("current"))
            .unwrap();
        assert!(current.1.as_f64().unwrap().is_nan());
    }

    #[test]
    fn time_before_epoch_keeps_nanos_positive() {
        let t = Time::from(UNIX_EPOCH - std::time::Duration::from_millis(1500));
        assert_eq!(
            t,
            Time {
                sec: -2,
                nanosec: 500_000_000
            }
        );
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex_decode("01ff 10"), Some(vec![1, 255, 16]));
        assert_eq!(hex_encode(&[1, 255, 16]), "01ff10");
        assert_eq!(hex_decode("0"), None);
    }
}
