//! The validated robot: devices as a closed enum per kind, each holding its protocol's
//! typed streams and commands, so no consumer needs a fallback for a combination that
//! validation already ruled out. `Robot::load` builds it from a robot file.

use crate::protocols::can::{Can, CanLink, CanWrite};
use crate::protocols::dynamixel::{DxlCommand, Dynamixel};
use crate::protocols::lines::{Lines, Template};
use crate::protocols::modbus::{Modbus, RegisterWrite};
use crate::protocols::nmea::Nmea;
use crate::spec::{Command, StreamSpec, TransportSpec};
use std::path::PathBuf;
use std::time::Duration;

/// A validated robot.
#[derive(Debug, Clone)]
pub struct Robot {
    pub id: String,
    pub file: PathBuf,
    pub devices: Vec<Device>,
}

/// One device of a robot: its name and what it is.
#[derive(Debug, Clone)]
pub struct Device {
    pub name: String,
    pub kind: DeviceKind,
}

/// Every kind of device botbus drives; one variant per protocol folder.
#[derive(Debug, Clone)]
pub enum DeviceKind {
    Nmea(Nmea),
    Lines(Lines),
    Modbus(Modbus),
    Can(Can),
    Dynamixel(Dynamixel),
}

/// How the command router has a command written, whatever its device: the view of a
/// protocol's typed command that [`Device::commands`] gives.
#[derive(Debug, Clone)]
pub enum CommandRender {
    /// `lines`: one text line per command.
    Template(Template),
    /// `modbus`: register writes, one per command field.
    Modbus(Vec<RegisterWrite>),
    /// CAN: a DBC message, or a raw `can_msgs/Frame` with an allowed id.
    Can(CanWrite),
    /// `dynamixel`: JointState goals for named joints.
    Dynamixel(DxlCommand),
}

/// A command of any device, as the router and the safety layer see it.
pub type CommandSpec = Command<CommandRender>;

impl Device {
    /// The protocol name the robot file gives the device.
    pub fn protocol(&self) -> &'static str {
        match &self.kind {
            DeviceKind::Nmea(_) => "nmea",
            DeviceKind::Lines(_) => "lines",
            DeviceKind::Modbus(_) => "modbus",
            DeviceKind::Can(c) => c.link.protocol(),
            DeviceKind::Dynamixel(_) => "dynamixel",
        }
    }

    /// The device's streams, in file order (the order cores index them by).
    pub fn streams(&self) -> Vec<&StreamSpec> {
        match &self.kind {
            DeviceKind::Nmea(d) => d.streams.iter().map(|s| &s.spec).collect(),
            DeviceKind::Lines(d) => d.streams.iter().map(|s| &s.spec).collect(),
            DeviceKind::Modbus(d) => d.streams.iter().map(|s| &s.spec).collect(),
            DeviceKind::Can(d) => d.streams.iter().map(|s| &s.spec).collect(),
            DeviceKind::Dynamixel(d) => d.streams.iter().map(|s| &s.spec).collect(),
        }
    }

    /// The device's commands, in file order, as the router sees them.
    pub fn commands(&self) -> Vec<CommandSpec> {
        match &self.kind {
            DeviceKind::Nmea(_) => Vec::new(),
            DeviceKind::Lines(d) => d
                .commands
                .iter()
                .map(|c| c.map_render(|t| CommandRender::Template(t.clone())))
                .collect(),
            DeviceKind::Modbus(d) => d
                .commands
                .iter()
                .map(|c| c.map_render(|w| CommandRender::Modbus(w.clone())))
                .collect(),
            DeviceKind::Can(d) => d
                .commands
                .iter()
                .map(|c| c.map_render(|w| CommandRender::Can(w.clone())))
                .collect(),
            DeviceKind::Dynamixel(d) => d
                .commands
                .iter()
                .map(|c| c.map_render(|w| CommandRender::Dynamixel(w.clone())))
                .collect(),
        }
    }

    /// Silence after which the device counts as gone and is reopened.
    pub fn idle_timeout(&self) -> Option<Duration> {
        match &self.kind {
            DeviceKind::Nmea(d) => d.idle_timeout,
            DeviceKind::Lines(d) => d.idle_timeout,
            // A Modbus unit speaks only when asked; its health is the answers to polls.
            DeviceKind::Modbus(_) | DeviceKind::Dynamixel(_) => None,
            DeviceKind::Can(d) => d.idle_timeout,
        }
    }

    /// The byte transport, to point it elsewhere (the simulator's pseudo-terminals).
    pub fn transport_mut(&mut self) -> Option<&mut TransportSpec> {
        match &mut self.kind {
            DeviceKind::Nmea(d) => Some(&mut d.transport),
            DeviceKind::Lines(d) => Some(&mut d.transport),
            DeviceKind::Modbus(d) => Some(&mut d.transport),
            DeviceKind::Dynamixel(d) => Some(&mut d.transport),
            DeviceKind::Can(Can {
                link: CanLink::Slcan { transport, .. },
                ..
            }) => Some(transport),
            DeviceKind::Can(_) => None,
        }
    }

    /// Where the device is, for logs: a path, an address or an interface.
    pub fn describe(&self) -> String {
        match &self.kind {
            DeviceKind::Nmea(d) => d.transport.describe(),
            DeviceKind::Lines(d) => d.transport.describe(),
            DeviceKind::Modbus(d) => d.transport.describe(),
            DeviceKind::Dynamixel(d) => d.transport.describe(),
            DeviceKind::Can(d) => d.link.describe(),
        }
    }
}

impl Robot {
    /// Every stream of every device, with its device.
    pub fn streams(&self) -> impl Iterator<Item = (&Device, &StreamSpec)> {
        self.devices
            .iter()
            .flat_map(|d| d.streams().into_iter().map(move |s| (d, s)))
    }

    /// Every command of every device, with its device.
    pub fn commands(&self) -> impl Iterator<Item = (&Device, CommandSpec)> {
        self.devices
            .iter()
            .flat_map(|d| d.commands().into_iter().map(move |c| (d, c)))
    }
}
