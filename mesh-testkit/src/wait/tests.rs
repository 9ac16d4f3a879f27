use std::{cell::Cell, time::Duration};

use super::*;

#[test]
fn returns_the_value_once_it_is_there() {
    let calls = Cell::new(0);
    let v = eventually("third call", Duration::from_secs(5), || {
        calls.set(calls.get() + 1);
        (calls.get() == 3).then_some(calls.get())
    });
    assert_eq!(v, 3);
}

#[test]
fn timeout_names_what_the_timeout_and_the_last_state() {
    let mut n = 0;
    let e = try_eventually("the answer", Duration::from_millis(50), || {
        n += 1;
        Err::<(), _>(format!("saw {n}"))
    })
    .unwrap_err();
    assert!(!e.gave_up);
    let text = e.to_string();
    assert!(
        text.contains("the answer") && text.contains("50ms"),
        "{text}"
    );
    assert!(text.ends_with(&format!("last observed: saw {n}")), "{text}");
}

#[test]
fn give_up_stops_at_once() {
    let e = try_eventually("never", Duration::from_secs(60), || {
        Attempt::<()>::GiveUp("exited".into())
    })
    .unwrap_err();
    assert!(e.gave_up);
    assert_eq!(e.last, "exited");
}

#[test]
#[should_panic(expected = "timed out after 20ms waiting for a flag")]
fn eventually_panics_on_timeout() {
    eventually("a flag", Duration::from_millis(20), || false);
}

#[tokio::test(start_paused = true)]
async fn async_wait_bounds_a_hanging_attempt() {
    let e = try_eventually_async("a reply", Duration::from_secs(1), || async {
        std::future::pending::<bool>().await
    })
    .await
    .unwrap_err();
    assert_eq!(e.last, "no attempt finished");
}

#[tokio::test(start_paused = true)]
async fn async_wait_polls_until_done() {
    let start = tokio::time::Instant::now();
    let v = eventually_async("a second", Duration::from_secs(5), || async move {
        (start.elapsed() >= Duration::from_secs(1)).then_some(7)
    })
    .await;
    assert_eq!(v, 7);
}

#[tokio::test(start_paused = true)]
async fn watch_wakes_on_each_value() {
    let (tx, mut rx) = watch::channel(0);
    let setter = tokio::spawn(async move {
        for i in 1..=3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            tx.send_replace(i);
        }
        tx
    });
    let v = eventually_watch("three", Duration::from_secs(1), &mut rx, |&v| {
        if v == 3 {
            Ok(v)
        } else {
            Err(format!("value {v}"))
        }
    })
    .await;
    assert_eq!(v, 3);
    drop(setter.await.unwrap());
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "last observed: value 1")]
async fn watch_timeout_reports_the_last_value() {
    let (_tx, mut rx) = watch::channel(1);
    eventually_watch("two", Duration::from_millis(100), &mut rx, |&v| {
        (v == 2).then_some(()).ok_or(format!("value {v}"))
    })
    .await;
}
