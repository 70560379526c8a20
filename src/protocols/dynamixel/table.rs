//! Control tables: where each item lives in a device's memory, how many bytes it holds and
//! whether it is signed, for the X series and the P series (Protocol 2.0 firmware), and
//! the closed [`Model`] a robot file names. Addresses are from the ROBOTIS e-Manual
//! control tables (XM430-W350 for the X series, PH54-200-S500-R for the P series; the
//! other P models share the layout).

use super::error::DynamixelError;
use super::units::Units;
use std::fmt;
use std::str::FromStr;

/// One control table item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// snake_case, as a robot file names it.
    pub name: &'static str,
    pub address: u16,
    /// 1, 2 or 4 bytes, little-endian.
    pub size: u8,
    pub signed: bool,
}

impl Item {
    const fn new(name: &'static str, address: u16, size: u8, signed: bool) -> Self {
        Item {
            name,
            address,
            size,
            signed,
        }
    }

    /// The value in `data`, which must be exactly the item's bytes.
    pub fn decode(&self, data: &[u8]) -> Option<i64> {
        Some(match (self.size, self.signed, data) {
            (1, false, &[a]) => a as i64,
            (1, true, &[a]) => a as i8 as i64,
            (2, false, &[a, b]) => u16::from_le_bytes([a, b]) as i64,
            (2, true, &[a, b]) => i16::from_le_bytes([a, b]) as i64,
            (4, false, &[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]) as i64,
            (4, true, &[a, b, c, d]) => i32::from_le_bytes([a, b, c, d]) as i64,
            _ => return None,
        })
    }

    /// The bytes that write `value`, when it fits the item.
    pub fn encode(&self, value: i64) -> Result<Vec<u8>, DynamixelError> {
        let bits = 8 * self.size as u32;
        let (min, max) = if self.signed {
            (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1)
        } else {
            (0, (1i64 << bits) - 1)
        };
        if !(min..=max).contains(&value) {
            return Err(DynamixelError::OutOfRange {
                item: self.name,
                size: self.size,
                value,
            });
        }
        Ok(value.to_le_bytes()[..self.size as usize].to_vec())
    }
}

/// The X series' control table without its LED (e-Manual XM430-W350), which is also the
/// P series' (e-Manual PH54-200-S500-R): the EEPROM areas match item for item up to
/// Shutdown(63), and the P series has the same RAM items in the same layout
/// [`P_RAM_OFFSET`] bytes higher (Torque Enable 64 → 512 ... Present Temperature
/// 146 → 594). Position limits are signed: the P series' are ±half a turn, and the X
/// series' 0..=4095 read the same either way.
const ITEMS: &[Item] = &[
    Item::new("model_number", 0, 2, false),
    Item::new("model_information", 2, 4, false),
    Item::new("firmware_version", 6, 1, false),
    Item::new("id", 7, 1, false),
    Item::new("baud_rate", 8, 1, false),
    Item::new("return_delay_time", 9, 1, false),
    Item::new("drive_mode", 10, 1, false),
    Item::new("operating_mode", 11, 1, false),
    Item::new("secondary_id", 12, 1, false),
    Item::new("protocol_type", 13, 1, false),
    Item::new("homing_offset", 20, 4, true),
    Item::new("moving_threshold", 24, 4, false),
    Item::new("temperature_limit", 31, 1, false),
    Item::new("max_voltage_limit", 32, 2, false),
    Item::new("min_voltage_limit", 34, 2, false),
    Item::new("pwm_limit", 36, 2, false),
    Item::new("current_limit", 38, 2, false),
    Item::new("acceleration_limit", 40, 4, false),
    Item::new("velocity_limit", 44, 4, false),
    Item::new("max_position_limit", 48, 4, true),
    Item::new("min_position_limit", 52, 4, true),
    Item::new("shutdown", 63, 1, false),
    Item::new("torque_enable", 64, 1, false),
    Item::new("status_return_level", 68, 1, false),
    Item::new("registered_instruction", 69, 1, false),
    Item::new("hardware_error_status", 70, 1, false),
    Item::new("velocity_i_gain", 76, 2, false),
    Item::new("velocity_p_gain", 78, 2, false),
    Item::new("position_d_gain", 80, 2, false),
    Item::new("position_i_gain", 82, 2, false),
    Item::new("position_p_gain", 84, 2, false),
    Item::new("feedforward_2nd_gain", 88, 2, false),
    Item::new("feedforward_1st_gain", 90, 2, false),
    Item::new("bus_watchdog", 98, 1, false),
    Item::new("goal_pwm", 100, 2, true),
    Item::new("goal_current", 102, 2, true),
    Item::new("goal_velocity", 104, 4, true),
    Item::new("profile_acceleration", 108, 4, false),
    Item::new("profile_velocity", 112, 4, false),
    Item::new("goal_position", 116, 4, true),
    Item::new("realtime_tick", 120, 2, false),
    Item::new("moving", 122, 1, false),
    Item::new("moving_status", 123, 1, false),
    Item::new("present_pwm", 124, 2, true),
    Item::new("present_current", 126, 2, true),
    Item::new("present_velocity", 128, 4, true),
    Item::new("present_position", 132, 4, true),
    Item::new("velocity_trajectory", 136, 4, true),
    Item::new("position_trajectory", 140, 4, true),
    Item::new("present_input_voltage", 144, 2, false),
    Item::new("present_temperature", 146, 1, false),
];

