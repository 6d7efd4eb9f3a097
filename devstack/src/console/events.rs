//! The stack's event bus: what happens inside the topology, as typed events.
//!
//! The edge, the API layer and the Lambda pool each get an [`EventBus`] and
//! publish a [`StackEvent`] where they already log one (a connection opened,
//! a message routed, a WAF block, a throttled message). The bus numbers each
//! event, keeps running counts (a [`Snapshot`], so a console opened late sees
//! the current state) and broadcasts it to every console watching. Publishing
//! never blocks and never fails: with nobody watching, the event only updates
//! the counts.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// How many events a slow console may fall behind before it is sent a fresh
/// snapshot instead of the events it missed.
const CHANNEL_CAPACITY: usize = 1024;
/// How many recent events a snapshot carries.
pub const RECENT_EVENTS: usize = 50;

/// Something that happened inside the local stack. Serialised with a `type`
/// tag, in camelCase, as the console page reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum StackEvent {
    /// The API layer accepted a WebSocket connection (`$connect` succeeded).
    #[serde(rename_all = "camelCase")]
    ConnectionOpened {
        connection_id: String,
        source_ip: String,
    },
    /// A connection ended; `status_code` is its `disconnectStatusCode`.
    #[serde(rename_all = "camelCase")]
    ConnectionClosed {
        connection_id: String,
        status_code: u16,
        reason: String,
        duration_ms: u64,
    },
    /// The API layer refused a handshake (no key: 403; `$connect` failed: 500; throttled: 429).
    #[serde(rename_all = "camelCase")]
    HandshakeRefused {
        status: u16,
        reason: String,
        source_ip: String,
    },
    /// A route's integration ran: the function was invoked for `route`.
    /// `outcome` is `ok` or why the invocation failed.
    #[serde(rename_all = "camelCase")]
    Invocation {
        connection_id: String,
        route: String,
        outcome: String,
        latency_ms: u64,
    },
    /// The web ACL's rate-based rule blocked a handshake at the edge.
    #[serde(rename_all = "camelCase")]
    WafBlocked { rule: String, client_ip: String },
    /// Stage throttling refused a message (`Too Many Requests`).
    #[serde(rename_all = "camelCase")]
    Throttled {
        connection_id: String,
        route: String,
    },
    /// A function process started (a cold start), taking `init_ms` to ask for its first event.
    #[serde(rename_all = "camelCase")]
    ProcessStarted { pid: u32, init_ms: u64 },
    /// A function process ended; `reason` says how.
    #[serde(rename_all = "camelCase")]
    ProcessExited { pid: u32, reason: String },
}

/// One published event with its place in the sequence and its time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// 1 for the first event; a snapshot with `seq` n includes events 1..=n.
    pub seq: u64,
    /// RFC 3339, milliseconds, UTC.
    pub at: String,
    #[serde(flatten)]
    pub event: StackEvent,
}

/// An open connection, as the snapshot lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenConnection {
    pub connection_id: String,
    pub source_ip: String,
    pub opened_at: String,
}

/// The open connections, oldest first, found by id without a scan: with
/// 10,000 connections, a close under the bus's lock is a map lookup, not a
/// walk of the list. Serialised as the list the console reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenConnections {
    /// By the sequence number of the event that opened them.
    by_seq: BTreeMap<u64, OpenConnection>,
    seq_of: HashMap<String, u64>,
}

impl OpenConnections {
    fn open(&mut self, seq: u64, connection: OpenConnection) {
        if let Some(old) = self.seq_of.insert(connection.connection_id.clone(), seq) {
            self.by_seq.remove(&old);
        }
        self.by_seq.insert(seq, connection);
    }

    fn close(&mut self, connection_id: &str) {
        if let Some(seq) = self.seq_of.remove(connection_id) {
            self.by_seq.remove(&seq);
        }
    }

    pub fn len(&self) -> usize {
        self.by_seq.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }

    /// Oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &OpenConnection> {
        self.by_seq.values()
    }
}

impl Serialize for OpenConnections {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for OpenConnections {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let list = Vec::<OpenConnection>::deserialize(deserializer)?;
        let mut open = OpenConnections::default();
        for (seq, connection) in (0u64..).zip(list) {
            open.open(seq, connection);
        }
        Ok(open)
    }
}

/// Invocations of one route.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteCounts {
    pub count: u64,
    pub ok: u64,
    pub failed: u64,
    pub total_latency_ms: u64,
    pub last_latency_ms: u64,
}

