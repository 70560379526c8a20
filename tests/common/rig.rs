//! The rig scenarios share: [`RobotRig`], a broker, a daemon running one robot file, and a
//! subscriber on everything the robot publishes, with the waits and command round trips
//! the CAN, Modbus and `botbus sim` suites all need.

use super::broker::Broker;
use super::daemon::{Daemon, DaemonOptions};
use super::fixtures::msgpack;
use super::subscriber::{Msg, Subscriber};
use super::util::state_dir;
use rumqttc::QoS;
use tempfile::TempDir;

/// A daemon for one robot file, its broker and an independent subscriber on
/// `robot/<id>/#`.
pub struct RobotRig {
    pub id: String,
    pub sub: Subscriber,
    pub daemon: Daemon,
    pub state: TempDir,
    pub broker: Broker,
}

impl RobotRig {
    /// `toml` (with `@ID@` replaced by `id`) run by a daemon against a fresh broker.
    pub async fn start(id: &str, toml: &str) -> RobotRig {
        RobotRig::start_with(id, toml, |o| o).await
    }

    /// Like [`RobotRig::start`], with the daemon's options changed by `opts`.
    pub async fn start_with(
        id: &str,
        toml: &str,
        opts: impl FnOnce(DaemonOptions) -> DaemonOptions,
    ) -> RobotRig {
        let broker = Broker::start();
        let sub = Subscriber::connect(&broker, &[&format!("robot/{id}/#")]).await;
        let state = state_dir();
        let daemon = Daemon::start(opts(DaemonOptions::new(
            toml.replace("@ID@", id),
            &broker,
            state.path(),
        )));
        RobotRig {
            id: id.to_string(),
            sub,
            daemon,
            state,
            broker,
        }
    }

    /// `robot/<id>/<rest>`.
    pub fn topic(&self, rest: &str) -> String {
        format!("robot/{}/{rest}", self.id)
    }

    pub async fn wait_online(&mut self) -> Msg {
        let id = self.id.clone();
        self.sub.wait_state(&id, "online").await
    }

    /// The oldest unclaimed message on `robot/<id>/<rest>`.
    pub async fn wait_topic(&mut self, rest: &str) -> Msg {
        let topic = self.topic(rest);
        self.sub.wait_topic(&topic).await
    }

    /// The oldest unclaimed sample on `sensor` that satisfies `pred`.
    pub async fn sample(&mut self, sensor: &str, what: &str, pred: impl Fn(&Msg) -> bool) -> Msg {
        let topic = self.topic(sensor);
        self.sub
            .wait_for(what, |m| m.topic == topic && pred(m))
            .await
    }

    /// The oldest unclaimed diagnostics report that satisfies `pred`.
    pub async fn diag(&mut self, what: &str, mut pred: impl FnMut(&Msg) -> bool) -> Msg {
        let topic = self.topic("diagnostics");
        self.sub
            .wait_for(what, |m| m.topic == topic && pred(m))
            .await
    }

    /// The oldest unclaimed diagnostics report whose entry for `device` satisfies `pred`.
    pub async fn diag_entry(
        &mut self,
        device: &str,
        what: &str,
        pred: impl Fn(&rmpv::Value) -> bool,
    ) -> Msg {
        self.diag(what, |m| m.diag_device(device).is_some_and(&pred))
            .await
    }

    /// Publishes `payload` to `cmd/<actuator>` at QoS 1.
    pub async fn publish(&self, actuator: &str, payload: Vec<u8>) {
        self.sub
            .client
            .publish(
                self.topic(&format!("cmd/{actuator}")),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .expect("queue PUBLISH");
    }

    /// The ack on `ack/<actuator>` of the command `id` (the next ack there when `None`),
    /// as JSON.
    pub async fn ack(&mut self, actuator: &str, id: Option<u64>) -> serde_json::Value {
        let topic = self.topic(&format!("ack/{actuator}"));
        self.sub
            .wait_for(&format!("the ack of command {id:?} on {actuator}"), |m| {
                m.topic == topic && (id.is_none() || m.opt("id").and_then(|v| v.as_u64()) == id)
            })
            .await
            .json()
    }

    /// Publishes `{"id": id, "data": data}` to `cmd/<actuator>` and returns its ack.
    pub async fn command(
        &mut self,
        actuator: &str,
        id: u64,
        data: serde_json::Value,
    ) -> serde_json::Value {
        self.publish(
            actuator,
            msgpack(&serde_json::json!({"id": id, "data": data})),
        )
        .await;
        self.ack(actuator, Some(id)).await
    }
}

/// Lets a suite's rig that wraps a [`RobotRig`] in its field `rig` (adding a peer, a
/// simulator, a relay) be used as the `RobotRig` itself: `deref_rig!(Rig);`.
macro_rules! deref_rig {
    ($t:ty) => {
        impl std::ops::Deref for $t {
            type Target = RobotRig;
            fn deref(&self) -> &RobotRig {
                &self.rig
            }
        }

        impl std::ops::DerefMut for $t {
            fn deref_mut(&mut self) -> &mut RobotRig {
                &mut self.rig
            }
        }
    };
}
pub(crate) use deref_rig;
