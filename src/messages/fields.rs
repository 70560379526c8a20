//! Field-path access (`"linear.x"`, `"position_covariance[4]"`) into message structs, so
//! robot files can map device keys, limits and templates onto ROS field names.

use super::value::Scalar;
use thiserror::Error;

/// What a leaf field holds; config validation uses it to check robot files before start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Float,
    Int {
        min: i64,
        max: i64,
    },
    Bool,
    Str,
    Bytes,
    /// A `map` value: whatever the device sent, inferred as number, bool or string.
    Any,
}

impl FieldKind {
    pub fn is_numeric(self) -> bool {
        matches!(self, FieldKind::Float | FieldKind::Int { .. })
    }
}

#[derive(Debug, Error, PartialEq)]
pub enum FieldError {
    #[error("no such field")]
    Unknown,
    #[error("`{value}` is not a valid {expected}")]
    Convert {
        value: String,
        expected: &'static str,
    },
    #[error("index {0} is beyond the limit of 256 elements")]
    Index(usize),
}

/// Path-addressed access to the leaves of a message. `path` is relative to `self`; the empty
/// path addresses a leaf itself.
pub trait Fields {
    fn set_path(&mut self, path: &str, value: &Scalar) -> Result<(), FieldError>;
    fn get_path(&self, path: &str) -> Option<Scalar>;
    fn kind_of(path: &str) -> Option<FieldKind>
    where
        Self: Sized;
    /// Every leaf path under `prefix`, in declaration order (arrays list their first element).
    fn leaf_paths(prefix: &str, out: &mut Vec<String>)
    where
        Self: Sized;
}

/// Splits `a.b.c` into `("a", "b.c")` and `a[3].b` into `("a", "[3].b")`.
pub fn split_path(path: &str) -> (&str, &str) {
    match path.find(['.', '[']) {
        Some(i) if path.as_bytes()[i] == b'.' => (&path[..i], &path[i + 1..]),
        Some(i) => (&path[..i], &path[i..]),
        None => (path, ""),
    }
}

/// `[3].b` → `(3, "b")`.
fn split_index(path: &str) -> Option<(usize, &str)> {
    let inner = path.strip_prefix('[')?;
    let end = inner.find(']')?;
    let idx = inner[..end].trim().parse::<usize>().ok()?;
    let rest = &inner[end + 1..];
    Some((idx, rest.strip_prefix('.').unwrap_or(rest)))
}

/// Reaches the kind of a struct member without an instance of the struct.
pub fn kind_via<S, T: Fields>(_: fn(&S) -> &T, rest: &str) -> Option<FieldKind> {
    T::kind_of(rest)
}

pub fn paths_via<S, T: Fields>(_: fn(&S) -> &T, prefix: &str, out: &mut Vec<String>) {
    T::leaf_paths(prefix, out)
}

macro_rules! impl_float_leaf {
    ($($t:ty),*) => {$(
        impl Fields for $t {
            fn set_path(&mut self, path: &str, value: &Scalar) -> Result<(), FieldError> {
                if !path.is_empty() { return Err(FieldError::Unknown); }
                *self = value.as_f64().ok_or_else(|| FieldError::Convert {
                    value: value.to_string(), expected: "number" })? as $t;
                Ok(())
            }
            fn get_path(&self, path: &str) -> Option<Scalar> {
                path.is_empty().then(|| Scalar::Float(*self as f64))
            }
            fn kind_of(path: &str) -> Option<FieldKind> {
                path.is_empty().then_some(FieldKind::Float)
            }
            fn leaf_paths(prefix: &str, out: &mut Vec<String>) { out.push(prefix.to_string()) }
        }
    )*};
}
impl_float_leaf!(f32, f64);

