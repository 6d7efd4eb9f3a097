//! Reads a resource's properties as the types the local stack needs,
//! evaluated against the config: a value that is unknown until deployment,
//! or of the wrong shape, is an error naming its path in `Pulumi.yaml`.

use super::*;

/// Evaluates property values for [`super::build`].
pub(super) struct Reader<'a> {
    pub(super) eval: &'a Evaluator<'a>,
}

impl Reader<'_> {
    pub(super) fn known(&self, value: &Value, path: &str) -> Result<Value, Error> {
        match self.eval.eval(value) {
            Evaluated::Known(value) => Ok(value),
            Evaluated::Template(parts) => Err(invalid(
                path,
                format!(
                    "depends on resource outputs ({}), unknown before deployment",
                    refs(&parts)
                ),
            )),
            Evaluated::Unknown(why) => Err(invalid(path, why)),
        }
    }

    pub(super) fn known_string(&self, value: &Value, path: &str) -> Result<String, Error> {
        match self.known(value, path)? {
            Value::String(s) => Ok(s),
            other => Err(invalid(path, format!("expected a string, found {other:?}"))),
        }
    }

    pub(super) fn bool(&self, value: &Value, path: &str) -> Result<bool, Error> {
        match self.known(value, path)? {
            Value::Bool(b) => Ok(b),
            other => Err(invalid(
                path,
                format!("expected a boolean, found {other:?}"),
            )),
        }
    }

    pub(super) fn number<T: TryFrom<u64>>(&self, value: &Value, path: &str) -> Result<T, Error> {
        let value = self.known(value, path)?;
        value
            .as_u64()
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| {
                invalid(
                    path,
                    format!("expected a non-negative integer in range, found {value:?}"),
                )
            })
    }

    pub(super) fn float(&self, value: &Value, path: &str) -> Result<f64, Error> {
        let value = self.known(value, path)?;
        value
            .as_f64()
            .ok_or_else(|| invalid(path, format!("expected a number, found {value:?}")))
    }

    pub(super) fn template(&self, value: &Value, path: &str) -> Result<Template, Error> {
        match self.eval.eval(value) {
            Evaluated::Known(value) => match crate::eval::scalar_text(&value) {
                Some(text) => Ok(Template(vec![Part::Text(text)])),
                None => Err(invalid(path, "is not a string")),
            },
            Evaluated::Template(parts) => Ok(Template(parts)),
            Evaluated::Unknown(why) => Err(invalid(path, why)),
        }
    }

    pub(super) fn property<'r>(
        &self,
        resource: &'r Resource<'_>,
        name: &str,
    ) -> Result<&'r Value, Error> {
        resource
            .properties
            .and_then(|p| p.get(name))
            .ok_or_else(|| invalid(format!("{}.{name}", at(resource)), "is missing"))
    }

    pub(super) fn string(&self, resource: &Resource<'_>, name: &str) -> Result<String, Error> {
        self.known_string(
            self.property(resource, name)?,
            &format!("{}.{name}", at(resource)),
        )
    }

    pub(super) fn optional_string(
        &self,
        resource: &Resource<'_>,
        name: &str,
    ) -> Result<Option<String>, Error> {
        match resource.properties.and_then(|p| p.get(name)) {
            Some(v) => self
                .known_string(v, &format!("{}.{name}", at(resource)))
                .map(Some),
            None => Ok(None),
        }
    }

    pub(super) fn optional_bool(
        &self,
        resource: &Resource<'_>,
        name: &str,
    ) -> Result<Option<bool>, Error> {
        match resource.properties.and_then(|p| p.get(name)) {
            Some(v) => self.bool(v, &format!("{}.{name}", at(resource))).map(Some),
            None => Ok(None),
        }
    }

    pub(super) fn optional_number<T: TryFrom<u64>>(
        &self,
        resource: &Resource<'_>,
        name: &str,
    ) -> Result<Option<T>, Error> {
        match resource.properties.and_then(|p| p.get(name)) {
            Some(v) => self
                .number(v, &format!("{}.{name}", at(resource)))
                .map(Some),
            None => Ok(None),
        }
    }
}
