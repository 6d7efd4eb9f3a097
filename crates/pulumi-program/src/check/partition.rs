//! AWS host names from the partition (issue 23's review): `amazonaws.com` is
//! the DNS suffix of the `aws` partition only (China's is
//! `amazonaws.com.cn`), so every host name the program builds ends with
//! `getPartition`'s `dnsSuffix`. Service principals (`lambda.amazonaws.com`)
//! are names IAM knows, not host names, and stay as written.

use serde_yaml_ng::Value;

use super::Checker;

const LITERAL_SUFFIX: &str = "amazonaws.com";

impl Checker<'_> {
    /// No resource property holds a host name under a literal `amazonaws.com`.
    pub(super) fn host_names_from_the_partition(&mut self) {
        let program = self.program;
        for resource in program.resources() {
            if let Some(properties) = resource.properties {
                let at = format!("resources.{}.properties", resource.name);
                for (key, value) in properties {
                    let key = key.as_str().unwrap_or("?");
                    self.literal_suffix(value, &format!("{at}.{key}"), key);
                }
            }
        }
    }

    fn literal_suffix(&mut self, value: &Value, at: &str, key: &str) {
        match value {
            Value::String(s) if s.contains(LITERAL_SUFFIX) && !is_service_principal(key, s) => {
                self.report(
                    at,
                    format!(
                        "`{s}` writes {LITERAL_SUFFIX}, the aws partition's DNS suffix only: use getPartition's dnsSuffix (${{dnsSuffix}})"
                    ),
                );
            }
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.literal_suffix(item, &format!("{at}[{i}]"), key);
                }
            }
            Value::Mapping(map) => {
                for (k, v) in map {
                    let k = k.as_str().unwrap_or("?");
                    self.literal_suffix(v, &format!("{at}.{k}"), k);
                }
            }
            _ => {}
        }
    }
}

/// A service principal: the whole value `<service>.amazonaws.com`, as the
/// `Service` of a policy's `Principal` or a permission's `principal`.
fn is_service_principal(key: &str, value: &str) -> bool {
    matches!(key, "Service" | "principal")
        && value.strip_suffix(".amazonaws.com").is_some_and(|service| {
            !service.is_empty()
                && service
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '.' || c == '-')
        })
}
