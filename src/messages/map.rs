//! The `map` message: named values at top level beside the header, for decoded registers,
//! CAN signals and NMEA fields that have no ROS type.

use super::fields::{FieldError, FieldKind, Fields};
use super::{Header, Scalar};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MapMessage {
    pub header: Header,
    /// In insertion order; names are unique.
    pub values: Vec<(String, Scalar)>,
}

impl MapMessage {
    /// Sets `name`, replacing an earlier value of the same name.
    pub fn insert(&mut self, name: &str, value: Scalar) {
        match self.values.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.values.push((name.to_string(), value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Scalar> {
        self.values.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

fn is_plain_name(path: &str) -> bool {
    !path.is_empty() && path != "header" && !path.contains(['.', '['])
}

impl Fields for MapMessage {
    fn set_path(&mut self, path: &str, value: &Scalar) -> Result<(), FieldError> {
        if let Some(rest) = path.strip_prefix("header.") {
            return self.header.set_path(rest, value);
        }
        if !is_plain_name(path) {
            return Err(FieldError::Unknown);
        }
        let value = match value {
            Scalar::Str(s) => Scalar::infer(s.trim()),
            other => other.clone(),
        };
        self.insert(path, value);
        Ok(())
    }

    fn get_path(&self, path: &str) -> Option<Scalar> {
        if let Some(rest) = path.strip_prefix("header.") {
            return self.header.get_path(rest);
        }
        self.get(path).cloned()
    }

    fn kind_of(path: &str) -> Option<FieldKind> {
        if let Some(rest) = path.strip_prefix("header.") {
            return Header::kind_of(rest);
        }
        is_plain_name(path).then_some(FieldKind::Any)
    }

    fn leaf_paths(_prefix: &str, _out: &mut Vec<String>) {}
}

impl Serialize for MapMessage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.values.len() + 1))?;
        m.serialize_entry("header", &self.header)?;
        for (k, v) in &self.values {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for MapMessage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<MapMessage, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MapMessage;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of named values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<MapMessage, A::Error> {
                let mut m = MapMessage::default();
                while let Some(key) = a.next_key::<String>()? {
                    if key == "header" {
                        m.header = a.next_value()?;
                    } else {
                        let v: Scalar = a.next_value()?;
                        m.insert(&key, v);
                    }
                }
                Ok(m)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_infers_string_values_and_replaces_duplicates() {
        let mut m = MapMessage::default();
        m.set_path("rpm", &Scalar::Str(" 1200 ".into())).unwrap();
        m.set_path("rpm", &Scalar::Str("1300".into())).unwrap();
        m.set_path("mode", &Scalar::Str("AUTO".into())).unwrap();
        assert_eq!(m.values.len(), 2);
        assert_eq!(m.get("rpm"), Some(&Scalar::Int(1300)));
        assert_eq!(m.get("mode"), Some(&Scalar::Str("AUTO".into())));
        assert!(m.set_path("a.b", &Scalar::Int(1)).is_err());
    }

    #[test]
    fn map_messages_round_trip_through_msgpack() {
        let mut m = MapMessage::default();
        m.header.seq = 4;
        m.insert("rpm", Scalar::Int(-1200));
        m.insert("temp", Scalar::Float(35.5));
        m.insert("ok", Scalar::Bool(true));
        m.insert("mode", Scalar::Str("AUTO".into()));
        let bytes = rmp_serde::to_vec_named(&m).unwrap();
        let back: MapMessage = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, m);
    }
}
