//! The pure parts of the bench: parsing, formatting, the targets, the
//! table; the figures themselves are never asserted.

use super::*;

#[test]
fn durations_bytes_and_ratios_are_formatted_for_people() {
    assert_eq!(format_duration(Duration::from_micros(250)), "250 µs");
    assert_eq!(format_duration(Duration::from_micros(1_500)), "1.50 ms");
    assert_eq!(format_duration(Duration::from_millis(2_340)), "2.34 s");
    assert_eq!(format_bytes(512), "512 B");
    assert_eq!(format_bytes(123_456), "123.5 kB");
    assert_eq!(format_bytes(5_432_100), "5432.1 kB");
    assert_eq!(format_bytes(12_345_678), "12.3 MB");
    assert_eq!(format_ratio(Some(1.0), Some(4.0)), "0.25×");
    assert_eq!(format_ratio(Some(1.0), Some(1000.0)), "0.0010×");
    assert_eq!(format_ratio(Some(1.0), None), "—");
    assert_eq!(format_ratio(Some(1.0), Some(0.0)), "—");
}

#[test]
fn the_table_is_aligned_markdown() {
    let table = render_table(
        &["Name", "Value"],
        &[
            vec!["a".into(), "1 ms".into()],
            vec!["longer name".into(), "22".into()],
        ],
    );
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines,
        [
            "| Name        | Value |",
            "|:------------|------:|",
            "| a           |  1 ms |",
            "| longer name |    22 |",
        ]
    );
}

#[test]
fn a_short_row_is_padded_and_extra_cells_are_dropped() {
    let table = render_table(
        &["A", "B"],
        &[
            vec!["x".into()],
            vec!["y".into(), "z".into(), "extra".into()],
        ],
    );
    assert_eq!(table.lines().nth(2), Some("| x |   |"));
    assert_eq!(table.lines().nth(3), Some("| y | z |"));
}

fn stats(ms: u64) -> Option<Percentiles> {
    Percentiles::of(&[Duration::from_millis(ms)])
}

fn figures(cold_ms: u64, warm_ms: u64, rss: u64, zip: ZipSize) -> FunctionFigures {
    FunctionFigures {
        cold_start: stats(cold_ms),
        warm: stats(warm_ms),
        peak_rss: Some(rss),
        zip,
    }
}

fn report() -> Report {
    Report {
        functions: Some(FunctionReport {
            handler: figures(30, 1, 10_000_000, ZipSize::Bytes(5_000_000)),
            hello: figures(
                10,
                1,
                3_000_000,
                ZipSize::Missing("not built — run `cargo lambda build`".into()),
            ),
            python: figures(200, 2, 30_000_000, ZipSize::Bytes(500)),
        }),
        stack: Some(StackReport {
            edge_handshake: stats(5),
            echo_handshake: stats(1),
            edge_round_trip: stats(3),
            echo_round_trip: stats(1),
            broadcast: BTreeMap::from([
                (100, Duration::from_millis(50)),
                (1000, Duration::from_millis(1500)),
            ]),
            sustained: Some((1234.4, 20, 2000)),
            load: None,
        }),
        posts: None,
        scan_history: None,
        throttled: None,
        peers: None,
    }
}

#[test]
fn targets_compare_the_figures_with_their_limits() {
    let verdicts: Vec<(String, Option<bool>)> = report()
        .targets()
        .into_iter()
        .map(|t| (t.name, t.met))
        .collect();
    assert_eq!(
        verdicts,
        [
            // 30 ms ≤ 200/5 = 40 ms
            (
                "cold start ≤ 1/5 of the Python handler".to_string(),
                Some(true)
            ),
            // 30 ms > 1.5 × 10 ms
            (
                "cold start ≤ 1.5× the lambda_runtime floor".to_string(),
                Some(false)
            ),
            (
                "peak RSS ≤ 1/2 of the Python handler".to_string(),
                Some(true)
            ),
            ("deployment zip ≤ 6 MB".to_string(), Some(true)),
            // 3 ms ≤ 3 × 1 ms + 1 ms
            (
                "round trip p50 ≤ 3× the echo floor + the function's warm p50".to_string(),
                Some(true)
            ),
            (
                "broadcast to 1,000 connections under 1 s".to_string(),
                Some(false)
            ),
        ]
    );
}