/// The stack's state as the events tell it: what a console opened late needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// The last event counted in here (0: none yet).
    pub seq: u64,
    /// Open connections, oldest first.
    pub connections: OpenConnections,
    pub invocations: u64,
    pub invocations_by_route: BTreeMap<String, RouteCounts>,
    pub waf_blocks: u64,
    pub throttled: u64,
    pub handshakes_refused: u64,
    /// Live function processes (pids).
    pub processes: Vec<u32>,
    pub cold_starts: u64,
    /// The last [`RECENT_EVENTS`] events, oldest first.
    pub recent: VecDeque<Envelope>,
}

impl Snapshot {
    /// Counts `envelope` in.
    fn apply(&mut self, envelope: &Envelope) {
        self.seq = envelope.seq;
        match &envelope.event {
            StackEvent::ConnectionOpened {
                connection_id,
                source_ip,
            } => self.connections.open(
                envelope.seq,
                OpenConnection {
                    connection_id: connection_id.clone(),
                    source_ip: source_ip.clone(),
                    opened_at: envelope.at.clone(),
                },
            ),
            StackEvent::ConnectionClosed { connection_id, .. } => {
                self.connections.close(connection_id)
            }
            StackEvent::HandshakeRefused { .. } => self.handshakes_refused += 1,
            StackEvent::Invocation {
                route,
                outcome,
                latency_ms,
                ..
            } => {
                self.invocations += 1;
                let counts = self.invocations_by_route.entry(route.clone()).or_default();
                counts.count += 1;
                if outcome == "ok" {
                    counts.ok += 1;
                } else {
                    counts.failed += 1;
                }
                counts.total_latency_ms += latency_ms;
                counts.last_latency_ms = *latency_ms;
            }
            StackEvent::WafBlocked { .. } => self.waf_blocks += 1,
            StackEvent::Throttled { .. } => self.throttled += 1,
            StackEvent::ProcessStarted { pid, .. } => {
                self.cold_starts += 1;
                self.processes.push(*pid);
            }
            StackEvent::ProcessExited { pid, .. } => self.processes.retain(|p| p != pid),
        }
        if self.recent.len() == RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back(envelope.clone());
    }
}

/// The publishing side, cheap to clone: one per stack, handed to each part.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<Snapshot>,
    sender: broadcast::Sender<Envelope>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new()
    }
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("seq", &self.state().seq)
            .field("watchers", &self.inner.sender.receiver_count())
            .finish()
    }
}

