//! Sign-in on `$connect`, as the local stack needs it: whether the route runs
//! the program's Lambda REQUEST authorizer, the query-string parameter it
//! reads, how long API Gateway keeps an answer, and the function it invokes.

use serde_yaml_ng::Value;

use super::reader::Reader;
use super::{AUTHORIZER, FUNCTION, ROUTE, at, function_spec, invalid, refers_to};
use crate::program::Resource;
use crate::{AsyncInvokeSpec, Error, SignInSpec};

/// The only identity source the local stack plays (and a browser can send).
const QUERY_STRING: &str = "route.request.querystring.";
/// API Gateway's default `authorizerResultTtlInSeconds`.
const DEFAULT_TTL_SECS: u32 = 300;

/// The `$connect` route's authorizer, or `None` when it names none and the
/// route runs without one.
pub(super) fn spec(
    reader: &Reader<'_>,
    resources: &[Resource<'_>],
    api: &Resource<'_>,
) -> Result<Option<SignInSpec>, Error> {
    let connect = resources.iter().find(|r| {
        r.token == ROUTE
            && refers_to(prop(r, "apiId"), api.name, "id")
            && matches!(prop(r, "routeKey"), Some(Value::String(k)) if k == "$connect")
    });
    let Some(connect) = connect else {
        return Ok(None);
    };
    let authorization = reader
        .optional_string(connect, "authorizationType")?
        .unwrap_or_else(|| "NONE".into());
    let enabled = match authorization.as_str() {
        "CUSTOM" => true,
        "NONE" => false,
        other => {
            return Err(invalid(
                format!("{}.authorizationType", at(connect)),
                format!(
                    "is {other}: the local stack plays NONE and CUSTOM (a Lambda REQUEST authorizer)"
                ),
            ));
        }
    };
    let authorizer = resources
        .iter()
        .find(|a| a.token == AUTHORIZER && refers_to(prop(connect, "authorizerId"), a.name, "id"));
    let Some(authorizer) = authorizer else {
        if enabled {
            return Err(invalid(
                format!("{}.authorizerId", at(connect)),
                format!(
                    "must be ${{<authorizer>.id}} of an {AUTHORIZER} of this program when authorizationType is CUSTOM"
                ),
            ));
        }
        return Ok(None);
    };
    let kind = reader.string(authorizer, "authorizerType")?;
    if kind != "REQUEST" {
        return Err(invalid(
            format!("{}.authorizerType", at(authorizer)),
            format!("is {kind}: a WebSocket API's authorizer is a Lambda REQUEST authorizer"),
        ));
    }
    let sources_at = format!("{}.identitySources", at(authorizer));
    let sources = match prop(authorizer, "identitySources") {
        Some(v) => reader.known(v, &sources_at)?,
        None => Value::Null,
    };
    let token_parameter = match sources.as_sequence().map(Vec::as_slice) {
        Some([Value::String(source)]) if source.len() > QUERY_STRING.len() => source
            .strip_prefix(QUERY_STRING)
            .map(str::to_string),
        _ => None,
    }
    .ok_or_else(|| {
        invalid(
            &sources_at,
            format!("must be one {QUERY_STRING}<parameter>: a browser cannot set a handshake's headers, and the local stack plays the query string"),
        )
    })?;
    let function = resources
        .iter()
        .find(|f| {
            f.token == FUNCTION && refers_to(prop(authorizer, "authorizerUri"), f.name, "invokeArn")
        })
        .ok_or_else(|| {
            invalid(
                format!("{}.authorizerUri", at(authorizer)),
                format!("must be ${{<function>.invokeArn}} of a {FUNCTION} of this program"),
            )
        })?;
    Ok(Some(SignInSpec {
        resource: authorizer.name.to_string(),
        enabled,
        token_parameter,
        result_ttl_secs: reader
            .optional_number(authorizer, "authorizerResultTtlInSeconds")?
            .unwrap_or(DEFAULT_TTL_SECS),
        function: function_spec(reader, function, AsyncInvokeSpec::default())?,
    }))
}

fn prop<'r>(resource: &'r Resource<'_>, name: &str) -> Option<&'r Value> {
    resource.properties.and_then(|p| p.get(name))
}