#[test]
fn a_missing_figure_makes_its_target_not_applicable() {
    let mut report = report();
    if let Some(f) = report.functions.as_mut() {
        f.handler.zip = ZipSize::Missing("not built".into());
    }
    if let Some(s) = report.stack.as_mut() {
        s.broadcast.remove(&1000);
    }
    let na: Vec<String> = report
        .targets()
        .into_iter()
        .filter(|t| t.met.is_none())
        .map(|t| t.name)
        .collect();
    assert_eq!(
        na,
        [
            "deployment zip ≤ 6 MB",
            "broadcast to 1,000 connections under 1 s"
        ]
    );
    let rendered = report.render("test machine");
    assert!(
        rendered.contains("- [n/a] deployment zip ≤ 6 MB: not measured"),
        "{rendered}"
    );
    assert!(
        rendered.contains("\n\nZip not built — run `cargo lambda build`\n"),
        "{rendered}"
    );
    assert!(
        rendered.contains("- [MISSED] cold start ≤ 1.5× the lambda_runtime floor"),
        "{rendered}"
    );
}

#[test]
fn the_report_has_one_row_per_figure_with_ratios_against_python() {
    let rows = report().rows();
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        names,
        [
            "Function cold start (spawn → first response), p50",
            "Function warm invocation, p50",
            "Function warm invocation, p99",
            "Function peak RSS (VmHWM)",
            "Function deployment zip",
            "WebSocket handshake, p50",
            "WebSocket handshake, p99",
            "Message round trip, p50",
            "Message round trip, p99",
            "Broadcast to 100 connections (until all have it)",
            "Broadcast to 1000 connections (until all have it)",
            "Sustained ping → pong (20 clients, 2000 messages)",
        ]
    );
    assert_eq!(rows[0][1..], ["30.00 ms", "10.00 ms", "200.00 ms", "0.15×"]);
    assert_eq!(rows[3][4], "0.33×");
    assert_eq!(rows[4][2], "not built");
    assert_eq!(rows[11][1], "1234 msg/s");
}

#[test]
fn the_ping_event_has_the_api_gateway_shape() {
    let event = ping_event().expect("the ping event encodes");
    assert_eq!(event["requestContext"]["routeKey"], "ping");
    assert_eq!(event["requestContext"]["eventType"], "MESSAGE");
    assert_eq!(event["requestContext"]["stage"], SINK_STAGE);
    assert_eq!(event["body"], ClientFrame::ping().to_text());
}

#[tokio::test]
async fn the_handler_gets_the_dev_stacks_environment_with_the_sink() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let topology = pulumi_program::load(&root, "dev").expect("the dev stack's program");
    let sink = ManagementSink::start().await.expect("the sink");
    let env: BTreeMap<_, _> = handler_env(&topology, &sink)
        .expect("the environment")
        .into_iter()
        .collect();
    assert_eq!(env["MANAGEMENT_ENDPOINT"], sink.endpoint);
    assert_eq!(env["CONNECTIONS_TABLE"], topology.table.name);
    assert_eq!(env["AWS_REGION"], topology.region);
    assert_eq!(env["AWS_LAMBDA_LOG_FORMAT"], "JSON");
}

#[test]
fn the_bench_config_raises_every_limit_under_the_project_namespace() {
    let config: Value = serde_json::from_str(&bench_stack_config("p")).unwrap_or(Value::Null);
    assert_eq!(config["config"]["p:rateLimit"], 2_000_000_000u64);
    assert_eq!(config["config"]["p:stageBurstLimit"], 100_000);
    assert_eq!(config["config"]["p:usagePlanRateLimit"], 100_000);
    assert_eq!(config["config"]["aws:region"], "us-east-1");
    assert_eq!(config["config"]["p:signIn"], "off");
}

/// The bench's clients carry no token: with the program's default sign-in
/// (oidc), the bench's stack refused every handshake, or its authorizer
/// never started. The repository's program under the bench's config has
/// `$connect` open to whoever comes through the edge.
#[test]
fn the_bench_stack_runs_the_program_without_sign_in() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let program = std::fs::read_to_string(root.join("Pulumi.yaml")).expect("Pulumi.yaml");
    let region_only = r#"{"config": {"aws:region": "us-east-1"}}"#;
    let project = pulumi_program::load_sources(&program, Some(region_only), BENCH_STACK)
        .expect("the program loads")
        .project;
    let topology =
        pulumi_program::load_sources(&program, Some(&bench_stack_config(&project)), BENCH_STACK)
            .expect("the bench's stack loads");
    assert!(
        topology.sign_in.as_ref().is_some_and(|s| !s.enabled),
        "{:?}",
        topology.sign_in
    );
}