impl EventBus {
    pub fn new() -> Self {
        EventBus {
            inner: Arc::new(Inner {
                state: Mutex::new(Snapshot::default()),
                sender: broadcast::channel(CHANNEL_CAPACITY).0,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, Snapshot> {
        // The snapshot is updated in one step; a panic elsewhere cannot leave it half-written.
        self.inner.state.lock()
    }

    /// Counts `event` and sends it to every watcher. Counting and sending
    /// happen under one lock, so a [`subscribe`](Self::subscribe) sees each
    /// event either in its snapshot or on its receiver, never both or neither.
    pub fn publish(&self, event: StackEvent) {
        let mut state = self.state();
        let envelope = Envelope {
            seq: state.seq + 1,
            at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            event,
        };
        state.apply(&envelope);
        // An error only means nobody is watching.
        let _ = self.inner.sender.send(envelope);
    }

    /// The current counts.
    pub fn snapshot(&self) -> Snapshot {
        self.state().clone()
    }

    /// The current counts and a receiver of every event after them.
    pub fn subscribe(&self) -> (Snapshot, broadcast::Receiver<Envelope>) {
        let state = self.state();
        (state.clone(), self.inner.sender.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn invocation(route: &str, outcome: &str, latency_ms: u64) -> StackEvent {
        StackEvent::Invocation {
            connection_id: "c1".into(),
            route: route.into(),
            outcome: outcome.into(),
            latency_ms,
        }
    }

    #[test]
    fn events_are_tagged_camel_case_json_with_their_sequence_and_time() {
        let bus = EventBus::new();
        let (_, mut receiver) = bus.subscribe();
        bus.publish(StackEvent::WafBlocked {
            rule: "rate-limit-per-ip".into(),
            client_ip: "127.0.0.7".into(),
        });
        let envelope = receiver.try_recv().expect("the event is broadcast");
        let json = serde_json::to_value(&envelope).expect("serialises");
        assert_eq!(json["seq"], 1);
        assert_eq!(json["type"], "wafBlocked");
        assert_eq!(json["clientIp"], "127.0.0.7");
        assert_eq!(json["rule"], "rate-limit-per-ip");
        chrono::DateTime::parse_from_rfc3339(json["at"].as_str().expect("at")).expect("RFC 3339");
        let back: Envelope = serde_json::from_value(json).expect("round trip");
        assert_eq!(back, envelope);
    }

    #[test]
    fn the_snapshot_counts_what_the_events_say() {
        let bus = EventBus::new();
        bus.publish(StackEvent::ConnectionOpened {
            connection_id: "a".into(),
            source_ip: "127.0.0.1".into(),
        });
        bus.publish(StackEvent::ConnectionOpened {
            connection_id: "b".into(),
            source_ip: "127.0.0.1".into(),
        });
        bus.publish(invocation("ping", "ok", 4));
        bus.publish(invocation("ping", "ok", 6));
        bus.publish(invocation("sendmessage", "crashed", 9));
        bus.publish(StackEvent::Throttled {
            connection_id: "a".into(),
            route: "ping".into(),
        });
        bus.publish(StackEvent::ConnectionClosed {
            connection_id: "a".into(),
            status_code: 1000,
            reason: String::new(),
            duration_ms: 10,
        });
        bus.publish(StackEvent::ProcessStarted { pid: 7, init_ms: 3 });
        bus.publish(StackEvent::ProcessStarted { pid: 8, init_ms: 3 });
        bus.publish(StackEvent::ProcessExited {
            pid: 7,
            reason: "crashed".into(),
        });

        let snapshot = bus.snapshot();
        assert_eq!(snapshot.seq, 10);
        let open: Vec<&str> = snapshot
            .connections
            .iter()
            .map(|c| c.connection_id.as_str())
            .collect();
        assert_eq!(open, ["b"]);
        assert_eq!(snapshot.invocations, 3);
        let ping = &snapshot.invocations_by_route["ping"];
        assert_eq!((ping.count, ping.ok, ping.failed), (2, 2, 0));
        assert_eq!((ping.total_latency_ms, ping.last_latency_ms), (10, 6));
        assert_eq!(snapshot.invocations_by_route["sendmessage"].failed, 1);
        assert_eq!(snapshot.throttled, 1);
        assert_eq!(snapshot.processes, [8]);
        assert_eq!(snapshot.cold_starts, 2);
        assert_eq!(snapshot.recent.len(), 10);
        assert_eq!(snapshot.recent.back().map(|e| e.seq), Some(10));
        let json = serde_json::to_value(&snapshot).expect("serialises");
        assert_eq!(
            json["invocationsByRoute"]["ping"]["lastLatencyMs"],
            json!(6)
        );
    }

    #[test]
    fn the_snapshot_keeps_only_the_most_recent_events() {
        let bus = EventBus::new();
        for latency in 0..(RECENT_EVENTS as u64 + 5) {
            bus.publish(invocation("ping", "ok", latency));
        }
        let snapshot = bus.snapshot();
        assert_eq!(snapshot.recent.len(), RECENT_EVENTS);
        assert_eq!(snapshot.recent.front().map(|e| e.seq), Some(6));
        assert_eq!(snapshot.invocations, RECENT_EVENTS as u64 + 5);
    }

    #[test]
    fn a_subscriber_gets_each_event_once_either_in_its_snapshot_or_after_it() {
        let bus = EventBus::new();
        bus.publish(invocation("ping", "ok", 1));
        let (snapshot, mut receiver) = bus.subscribe();
        bus.publish(invocation("ping", "ok", 2));
        assert_eq!(snapshot.seq, 1);
        assert_eq!(receiver.try_recv().map(|e| e.seq).ok(), Some(2));
        assert!(receiver.try_recv().is_err(), "nothing else was published");
    }

    #[test]
    fn publishing_with_nobody_watching_still_counts() {
        let bus = EventBus::new();
        bus.publish(invocation("$connect", "ok", 1));
        assert_eq!(bus.snapshot().invocations, 1);
    }

    /// Thousands of connections: each close finds its connection by id, the
    /// rest stay oldest first, and the snapshot is still a JSON list.
    #[test]
    fn open_connections_close_by_id_and_stay_in_order() {
        let bus = EventBus::new();
        for n in 0..1000 {
            bus.publish(StackEvent::ConnectionOpened {
                connection_id: format!("c{n}"),
                source_ip: "127.0.0.1".into(),
            });
        }
        for n in (0..1000).filter(|n| n % 3 != 0) {
            bus.publish(StackEvent::ConnectionClosed {
                connection_id: format!("c{n}"),
                status_code: 1000,
                reason: String::new(),
                duration_ms: 1,
            });
        }
        let snapshot = bus.snapshot();
        let open: Vec<String> = snapshot
            .connections
            .iter()
            .map(|c| c.connection_id.clone())
            .collect();
        let expected: Vec<String> = (0..1000).step_by(3).map(|n| format!("c{n}")).collect();
        assert_eq!(open, expected);
        let json = serde_json::to_value(&snapshot).expect("serialises");
        assert_eq!(json["connections"][1]["connectionId"], "c3");
        let back: Snapshot = serde_json::from_value(json).expect("deserialises");
        let again: Vec<String> = back
            .connections
            .iter()
            .map(|c| c.connection_id.clone())
            .collect();
        assert_eq!(again, expected);
    }
}