macro_rules! impl_int_leaf {
    ($($t:ty),*) => {$(
        impl Fields for $t {
            fn set_path(&mut self, path: &str, value: &Scalar) -> Result<(), FieldError> {
                if !path.is_empty() { return Err(FieldError::Unknown); }
                let err = || FieldError::Convert { value: value.to_string(), expected: stringify!($t) };
                let i = value.as_i64().ok_or_else(err)?;
                *self = <$t>::try_from(i).map_err(|_| err())?;
                Ok(())
            }
            fn get_path(&self, path: &str) -> Option<Scalar> {
                path.is_empty().then(|| Scalar::Int(*self as i64))
            }
            fn kind_of(path: &str) -> Option<FieldKind> {
                path.is_empty().then_some(FieldKind::Int { min: <$t>::MIN as i64, max: <$t>::MAX as i64 })
            }
            fn leaf_paths(prefix: &str, out: &mut Vec<String>) { out.push(prefix.to_string()) }
        }
    )*};
}
impl_int_leaf!(i8, u8, u16, u32, i32);

impl Fields for u64 {
    fn set_path(&mut self, path: &str, value: &Scalar) -> Result<(), FieldError> {
        if !path.is_empty() {
            return Err(FieldError::Unknown);
        }
        let err = || FieldError::Convert {
            value: value.to_string(),
            expected: "u64",
        };
        *self = u64::try_from(value.as_i64().ok_or_else(err)?).map_err(|_| err())?;
        Ok(())
    }
    fn get_path(&self, path: &str) -> Option<Scalar> {
        path.is_empty().then_some(Scalar::Int(*self as i64))
    }
    fn kind_of(path: &str) -> Option<FieldKind> {
        path.is_empty().then_some(FieldKind::Int {
            min: 0,
            max: i64::MAX,
        })
    }
    fn leaf_paths(prefix: &str, out: &mut Vec<String>) {
        out.push(prefix.to_string())
    }
}

impl Fields for i64 {
    fn set_path(&mut self, path: &str, value: &Scalar) -> Result<(), FieldError> {
        if !path.is_empty() {
            return Err(FieldError::Unknown);
        }
        *self = value.as_i64().ok_or_else(|| FieldError::Convert {
            value: value.to_string(),
            expected: "i64",
        })?;
        Ok(())
    }
    fn get_path(&self, path: &str) -> Option<Scalar> {
        path.is_empty().then_some(Scalar::Int(*self))
    }
    fn kind_of(path: &str) -> Option<FieldKind> {
        path.is_empty().then_some(FieldKind::Int {
            min: i64::MIN,
            max: i64::MAX,
        })
    }
    fn leaf_paths(prefix: &str, out: &mut Vec<String>) {
        out.push(prefix.to_string())
    }
}

impl Fields for bool {
    fn set_path(&mut self, path: &str, value: &Scalar) -> Result<(), FieldError> {
        if !path.is_empty() {
            return Err(FieldError::Unknown);
        }
        *self = value.as_bool().ok_or_else(|| FieldError::Convert {
            value: value.to_string(),
            expected: "bool",
        })?;
        Ok(())
    }
    fn get_path(&self, path: &str) -> Option<Scalar> {
        path.is_empty().then_some(Scalar::Bool(*self))
    }
    fn kind_of(path: &str) -> Option<FieldKind> {
        path.is_empty().then_some(FieldKind::Bool)
    }
    fn leaf_paths(prefix: &str, out: &mut Vec<String>) {
        out.push(prefix.to_string())
    }
}

impl Fields for String {
    fn set_path(&mut self, path: &str, value: &Scalar) -> Result<(), FieldError> {
        if !path.is_empty() {
            return Err(FieldError::Unknown);
        }
        *self = value.to_string();
        Ok(())
    }
    fn get_path(&self, path: &str) -> Option<Scalar> {
        path.is_empty().then(|| Scalar::Str(self.clone()))
    }
    fn kind_of(path: &str) -> Option<FieldKind> {
        path.is_empty().then_some(FieldKind::Str)
    }
    fn leaf_paths(prefix: &str, out: &mut Vec<String>) {
        out.push(prefix.to_string())
    }
}

impl<T: Fields, const N: usize> Fields for [T; N] {
    fn set_path(&mut self, path: &str, value: &Scalar) -> Result<(), FieldError> {
        let (i, rest) = split_index(path).ok_or(FieldError::Unknown)?;
        self.get_mut(i)
            .ok_or(FieldError::Unknown)?
            .set_path(rest, value)
    }
    fn get_path(&self, path: &str) -> Option<Scalar> {
        let (i, rest) = split_index(path)?;
        self.get(i)?.get_path(rest)
    }
    fn kind_of(path: &str) -> Option<FieldKind> {
        let (i, rest) = split_index(path)?;
        (i < N).then(|| T::kind_of(rest)).flatten()
    }
    fn leaf_paths(prefix: &str, out: &mut Vec<String>) {
        for i in 0..N {
            T::leaf_paths(&format!("{prefix}[{i}]"), out);
        }
    }
}

