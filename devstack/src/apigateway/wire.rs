//! The event as API Gateway puts it on the wire, written once from its type.
//!
//! `aws_lambda_events` writes an absent field as `null` and every query
//! parameter as a list. API Gateway leaves absent fields out (a handler that
//! asks `'body' in event` sees the difference), leaves out empty top-level
//! objects, and sends the last value of each parameter in
//! `queryStringParameters` (all of them in `multiValueQueryStringParameters`).
//! The stack used to get there through a `serde_json::Value` — build the
//! tree, prune it, write it, drop it: 6 % of the stack's CPU under a burst of
//! handshakes. [`Pruning`] applies the same rules while serde walks the typed
//! event, so the JSON text is written directly.

use serde::ser::{self, Serialize, Serializer};
use serde_json::Value;

/// The field whose parameters API Gateway sends single-valued.
const SINGLE_VALUED_QUERY: &str = "queryStringParameters";

/// The event's JSON text, as API Gateway sends it.
pub(super) fn to_wire<T: Serialize>(event: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(2048);
    event.serialize(Pruning::top(&mut serde_json::Serializer::new(&mut out)))?;
    Ok(out)
}

/// The same, as a JSON value (for an event built into another one).
pub(super) fn to_wire_value<T: Serialize>(event: &T) -> serde_json::Result<Value> {
    event.serialize(Pruning::top(serde_json::value::Serializer))
}

/// A serializer that writes to `inner` what API Gateway would send: `null`
/// object fields and map entries left out at every depth; at the top level
/// (`top`) also fields that are empty objects, and
/// [`SINGLE_VALUED_QUERY`] with the last value of each parameter.
struct Pruning<S> {
    inner: S,
    top: bool,
}

impl<S> Pruning<S> {
    fn top(inner: S) -> Self {
        Pruning { inner, top: true }
    }

    fn nested(inner: S) -> Self {
        Pruning { inner, top: false }
    }
}

/// A value serialized through a nested [`Pruning`].
struct Pruned<'a, T: ?Sized>(&'a T);

impl<T: Serialize + ?Sized> Serialize for Pruned<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(Pruning::nested(serializer))
    }
}

/// One of `inner`'s compound serializers, its members pruned.
struct Compound<C> {
    inner: C,
    top: bool,
}

/// Calls `$each!` with the serializer methods that take one primitive.
macro_rules! primitives {
    ($each:ident) => {
        $each!(
            serialize_bool(bool),
            serialize_i8(i8),
            serialize_i16(i16),
            serialize_i32(i32),
            serialize_i64(i64),
            serialize_i128(i128),
            serialize_u8(u8),
            serialize_u16(u16),
            serialize_u32(u32),
            serialize_u64(u64),
            serialize_u128(u128),
            serialize_f32(f32),
            serialize_f64(f64),
            serialize_char(char),
            serialize_str(&str),
            serialize_bytes(&[u8]),
        );
    };
}

// After `primitives!`, which the probe's serializer uses too.
mod probe;
use probe::is_absent;

macro_rules! forward {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method(self, v: $ty) -> Result<S::Ok, S::Error> {
            self.inner.$method(v)
        })*
    };
}

impl<S: Serializer> Serializer for Pruning<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Compound<S::SerializeSeq>;
    type SerializeTuple = Compound<S::SerializeTuple>;
    type SerializeTupleStruct = Compound<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Compound<S::SerializeTupleVariant>;
    type SerializeMap = Compound<S::SerializeMap>;
    type SerializeStruct = Compound<S::SerializeStruct>;
    type SerializeStructVariant = Compound<S::SerializeStructVariant>;

    primitives!(forward);

    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.inner.serialize_none()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit()
    }

    fn serialize_unit_struct(self, name: &'static str) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit_struct(name)
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit_variant(name, index, variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.inner
            .serialize_newtype_variant(name, index, variant, &Pruned(value))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        let inner = self.inner.serialize_seq(len)?;
        Ok(Compound { inner, top: false })
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        let inner = self.inner.serialize_tuple(len)?;
        Ok(Compound { inner, top: false })
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        let inner = self.inner.serialize_tuple_struct(name, len)?;
        Ok(Compound { inner, top: false })
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        let inner = self
            .inner
            .serialize_tuple_variant(name, index, variant, len)?;
        Ok(Compound { inner, top: false })
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        let inner = self.inner.serialize_map(len)?;
        Ok(Compound {
            inner,
            top: self.top,
        })
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        let inner = self.inner.serialize_struct(name, len)?;
        Ok(Compound {
            inner,
            top: self.top,
        })
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        let inner = self
            .inner
            .serialize_struct_variant(name, index, variant, len)?;
        Ok(Compound { inner, top: false })
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! elements {
    ($($trait:ident :: $method:ident),* $(,)?) => {
        $(impl<C: ser::$trait> ser::$trait for Compound<C> {
            type Ok = C::Ok;
            type Error = C::Error;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
                self.inner.$method(&Pruned(value))
            }

            fn end(self) -> Result<C::Ok, C::Error> {
                self.inner.end()
            }
        })*
    };
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

impl<C: ser::SerializeMap> ser::SerializeMap for Compound<C> {
    type Ok = C::Ok;
    type Error = C::Error;

    fn serialize_entry<K, V>(&mut self, key: &K, value: &V) -> Result<(), C::Error>
    where
        K: Serialize + ?Sized,
        V: Serialize + ?Sized,
    {
        if is_absent(value, self.top) {
            return Ok(());
        }
        self.inner.serialize_entry(key, &Pruned(value))
    }

    // A map that hands over its key and value apart (none of the event's
    // does) has its entries kept whole: by the time the value shows, the
    // key is written.
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), C::Error> {
        self.inner.serialize_key(key)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        self.inner.serialize_value(&Pruned(value))
    }

    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

// Struct variants are never at the top (`top` is false for them).
macro_rules! fields {
    ($($trait:ident),* $(,)?) => {
        $(impl<C: ser::$trait> ser::$trait for Compound<C> {
            type Ok = C::Ok;
            type Error = C::Error;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), C::Error> {
                if self.top && key == SINGLE_VALUED_QUERY {
                    let last = last_of_each(value).map_err(ser::Error::custom)?;
                    if is_absent(&last, true) {
                        return Ok(());
                    }
                    return self.inner.serialize_field(key, &Pruned(&last));
                }
                if is_absent(value, self.top) {
                    return Ok(());
                }
                self.inner.serialize_field(key, &Pruned(value))
            }

            fn end(self) -> Result<C::Ok, C::Error> {
                self.inner.end()
            }
        })*
    };
}

fields!(SerializeStruct, SerializeStructVariant);

/// Query parameters (name → list) with each list replaced by its last
/// value (`null` for an empty list, left out when written).
fn last_of_each<T: Serialize + ?Sized>(params: &T) -> serde_json::Result<Value> {
    let mut value = serde_json::to_value(params)?;
    keep_last_values(&mut value);
    Ok(value)
}

/// Replaces each list in the object `params` (name → list) by its last
/// value (`null` for an empty list), as API Gateway sends
/// `queryStringParameters` — in the route events and the authorizer's.
pub(super) fn keep_last_values(params: &mut Value) {
    if let Value::Object(params) = params {
        for value in params.values_mut() {
            if let Value::Array(values) = value {
                *value = values.pop().unwrap_or(Value::Null);
            }
        }
    }
}

#[cfg(test)]
mod tests;
