//! JSON objects only where the API expects an object.
//!
//! serde's derived `Deserialize` for a struct also accepts a JSON array of its fields in order,
//! so `[null, null]` would be a valid `PatchBody`. [`Object`] asks the deserializer for a map
//! and hands that map to the struct's own `Deserialize`: one pass over the input, the struct's
//! rules (`deny_unknown_fields`, defaults) unchanged, and anything but an object answered with
//! "expected a JSON object".

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// A `T` that was written as a JSON object.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Object<T>(pub(crate) T);

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ObjectVisitor(PhantomData)).map(Object)
    }
}

/// For `#[serde(deserialize_with)]` on a `Vec` of structs: every element must be an object.
pub(crate) fn vec_of_objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Vec::<Object<T>>::deserialize(d).map(|v| v.into_iter().map(|Object(t)| t).collect())
}

/// For `#[serde(deserialize_with)]` on an `Option` of a struct: an object or null (serde's
/// derive would also take an array of the fields, `"fusion": [null, null]`).
pub(crate) fn option_of_object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<Object<T>>::deserialize(d).map(|o| o.map(|Object(t)| t))
}
