//! The targets of the scale rows that hold the broadcast to what it
//! promises: a Scan that does not grow with history, 10,000 connections
//! reached within 2 s, and every recipient reached once under a lowered
//! account rate. Apart from `report.rs` so each stays readable.

use super::*;

impl Report {
    /// The trustworthy broadcast's targets, for the scale rows a run has.
    pub fn scale_targets(&self) -> Vec<Target> {
        let mut out = Vec::new();
        if let Some(load) = self.stack.as_ref().and_then(|s| s.load.as_ref()) {
            let name = "broadcast across 10,000 connections under 2 s to the last recipient, none missed or twice";
            let mut t = Target::at_most(
                name,
                load.all_have_it.map(secs),
                Some(secs(LOAD_BROADCAST_LIMIT)),
                show_secs,
            );
            if load.connections != LOAD_TARGET_SIZE {
                t.met = None;
                t.detail = format!("needs --load {LOAD_TARGET_SIZE} (ran {})", load.connections);
            } else if load.missed > 0 || load.twice > 0 {
                t.met = Some(false);
                t.detail = format!("{}; {} missed, {} twice", t.detail, load.missed, load.twice);
            }
            out.push(t);
        }
        if let Some(h) = &self.scan_history {
            let mut t = Target::at_most(
                "items read by one broadcast's Scan after the earlier broadcasts ≤ 1.01 × connections",
                h.read_per_connection(),
                Some(SCAN_READ_LIMIT),
                |r| format!("{r:.3}×"),
            );
            t.detail = format!("{} after {} broadcasts", t.detail, h.broadcasts);
            out.push(t);
        }
        if let Some(th) = &self.throttled {
            let recipients = th.load.connections.saturating_sub(1);
            let reached = th.load.all_have_it.is_some() && th.load.missed == 0;
            let detail = format!(
                "{recipients} recipients at {}/s: {} missed, {} twice, the last after {}",
                th.rate,
                th.load.missed,
                th.load.twice,
                th.load.all_have_it.map_or("—".into(), format_duration)
            );
            let applies = recipients >= THROTTLED_RECIPIENTS && th.rate <= THROTTLED_RATE;
            out.push(Target {
                name: "under an account rate of 1,000/s: 5,000 recipients, 0 missed, 0 twice"
                    .into(),
                met: applies.then_some(reached && th.load.twice == 0),
                detail: if applies {
                    detail
                } else {
                    format!("{detail} (needs --throttled 5001 --throttled-rate 1000)")
                },
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_figures(connections: usize, last_ms: Option<u64>, missed: usize) -> load::LoadFigures {
        load::LoadFigures {
            connections,
            via: load::Via::Api,
            handshakes_per_sec: 500.0,
            refused_429: 0,
            stack_bytes_per_connection: None,
            sent_after: Duration::from_millis(500),
            sent_recipients: connections - 1,
            all_have_it: last_ms.map(Duration::from_millis),
            missed,
            twice: 0,
        }
    }

    fn history(after_scanned: usize) -> scan_history::ScanHistoryFigures {
        let scan = |scanned| scan_history::ScanCount {
            scanned,
            returned: 100,
            pages: 1,
        };
        scan_history::ScanHistoryFigures {
            connections: 100,
            broadcasts: 1000,
            per_invocation: 25,
            before: scan(100),
            after: scan(after_scanned),
            claims: 3000,
            posts: 100_000,
            per_recipient: Some((1000, 1000)),
            took: Duration::from_secs(60),
        }
    }

    fn verdicts(report: &Report) -> Vec<(String, Option<bool>)> {
        report
            .scale_targets()
            .into_iter()
            .map(|t| (t.name, t.met))
            .collect()
    }

    #[test]
    fn the_scan_after_history_is_held_to_1_01_reads_per_connection() {
        let mut report = Report {
            scan_history: Some(history(101)),
            ..Report::default()
        };
        assert_eq!(
            verdicts(&report),
            [(
                "items read by one broadcast's Scan after the earlier broadcasts ≤ 1.01 × connections"
                    .to_string(),
                Some(true)
            )]
        );
        // Claims in the connections table: 3,000 more items read.
        report.scan_history = Some(history(3100));
        assert_eq!(verdicts(&report)[0].1, Some(false));
        let rows = format!("{:?}", scan_history::rows(&history(100)));
        for expected in [
            "100 (1.000)",
            "3000",
            "100000 / 100000 (1000–1000)",
            "60.0 s",
        ] {
            assert!(rows.contains(expected), "{expected} not in {rows}");
        }
    }

    #[test]
    fn the_10000_connection_broadcast_is_held_to_2_s_with_none_missed() {
        let with_load = |load| Report {
            stack: Some(StackReport {
                load: Some(load),
                ..StackReport::default()
            }),
            ..Report::default()
        };
        let met = |report: &Report| {
            report
                .scale_targets()
                .into_iter()
                .map(|t| t.met)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            met(&with_load(load_figures(10_000, Some(1_500), 0))),
            [Some(true)]
        );
        assert_eq!(
            met(&with_load(load_figures(10_000, Some(2_500), 0))),
            [Some(false)]
        );
        assert_eq!(
            met(&with_load(load_figures(10_000, Some(1_500), 3))),
            [Some(false)]
        );
        // Another size is not the target's.
        assert_eq!(met(&with_load(load_figures(2_000, Some(100), 0))), [None]);
    }

    #[test]
    fn the_throttled_broadcast_needs_5000_recipients_none_missed_none_twice() {
        let throttled = |connections, rate, missed, twice| {
            let mut load = load_figures(connections, Some(9_000), missed);
            load.twice = twice;
            Report {
                throttled: Some(throttled::ThrottledFigures {
                    rate,
                    load,
                    log: throttled::LogCounts::default(),
                }),
                ..Report::default()
            }
        };
        let met = |report: Report| report.scale_targets().first().and_then(|t| t.met);
        assert_eq!(met(throttled(5_001, 1_000, 0, 0)), Some(true));
        assert_eq!(met(throttled(5_001, 1_000, 1, 0)), Some(false));
        assert_eq!(met(throttled(5_001, 1_000, 0, 2)), Some(false));
        // Fewer recipients, or a higher rate, is not the target's run.
        assert_eq!(met(throttled(5_000, 1_000, 0, 0)), None);
        assert_eq!(met(throttled(5_001, 10_000, 0, 0)), None);
    }

    #[test]
    fn the_stack_log_is_counted_for_refused_posts_and_loss_lines() {
        let log = concat!(
            "INFO websocket-handler: post refused; to be tried again connection_id=a\n",
            "INFO websocket-handler: post refused; to be tried again connection_id=b\n",
            "INFO websocket-handler: sent recipients=3\n",
            "ERROR websocket-handler: {\"RecipientsNotReached\":2,\"message\":\"broadcast recipients not reached\"}\n",
        );
        assert_eq!(
            throttled::count_log(log),
            throttled::LogCounts {
                refused_posts: 2,
                not_reached_lines: 1,
            }
        );
    }
}