/// Where the RAM area starts on the X series.
const X_RAM: u16 = 64;

const P_RAM_OFFSET: u16 = 448;

const X_LED: &[Item] = &[Item::new("led", 65, 1, false)];

/// The P series has an RGB LED where the X series has one LED.
const P_LEDS: &[Item] = &[
    Item::new("led_red", 513, 1, false),
    Item::new("led_green", 514, 1, false),
    Item::new("led_blue", 515, 1, false),
];

/// The kind of device on a bus, which fixes its control table and units.
///
/// P models differ in encoder resolution, so each is its own variant; the X models listed
/// in [`Model::parse`] share one table and one set of units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Model {
    /// X series with current in 2.69 mA steps: XM430, XM540, XH430-W, XH540, XD, XW.
    #[default]
    XSeries,
    Ph54,
    Ph42,
    Pm54,
    Pm42,
}

impl Model {
    /// Reads a robot file's model name. Case does not matter, and a full product name is
    /// cut at its first `-` (`XM430-W350-R` is `xm430`). Taken: `x`, `x_series`, `xm430`,
    /// `xm540`, `xh430`, `xh540`, `xd430`, `xd540`, `xw430`, `xw540`; `ph54`, `ph42`,
    /// `pm54`, `pm42` and their former PRO+ names `h54p`, `h42p`, `m54p`, `m42p`.
    pub fn parse(name: &str) -> Result<Self, DynamixelError> {
        let lower = name.trim().to_ascii_lowercase();
        let family = lower.split('-').next().unwrap_or_default();
        let unsupported = |reason| {
            Err(DynamixelError::UnsupportedModel {
                name: name.to_string(),
                reason,
            })
        };
        Ok(match family {
            "x" | "x_series" | "xm430" | "xm540" | "xh430" | "xh540" | "xd430" | "xd540"
            | "xw430" | "xw540" => Model::XSeries,
            "ph54" | "h54p" => Model::Ph54,
            "ph42" | "h42p" => Model::Ph42,
            "pm54" | "m54p" => Model::Pm54,
            "pm42" | "m42p" => Model::Pm42,
            "p" | "p_series" => {
                return unsupported(
                    "P models differ in encoder resolution: name one (ph54, ph42, pm54, pm42)",
                )
            }
            "xl430" | "xc430" | "2xl430" | "2xc430" => {
                return unsupported("it reports Present Load, not Present Current")
            }
            "xl330" | "xc330" => return unsupported("its current unit is not 2.69 mA"),
            _ => {
                return Err(DynamixelError::UnknownModel {
                    name: name.to_string(),
                })
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Model::XSeries => "X series",
            Model::Ph54 => "PH54",
            Model::Ph42 => "PH42",
            Model::Pm54 => "PM54",
            Model::Pm42 => "PM42",
        }
    }

    /// Every item of the model's control table.
    pub fn items(self) -> impl Iterator<Item = Item> {
        let (offset, leds) = match self {
            Model::XSeries => (0, X_LED),
            Model::Ph54 | Model::Ph42 | Model::Pm54 | Model::Pm42 => (P_RAM_OFFSET, P_LEDS),
        };
        let shift = move |i: &Item| Item {
            address: i.address + if i.address >= X_RAM { offset } else { 0 },
            ..*i
        };
        ITEMS.iter().map(shift).chain(leds.iter().copied())
    }

    pub fn item(self, name: &str) -> Result<Item, DynamixelError> {
        self.items()
            .find(|i| i.name == name)
            .ok_or_else(|| DynamixelError::UnknownItem {
                model: self,
                name: name.to_string(),
            })
    }

    pub fn units(self) -> Units {
        Units::of(self)
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Model {
    type Err = DynamixelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Model::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_brief_items_are_where_the_emanual_puts_them() {
        use Model::{Ph54, XSeries};
        // (model, name, address, size) in the XM430-W350 and PH54-200-S500-R tables.
        let want: &[(Model, &str, u16, u8)] = &[
            (XSeries, "model_number", 0, 2),
            (XSeries, "operating_mode", 11, 1),
            (XSeries, "homing_offset", 20, 4),
            (XSeries, "current_limit", 38, 2),
            (XSeries, "velocity_limit", 44, 4),
            (XSeries, "max_position_limit", 48, 4),
            (XSeries, "min_position_limit", 52, 4),
            (XSeries, "torque_enable", 64, 1),
            (XSeries, "led", 65, 1),
            (XSeries, "hardware_error_status", 70, 1),
            (XSeries, "goal_current", 102, 2),
            (XSeries, "goal_velocity", 104, 4),
            (XSeries, "profile_acceleration", 108, 4),
            (XSeries, "profile_velocity", 112, 4),
            (XSeries, "goal_position", 116, 4),
            (XSeries, "moving", 122, 1),
            (XSeries, "present_current", 126, 2),
            (XSeries, "present_velocity", 128, 4),
            (XSeries, "present_position", 132, 4),
            (XSeries, "present_input_voltage", 144, 2),
            (XSeries, "present_temperature", 146, 1),
            (Ph54, "max_position_limit", 48, 4),
            (Ph54, "torque_enable", 512, 1),
            (Ph54, "led_green", 514, 1),
            (Ph54, "status_return_level", 516, 1),
            (Ph54, "hardware_error_status", 518, 1),
            (Ph54, "velocity_i_gain", 524, 2),
            (Ph54, "bus_watchdog", 546, 1),
            (Ph54, "goal_current", 550, 2),
            (Ph54, "goal_velocity", 552, 4),
            (Ph54, "profile_acceleration", 556, 4),
            (Ph54, "profile_velocity", 560, 4),
            (Ph54, "goal_position", 564, 4),
            (Ph54, "moving", 570, 1),
            (Ph54, "present_current", 574, 2),
            (Ph54, "present_velocity", 576, 4),
            (Ph54, "present_position", 580, 4),
            (Ph54, "position_trajectory", 588, 4),
            (Ph54, "present_input_voltage", 592, 2),
            (Ph54, "present_temperature", 594, 1),
        ];
        for &(model, name, address, size) in want {
            let i = model.item(name).unwrap();
            assert_eq!((i.address, i.size), (address, size), "{model} {name}");
        }
    }

    #[test]
    fn tables_have_no_overlaps_or_repeated_names() {
        for model in [Model::XSeries, Model::Ph54] {
            let mut items: Vec<Item> = model.items().collect();
            items.sort_by_key(|i| i.address);
            for pair in items.windows(2) {
                let end = pair[0].address + pair[0].size as u16;
                assert!(end <= pair[1].address, "{:?}", pair);
            }
            for (i, item) in items.iter().enumerate() {
                assert!([1, 2, 4].contains(&item.size));
                assert!(
                    items[i + 1..].iter().all(|o| o.name != item.name),
                    "{}",
                    item.name
                );
            }
        }
    }

    #[test]
    fn unknown_items_say_which_table() {
        let e = Model::Ph54.item("led").unwrap_err();
        assert_eq!(e.to_string(), "the PH54 control table has no item \"led\"");
    }

    #[test]
    fn model_names_parse_as_documented() {
        for name in [
            "x",
            "X",
            "x_series",
            "xm430",
            "XM430-W350-R",
            " xh540-w270 ",
            "xd430",
        ] {
            assert_eq!(name.parse::<Model>(), Ok(Model::XSeries), "{name}");
        }
        assert_eq!(Model::parse("PH54-200-S500-R"), Ok(Model::Ph54));
        assert_eq!(Model::parse("h42p-020-s300-r"), Ok(Model::Ph42));
        assert_eq!(Model::parse("pm54"), Ok(Model::Pm54));
        assert_eq!(Model::parse("M42P"), Ok(Model::Pm42));
        assert_eq!(Model::default(), Model::XSeries);
        for name in ["p", "xl430-w250", "2xc430", "xl330"] {
            assert!(
                matches!(
                    Model::parse(name),
                    Err(DynamixelError::UnsupportedModel { .. })
                ),
                "{name}"
            );
        }
        assert!(matches!(
            Model::parse("ax12"),
            Err(DynamixelError::UnknownModel { .. })
        ));
        assert!(matches!(
            Model::parse(""),
            Err(DynamixelError::UnknownModel { .. })
        ));
    }

    #[test]
    fn items_decode_and_encode_their_own_bytes() {
        let pos = Model::XSeries.item("present_position").unwrap();
        assert_eq!(pos.decode(&[0xA6, 0, 0, 0]), Some(166));
        assert_eq!(pos.decode(&[0xFF, 0xFF, 0xFF, 0xFF]), Some(-1));
        assert_eq!(pos.decode(&[0xA6, 0, 0]), None);
        assert_eq!(pos.encode(-1).unwrap(), [0xFF; 4]);
        let volt = Model::XSeries.item("present_input_voltage").unwrap();
        assert_eq!(volt.decode(&[0x77, 0x00]), Some(119));
        assert_eq!(volt.decode(&[0xFF, 0xFF]), Some(65535));
        let led = Model::XSeries.item("led").unwrap();
        assert_eq!(led.encode(1).unwrap(), [1]);
        assert_eq!(
            led.encode(256),
            Err(DynamixelError::OutOfRange {
                item: "led",
                size: 1,
                value: 256
            })
        );
        assert!(led.encode(-1).is_err());
        let current = Model::XSeries.item("goal_current").unwrap();
        assert_eq!(current.encode(-32768).unwrap(), [0x00, 0x80]);
        assert!(current.encode(32768).is_err());
    }
}
