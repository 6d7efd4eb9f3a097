//! The fault plan: what the control has armed and the services consult at
//! the one point each fault belongs to — `@connections` before it answers a
//! post, the API layer before it invokes a route, the local Lambda when it
//! hands an event to a process. Each armed fault is used up by the requests
//! it answers (the next N), so a test arms exactly what it provokes.
//!
//! With nothing armed a consultation is one uncontended lock and an empty
//! map lookup: the plan costs nothing measurable on the request path.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The most requests one fault may be armed for: a plan is for provoking a
/// case, not for running a stack in a broken state.
pub const MAX_COUNT: u32 = 10_000;
/// The longest delay a route fault may add (API Gateway's integration
/// timeout is 29 s; nothing longer is observable through it).
pub const MAX_DELAY: Duration = Duration::from_secs(29);

/// What `@connections` answers a post to a connection instead of sending it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PostFault {
    /// 410 `GoneException`, as for a connection that has ended.
    Gone,
    /// 429 `LimitExceededException`, as over the account's request rate.
    Throttled,
}

/// What happens to an invocation of a route instead of (or before) running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum RouteFault {
    /// The invocation fails as a function error would, without reaching the function.
    Fail,
    /// The invocation waits this long, then runs.
    Delay {
        #[serde(rename = "ms")]
        millis: u64,
    },
}

/// A fault and how many more requests it answers.
#[derive(Debug, Clone, Copy)]
struct Armed<T> {
    fault: T,
    remaining: u32,
}

/// Faults armed by the control; shared by every service that consults it.
#[derive(Debug, Default)]
pub struct FaultPlan {
    posts: Mutex<HashMap<String, Armed<PostFault>>>,
    routes: Mutex<HashMap<String, Armed<RouteFault>>>,
    kills: Mutex<u32>,
}

/// Why a fault could not be armed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArmError {
    #[error("count must be between 1 and {MAX_COUNT}, not {0}")]
    Count(u32),
    #[error("a delay may be at most {max} ms (API Gateway's 29 s integration timeout), not {0} ms", max = MAX_DELAY.as_millis())]
    Delay(u64),
    #[error("{0} must not be empty")]
    Empty(&'static str),
}

fn check_count(count: u32) -> Result<(), ArmError> {
    if (1..=MAX_COUNT).contains(&count) {
        Ok(())
    } else {
        Err(ArmError::Count(count))
    }
}

/// Takes one use of the fault armed under `key`, dropping it when used up.
fn take<T: Copy>(map: &Mutex<HashMap<String, Armed<T>>>, key: &str) -> Option<T> {
    let mut map = map.lock();
    let armed = map.get_mut(key)?;
    let fault = armed.fault;
    armed.remaining -= 1;
    if armed.remaining == 0 {
        map.remove(key);
    }
    Some(fault)
}

impl FaultPlan {
    /// The next `count` posts to `connection_id` get `fault` (replacing what was armed for it).
    pub fn arm_post(
        &self,
        connection_id: &str,
        fault: PostFault,
        count: u32,
    ) -> Result<(), ArmError> {
        check_count(count)?;
        if connection_id.is_empty() {
            return Err(ArmError::Empty("connection"));
        }
        self.posts.lock().insert(
            connection_id.to_owned(),
            Armed {
                fault,
                remaining: count,
            },
        );
        Ok(())
    }

    /// The next `count` invocations of `route` get `fault` (replacing what was armed for it).
    pub fn arm_route(&self, route: &str, fault: RouteFault, count: u32) -> Result<(), ArmError> {
        check_count(count)?;
        if route.is_empty() {
            return Err(ArmError::Empty("route"));
        }
        if let RouteFault::Delay { millis } = fault
            && Duration::from_millis(millis) > MAX_DELAY
        {
            return Err(ArmError::Delay(millis));
        }
        self.routes.lock().insert(
            route.to_owned(),
            Armed {
                fault,
                remaining: count,
            },
        );
        Ok(())
    }

    /// The function processes of the next `count` invocations are killed
    /// once the event is handed to them.
    pub fn arm_kill(&self, count: u32) -> Result<(), ArmError> {
        check_count(count)?;
        *self.kills.lock() = count;
        Ok(())
    }

    /// Disarms everything.
    pub fn clear(&self) {
        self.posts.lock().clear();
        self.routes.lock().clear();
        *self.kills.lock() = 0;
    }

    /// For `@connections`: the fault this post to `connection_id` gets, if any.
    pub fn take_post(&self, connection_id: &str) -> Option<PostFault> {
        take(&self.posts, connection_id)
    }

    /// For the API layer: the fault this invocation of `route` gets, if any.
    pub fn take_route(&self, route: &str) -> Option<RouteFault> {
        take(&self.routes, route)
    }

    /// For the local Lambda: whether this invocation's process is to be killed.
    pub fn take_kill(&self) -> bool {
        let mut kills = self.kills.lock();
        if *kills == 0 {
            return false;
        }
        *kills -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_fault_answers_the_next_n_posts_to_its_connection_only() {
        let plan = FaultPlan::default();
        plan.arm_post("A", PostFault::Gone, 2).expect("armed");
        assert_eq!(plan.take_post("B"), None);
        assert_eq!(plan.take_post("A"), Some(PostFault::Gone));
        assert_eq!(plan.take_post("A"), Some(PostFault::Gone));
        assert_eq!(plan.take_post("A"), None, "used up after 2");
    }

    #[test]
    fn route_faults_and_kills_are_used_up() {
        let plan = FaultPlan::default();
        plan.arm_route("ping", RouteFault::Delay { millis: 5 }, 1)
            .expect("armed");
        plan.arm_kill(1).expect("armed");
        assert_eq!(plan.take_route("sendmessage"), None);
        assert_eq!(
            plan.take_route("ping"),
            Some(RouteFault::Delay { millis: 5 })
        );
        assert_eq!(plan.take_route("ping"), None);
        assert!(plan.take_kill());
        assert!(!plan.take_kill());
    }

    #[test]
    fn bounds_are_named_and_clear_disarms() {
        let plan = FaultPlan::default();
        assert_eq!(plan.arm_kill(0), Err(ArmError::Count(0)));
        assert!(
            plan.arm_post("A", PostFault::Gone, MAX_COUNT + 1)
                .expect_err("over the bound")
                .to_string()
                .contains("10000")
        );
        assert_eq!(
            plan.arm_route("ping", RouteFault::Delay { millis: 30_000 }, 1),
            Err(ArmError::Delay(30_000))
        );
        assert_eq!(
            plan.arm_route("", RouteFault::Fail, 1),
            Err(ArmError::Empty("route"))
        );
        plan.arm_route("ping", RouteFault::Fail, 3).expect("armed");
        plan.clear();
        assert_eq!(plan.take_route("ping"), None);
    }
}
