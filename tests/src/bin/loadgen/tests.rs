//! Unit tests of the plan, the schedules and the summary math.
use std::collections::BTreeMap;

use super::summary::{due_within, percentile, rate_per_second};
use super::*;

#[test]
fn nearest_rank_percentiles() {
    let v: Vec<u64> = (1..=100).collect();
    assert_eq!(percentile(&v, 50.0), 50);
    assert_eq!(percentile(&v, 90.0), 90);
    assert_eq!(percentile(&v, 99.0), 99);
    assert_eq!(percentile(&v, 100.0), 100);
    assert_eq!(percentile(&v, 0.0), 1);
    // 10 values: p99 is the 10th (ceil(9.9)), p50 the 5th.
    let v = [10, 20, 30, 40, 50, 60, 70, 80, 90, 1000];
    assert_eq!(percentile(&v, 99.0), 1000);
    assert_eq!(percentile(&v, 50.0), 50);
    assert_eq!(percentile(&v, 90.0), 90);
    assert_eq!(percentile(&[7], 99.0), 7);
    assert_eq!(percentile(&[], 50.0), 0);
}

#[test]
fn rate_is_count_over_wall_time() {
    assert_eq!(rate_per_second(5000, Duration::from_millis(2500)), 2000.0);
    assert_eq!(rate_per_second(10, Duration::ZERO), 0.0);
}

#[test]
fn open_loop_schedule_is_k_over_rate() {
    assert_eq!(intended_offset(0, 1000.0), Duration::ZERO);
    assert_eq!(intended_offset(1, 1000.0), Duration::from_millis(1));
    assert_eq!(intended_offset(2500, 1000.0), Duration::from_millis(2500));
    assert_eq!(intended_offset(3, 4.0), Duration::from_millis(750));
    // k = 0..=1999 are due before 2 s at 1000/s; k = 2000 is not.
    assert_eq!(due_within(1000.0, Duration::from_secs(2)), 2000);
    assert_eq!(due_within(3.0, Duration::from_millis(1500)), 5);
}

#[tokio::test]
async fn closed_loop_stops_at_the_request_budget_or_the_end() {
    let far = Schedule::Closed {
        next: AtomicU64::new(0),
        end: Instant::now() + Duration::from_secs(3600),
    };
    for _ in 0..3 {
        assert!(far.next(3).await.is_some());
    }
    assert!(far.next(3).await.is_none());
    let over = Schedule::Closed {
        next: AtomicU64::new(0),
        end: Instant::now(),
    };
    assert!(over.next(3).await.is_none());
}

#[tokio::test]
async fn open_loop_hands_out_due_times_in_order_then_ends() {
    // 1000/s for 5 ms: requests 0..=4 are due at 0, 1, 2, 3, 4 ms.
    let start = Instant::now();
    let schedule = dispatch(start, 1000.0, 100, Duration::from_millis(5));
    let Schedule::Open { rx, .. } = &schedule else {
        panic!("open loop expected");
    };
    let mut dues = vec![];
    while let Some(due) = rx.lock().await.recv().await {
        dues.push(due - start);
    }
    let want: Vec<Duration> = (0..5).map(Duration::from_millis).collect();
    assert_eq!(dues, want);
}

fn cli(args: &[&str]) -> Cli {
    let mut all = vec!["loadgen"];
    all.extend_from_slice(args);
    Cli::try_parse_from(all).unwrap()
}

#[test]
fn host_header_becomes_the_authority() {
    let plan = Plan::from_cli(&cli(&[
        "--url",
        "http://10.244.1.5:15080/reviews/1?u=2",
        "--header",
        "Host: reviews:9080",
        "--header",
        "end-user:jason",
    ]))
    .unwrap();
    assert_eq!(plan.addr, "10.244.1.5:15080".parse().unwrap());
    assert_eq!(plan.authority, "reviews:9080");
    assert_eq!(plan.path, "/reviews/1?u=2");
    assert_eq!(plan.headers, vec![("end-user".into(), "jason".into())]);
    let req = plan.request().unwrap();
    assert_eq!(req.uri(), "/reviews/1?u=2");
    assert_eq!(req.headers()["host"], "reviews:9080");
    assert_eq!(req.headers()["end-user"], "jason");

    let h2 = Plan::from_cli(&cli(&[
        "--url",
        "http://10.244.1.5:15080/",
        "--h2",
        "--concurrency",
        "8",
        "--header",
        "host:reviews:9080",
    ]))
    .unwrap();
    let req = h2.request().unwrap();
    assert_eq!(req.uri().authority().unwrap(), "reviews:9080");
    assert!(req.headers().get("host").is_none());
    assert_eq!(h2.concurrency, 8);
    assert_eq!(h2.connections, 1);
}

#[test]
fn rejects_unbounded_or_impossible_plans() {
    let err = |args: &[&str]| Plan::from_cli(&cli(args)).unwrap_err().to_string();
    assert!(err(&["--url", "http://1.2.3.4:80/", "--concurrency", "4"]).contains("--connections"));
    assert!(err(&["--url", "http://1.2.3.4:80/", "--rate", "0"]).contains("--rate"));
    assert!(err(&["--url", "http://1.2.3.4:80/", "--duration", "0"]).contains("--duration"));
    assert!(err(&["--url", "http://example:80/"]).contains("IP address"));
    assert!(parse_header("nocolon").is_err());
}

#[test]
fn summary_counts_and_json_shape() {
    let plan = Plan::from_cli(&cli(&["--url", "http://127.0.0.1:1/", "--rate", "100"])).unwrap();
    let outcome = Outcome {
        latencies_us: vec![300, 100, 200, 400],
        errors: 2,
        status: BTreeMap::from([(200, 3), (503, 1)]),
    };
    let s = Summary::new(outcome, Duration::from_secs(2), &plan).to_json();
    assert_eq!(s["requests"], 4);
    assert_eq!(s["errors"], 2);
    assert_eq!(s["status"]["200"], 3);
    assert_eq!(s["status"]["503"], 1);
    assert_eq!(s["rps"], 2.0);
    assert_eq!(s["p50_us"], 200);
    assert_eq!(s["p99_us"], 400);
    assert_eq!(s["max_us"], 400);
    assert_eq!(s["offered_rps"], 100.0);
    // 10 s at 100/s were due; 4 answered and 2 failed.
    assert_eq!(s["unsent"], 994);
}