#[test]
fn edge_urls_are_parsed_and_must_be_loopback() {
    let addr: SocketAddr = "127.0.0.1:8080"
        .parse()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    assert_eq!(
        parse_ws_url("ws://127.0.0.1:8080"),
        Some((addr, "/".into()))
    );
    assert_eq!(
        parse_ws_url("ws://127.0.0.1:8080/prod"),
        Some((addr, "/prod".into()))
    );
    assert_eq!(parse_ws_url("ws://10.0.0.1:8080"), None);
    assert_eq!(parse_ws_url("wss://127.0.0.1:8080"), None);
    assert_eq!(parse_ws_url("ws://localhost:8080"), None);
}

#[tokio::test]
async fn the_echo_floor_echoes() {
    let test = async {
        let server = echo_server()?;
        let mut ws = connect(server.addr, "/", source_address(0)).await?;
        let took = echo(&mut ws, "hello").await?;
        close(ws).await;
        drop(server);
        anyhow::Ok(took)
    };
    let result = tokio::time::timeout(Duration::from_secs(20), test).await;
    assert!(matches!(result, Ok(Ok(_))), "{result:?}");
}

#[test]
fn a_scale_only_report_has_no_empty_rows() {
    let report = Report {
        stack: Some(StackReport::default()),
        ..Report::default()
    };
    assert!(report.rows().is_empty(), "{:?}", report.rows());
    let rendered = report.render("test machine");
    assert!(!rendered.contains("| Benchmark"), "{rendered}");
    assert!(rendered.contains("Machine: test machine"), "{rendered}");
}

#[test]
fn the_peer_table_puts_both_columns_side_by_side_with_who_is_ahead() {
    let column =
        |handshakes: f64, rtt_us: u64, broadcast_ms: u64, sustained: f64| peers::PeerColumn {
            handshakes_per_sec: Some(handshakes),
            round_trip: Percentiles::of(&[Duration::from_micros(rtt_us)]),
            broadcast: Some(Duration::from_millis(broadcast_ms)),
            sustained: Some(sustained),
            ..Default::default()
        };
    let cpu = |processes: &[(&str, usize, u64)]| cpu::CpuSpent {
        by_process: processes
            .iter()
            .map(|&(name, count, ms)| cpu::ProcessCpu {
                name: name.into(),
                count,
                cpu: Duration::from_millis(ms),
            })
            .collect(),
    };
    let figures = peers::PeerFigures {
        devstack: peers::PeerColumn {
            handshake_cpu: Some(cpu(&[("devstack", 1, 600), ("websocket-handl", 16, 500)])),
            ..column(661.0, 649, 156, 8_400.0)
        },
        serverless_offline: peers::PeerColumn {
            handshake_cpu: Some(cpu(&[("node", 1, 440)])),
            ..column(1_337.0, 1_327, 925, 1_560.0)
        },
        floor: peers::PeerColumn {
            handshakes_per_sec: Some(1_203.0),
            handshake_cpu: Some(cpu(&[("devstack", 1, 400), ("hello-lambda", 16, 300)])),
            ..Default::default()
        },
        handshakes: 1_000,
        fanout: 1_000,
        sustained: (20, 100),
    };
    let table = figures.render();
    assert!(
        table.contains(
            "Floor: the same stack with hello-lambda (lambda_runtime alone, no registry write) \
             answering $connect: 1203 handshakes/s = 0.90× serverless-offline's; \
             CPU per handshake 700 µs (devstack 400 µs, hello-lambda ×16 300 µs)"
        ),
        "{table}"
    );
    assert!(
        table.contains("| Handshakes per second (1000 handshakes, 32 in flight) |"),
        "{table}"
    );
    assert!(
        table.contains("661 /s") && table.contains("1337 /s") && table.contains("0.49×"),
        "{table}"
    );
    assert!(
        table.contains("5.93×"),
        "broadcast: the peer's time ÷ ours\n{table}"
    );
    assert!(
        table.lines().any(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            cells[..]
                == [
                    "",
                    "CPU per handshake (all of the target's processes)",
                    "1.10 ms",
                    "440 µs",
                    "0.40×",
                    "",
                ]
        }),
        "CPU: the peer's ÷ ours\n{table}"
    );
    assert!(
        table.contains(
            "CPU per handshake, devstack, by process: devstack 600 µs, websocket-handl ×16 500 µs"
        ) && table.contains("CPU per handshake, serverless-offline, by process: node 440 µs"),
        "{table}"
    );
    let verdicts: Vec<Option<bool>> = figures.targets().iter().map(|t| t.met).collect();
    assert_eq!(verdicts, [Some(false), Some(true), Some(true), Some(true)]);
}
