//! Whether a value is absent — written as `null` (or, at the event's top
//! level, as `{}`) — found without writing it: a serializer that says yes
//! for those and stops at the first sign of anything else.

use serde::ser::{self, Serialize, Serializer};

/// Whether `value` would be written as `null` (or, with `empty_object`, as
/// `{}`): serialized into [`Probe`], which stops at the first sign of
/// anything else, so a present value costs one call.
pub(super) fn is_absent<T: Serialize + ?Sized>(value: &T, empty_object: bool) -> bool {
    value.serialize(Probe { empty_object }).is_ok()
}

/// A serializer that answers `Ok` for what is absent and fails with
/// [`Present`] at once for anything else.
struct Probe {
    empty_object: bool,
}

#[derive(Debug)]
struct Present;

impl std::fmt::Display for Present {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("present")
    }
}

impl std::error::Error for Present {}

impl ser::Error for Present {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Present
    }
}

/// The compound a probe enters only for an empty object: any member makes
/// it present.
struct EmptyObject;

macro_rules! present {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method(self, _: $ty) -> Result<(), Present> {
            Err(Present)
        })*
    };
}

impl Serializer for Probe {
    type Ok = ();
    type Error = Present;
    type SerializeSeq = ser::Impossible<(), Present>;
    type SerializeTuple = ser::Impossible<(), Present>;
    type SerializeTupleStruct = ser::Impossible<(), Present>;
    type SerializeTupleVariant = ser::Impossible<(), Present>;
    type SerializeMap = EmptyObject;
    type SerializeStruct = EmptyObject;
    type SerializeStructVariant = ser::Impossible<(), Present>;

    primitives!(present);

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), Present> {
        Err(Present)
    }

    fn serialize_none(self) -> Result<(), Present> {
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Present> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Present> {
        Ok(())
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Present> {
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Present> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Present> {
        Err(Present)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Present> {
        Err(Present)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Present> {
        Err(Present)
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Present> {
        Err(Present)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Present> {
        Err(Present)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<EmptyObject, Present> {
        match (self.empty_object, len) {
            (true, Some(0)) => Ok(EmptyObject),
            _ => Err(Present),
        }
    }

    fn serialize_struct(self, _: &'static str, len: usize) -> Result<EmptyObject, Present> {
        match (self.empty_object, len) {
            (true, 0) => Ok(EmptyObject),
            _ => Err(Present),
        }
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Present> {
        Err(Present)
    }
}

impl ser::SerializeMap for EmptyObject {
    type Ok = ();
    type Error = Present;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, _: &T) -> Result<(), Present> {
        Err(Present)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, _: &T) -> Result<(), Present> {
        Err(Present)
    }

    fn end(self) -> Result<(), Present> {
        Ok(())
    }
}

impl ser::SerializeStruct for EmptyObject {
    type Ok = ();
    type Error = Present;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        _: &T,
    ) -> Result<(), Present> {
        Err(Present)
    }

    fn end(self) -> Result<(), Present> {
        Ok(())
    }
}