/// Vectors grow on write, up to 256 elements, so a device can fill `position[3]` first.
impl<T: Fields + Default> Fields for Vec<T> {
    fn set_path(&mut self, path: &str, value: &Scalar) -> Result<(), FieldError> {
        let (i, rest) = split_index(path).ok_or(FieldError::Unknown)?;
        if i >= 256 {
            return Err(FieldError::Index(i));
        }
        if self.len() <= i {
            self.resize_with(i + 1, T::default);
        }
        self[i].set_path(rest, value)
    }
    fn get_path(&self, path: &str) -> Option<Scalar> {
        let (i, rest) = split_index(path)?;
        self.get(i)?.get_path(rest)
    }
    fn kind_of(path: &str) -> Option<FieldKind> {
        let (i, rest) = split_index(path)?;
        (i < 256).then(|| T::kind_of(rest)).flatten()
    }
    fn leaf_paths(prefix: &str, out: &mut Vec<String>) {
        T::leaf_paths(&format!("{prefix}[0]"), out);
    }
}

/// Implements [`Fields`] for a struct by dispatching on the first path segment.
macro_rules! impl_fields {
    ($ty:ty { $($f:ident),* $(,)? }) => {
        impl $crate::messages::fields::Fields for $ty {
            fn set_path(&mut self, path: &str, value: &$crate::messages::Scalar)
                -> Result<(), $crate::messages::fields::FieldError> {
                let (head, rest) = $crate::messages::fields::split_path(path);
                match head {
                    $(stringify!($f) => self.$f.set_path(rest, value),)*
                    _ => Err($crate::messages::fields::FieldError::Unknown),
                }
            }
            fn get_path(&self, path: &str) -> Option<$crate::messages::Scalar> {
                let (head, rest) = $crate::messages::fields::split_path(path);
                match head {
                    $(stringify!($f) => self.$f.get_path(rest),)*
                    _ => None,
                }
            }
            fn kind_of(path: &str) -> Option<$crate::messages::fields::FieldKind> {
                let (head, rest) = $crate::messages::fields::split_path(path);
                match head {
                    $(stringify!($f) => $crate::messages::fields::kind_via(|s: &$ty| &s.$f, rest),)*
                    _ => None,
                }
            }
            fn leaf_paths(prefix: &str, out: &mut Vec<String>) {
                $(
                    let p = if prefix.is_empty() { stringify!($f).to_string() }
                            else { format!("{}.{}", prefix, stringify!($f)) };
                    $crate::messages::fields::paths_via(|s: &$ty| &s.$f, &p, out);
                )*
            }
        }
    };
}
pub(crate) use impl_fields;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_path_handles_dots_and_indexes() {
        assert_eq!(split_path("linear.x"), ("linear", "x"));
        assert_eq!(split_path("position[2]"), ("position", "[2]"));
        assert_eq!(split_path("data"), ("data", ""));
        assert_eq!(split_index("[2].x"), Some((2, "x")));
        assert_eq!(split_index("[a]"), None);
    }

    #[test]
    fn integer_leaf_rejects_out_of_range() {
        let mut v: u8 = 0;
        assert!(v.set_path("", &Scalar::Int(300)).is_err());
        v.set_path("", &Scalar::Str("7".into())).unwrap();
        assert_eq!(v, 7);
    }

    #[test]
    fn vec_leaf_grows_but_is_bounded() {
        let mut v: Vec<f64> = Vec::new();
        v.set_path("[2]", &Scalar::Float(1.5)).unwrap();
        assert_eq!(v, vec![0.0, 0.0, 1.5]);
        assert_eq!(
            v.set_path("[300]", &Scalar::Float(1.0)),
            Err(FieldError::Index(300))
        );
    }
}
