//! The write path under faults: concurrent writers that retry with
//! idempotency keys while PgBouncer is killed, the primary crashes
//! (immediate shutdown), a write function is shut down (SIGTERM's graceful
//! drain) and replaced, and the replica stops. Bounded: about 20 seconds.
//!
//! At the end, read from the primary directly: every acknowledged write is
//! present with its acknowledged value, none was applied twice (a retry that
//! ran again would have met its own row: 409 `conflict`), no 5xx other than
//! 503, every error a JSON body. Prints the counts and, for each fault, how
//! long the component was down and how long after restoring it the first
//! write was acknowledged.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::consistency::writer as writer_app;
use crate::replica::reader_with_limit;
use crate::support::{Cluster, CREATE, REPLICATED_DB, TOKEN, UPDATE};

const WRITERS: i64 = 6;
const RUN: Duration = Duration::from_secs(14);
/// A single write gives up (and fails the test) after this long.
const PATIENCE: Duration = Duration::from_secs(30);

/// What the writers saw.
#[derive(Default)]
struct Tally {
    acknowledged: BTreeMap<i64, i32>,
    statuses: BTreeMap<String, u64>,
    violations: Vec<String>,
    acks: Vec<Instant>,
}

/// Sends one write until it is acknowledged, retrying on 503, on 409
/// `idempotency_key_in_progress` and on connection errors, always with the
/// same idempotency key; returns the acknowledged body.
async fn until_acknowledged(
    client: &reqwest::Client,
    base: &RwLock<String>,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: &Value,
    tally: &Mutex<Tally>,
) -> Option<Value> {
    let started = Instant::now();
    // What the last attempts met, for the failure message.
    let mut seen: Vec<String> = Vec::new();
    while started.elapsed() < PATIENCE {
        let url = format!("{}{path}", base.read().unwrap());
        let sent = client
            .request(method.clone(), url)
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(err) => {
                seen.push(format!("{:?} connection error: {err}", started.elapsed()));
                *tally
                    .lock()
                    .unwrap()
                    .statuses
                    .entry("connection error".into())
                    .or_default() += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let status = response.status().as_u16();
        let replayed = response.headers().contains_key("idempotent-replayed");
        let bytes = response.bytes().await.unwrap_or_default();
        let json: Option<Value> = serde_json::from_slice(&bytes).ok();
        let code = json
            .as_ref()
            .and_then(|j| j["error"]["code"].as_str())
            .unwrap_or("")
            .to_owned();
        seen.push(format!(
            "{:?} {status} {}",
            started.elapsed(),
            String::from_utf8_lossy(&bytes)
        ));
        let retry = {
            let mut t = tally.lock().unwrap();
            let label = if replayed {
                format!("{status} replayed")
            } else {
                format!("{status} {code}").trim().to_owned()
            };
            *t.statuses.entry(label).or_default() += 1;
            match status {
                200 | 201 => {
                    t.acks.push(Instant::now());
                    false
                }
                503 | 409 if code != "conflict" => {
                    if code.is_empty() {
                        t.violations.push(format!(
                            "{method} {path}: {status} without a JSON error body"
                        ));
                    }
                    true
                }
                _ => {
                    t.violations.push(format!(
                        "{method} {path} (key {key}): {status} {}",
                        String::from_utf8_lossy(&bytes)
                    ));
                    false
                }
            }
        };
        if !retry {
            return json.filter(|_| matches!(status, 200 | 201));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tally.lock().unwrap().violations.push(format!(
        "{method} {path} (key {key}): not acknowledged within {PATIENCE:?}; {} attempts, the last: {:#?}",
        seen.len(),
        &seen[seen.len().saturating_sub(4)..]
    ));
    None
}

async fn writer(
    id: i64,
    create: Arc<RwLock<String>>,
    update: Arc<RwLock<String>>,
    tally: Arc<Mutex<Tally>>,
    until: Instant,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut seq = 0;
    while Instant::now() < until {
        seq += 1;
        let roll = id * 1_000_000 + seq;
        let first = (roll % 50) as i32;
        let created = until_acknowledged(
            &client,
            &create,
            reqwest::Method::POST,
            "/results",
            &format!("chaos-{roll}-create"),
            &json!({"roll_number": roll, "exam_year": 2024, "marks": first}),
            &tally,
        )
        .await;
        if created.is_none() {
            return;
        }
        tally.lock().unwrap().acknowledged.insert(roll, first);
        let second = first + 50;
        let updated = until_acknowledged(
            &client,
            &update,
            reqwest::Method::PUT,
            &format!("/results/2024/{roll}"),
            &format!("chaos-{roll}-update"),
            &json!({ "marks": second }),
            &tally,
        )
        .await;
        match updated {
            Some(body) if body["marks"] == second => {
                tally.lock().unwrap().acknowledged.insert(roll, second);
            }
            _ => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_retried_with_keys_survive_pooler_primary_function_and_replica_faults() {
    let cluster = Arc::new(Cluster::start_replicated());
    let mut create_app = writer_app(&cluster, CREATE).await;
    let update_app = writer_app(&cluster, UPDATE).await;
    let create = Arc::new(RwLock::new(create_app.url("")));
    let update = Arc::new(RwLock::new(update_app.url("")));
    let reader = reader_with_limit(&cluster, true, 1).await;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let until = started + RUN;

    let writers: Vec<_> = (1..=WRITERS)
        .map(|id| {
            tokio::spawn(writer(
                id,
                create.clone(),
                update.clone(),
                tally.clone(),
                until,
            ))
        })
        .collect();
    // A reader keeps reading a known result through the replica (fallback: primary).
    let read_tally = Arc::new(Mutex::new(HashMap::<String, u64>::new()));
    let reading = {
        let (read_tally, url) = (read_tally.clone(), reader.url("/results/2024/1000001"));
        let client = reader.client.clone();
        tokio::spawn(async move {
            while Instant::now() < until {
                let label = match client.get(&url).send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let json = r.json::<Value>().await.is_ok();
                        format!(
                            "{status}{}",
                            if json || status == 200 {
                                ""
                            } else {
                                " (no JSON body)"
                            }
                        )
                    }
                    Err(_) => "connection error".into(),
                };
                *read_tally.lock().unwrap().entry(label).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // (fault, injected at, restored at)
    let mut faults: Vec<(&str, Instant, Instant)> = Vec::new();
    let at =
        |seconds: u64| tokio::time::sleep_until((started + Duration::from_secs(seconds)).into());

    at(2).await;
    let injected = Instant::now();
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || {
        c.kill_pgbouncer();
        std::thread::sleep(Duration::from_secs(1));
        c.start_postgres(); // the sandbox starts whatever is down: PgBouncer here
    })
    .await
    .unwrap();
    faults.push((
        "PgBouncer killed (SIGKILL), restarted after 1 s",
        injected,
        Instant::now(),
    ));

    at(5).await;
    let injected = Instant::now();
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || {
        c.stop_postgres();
        std::thread::sleep(Duration::from_secs(1));
        c.start_postgres();
    })
    .await
    .unwrap();
    faults.push((
        "primary crashed (immediate shutdown), restarted after 1 s",
        injected,
        Instant::now(),
    ));

    at(8).await;
    let injected = Instant::now();
    let replacement = writer_app(&cluster, CREATE).await;
    create_app.shut_down().await.unwrap();
    *create.write().unwrap() = replacement.url("");
    faults.push((
        "create-result shut down (SIGTERM drain) and replaced",
        injected,
        Instant::now(),
    ));

    at(10).await;
    let injected = Instant::now();
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || {
        c.stop_replica();
        std::thread::sleep(Duration::from_secs(2));
        c.start_replica();
    })
    .await
    .unwrap();
    faults.push(("replica stopped for 2 s", injected, Instant::now()));

    for writer in writers {
        writer.await.unwrap();
    }
    reading.await.unwrap();

    let tally = std::mem::take(&mut *tally.lock().unwrap());
    let primary = cluster.direct(REPLICATED_DB).await;
    let stored: BTreeMap<i64, i32> = primary
        .query(
            "SELECT roll_number, marks FROM student_results WHERE exam_year = 2024 AND roll_number > 1000000",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let lost: Vec<_> = tally
        .acknowledged
        .iter()
        .filter(|(roll, marks)| stored.get(roll) != Some(marks))
        .collect();
    let applied_twice = tally.statuses.get("409 conflict").copied().unwrap_or(0);
    let unacknowledged_rows = stored.len() - tally.acknowledged.len().min(stored.len());

    println!("acknowledged results: {}", tally.acknowledged.len());
    println!("rows on the primary: {}", stored.len());
    println!("lost or wrong: {}", lost.len());
    println!("applied twice (409 conflict on a retry): {applied_twice}");
    println!("write responses: {:?}", tally.statuses);
    let read_tally = std::mem::take(&mut *read_tally.lock().unwrap());
    println!("read responses: {read_tally:?}");
    for (fault, injected, restored) in &faults {
        let during = tally
            .acks
            .iter()
            .filter(|ack| *ack > injected && *ack <= restored)
            .count();
        match tally.acks.iter().filter(|ack| *ack > restored).min() {
            Some(ack) => println!(
                "{fault}: down {:?}, {during} writes acknowledged meanwhile, first write acknowledged {:?} after restoring",
                *restored - *injected,
                *ack - *restored
            ),
            None => println!("{fault}: no write acknowledged after restoring"),
        }
    }

    if !tally.violations.is_empty() {
        // What PgBouncer and the servers logged last, to tell a stuck pooler
        // from a stuck server or a starved test.
        for log in [
            "pgbouncer/pgbouncer.log",
            "logs/primary.log",
            "logs/replica.log",
        ] {
            println!(
                "--- the last lines of {log}:\n{}",
                cluster.log_tail(log, 40)
            );
        }
    }
    assert!(tally.violations.is_empty(), "{:#?}", tally.violations);
    assert!(lost.is_empty(), "lost or wrong: {lost:?}");
    assert_eq!(applied_twice, 0);
    assert_eq!(unacknowledged_rows, 0, "rows no writer had acknowledged");
    assert!(
        tally.acknowledged.len() as i64 >= WRITERS * 5,
        "too few writes went through"
    );
    for label in read_tally.keys() {
        assert!(
            label == "200"
                || label == "404"
                || label.starts_with("503")
                || label == "connection error",
            "read answered {label}"
        );
        assert!(!label.contains("no JSON"), "read answered {label}");
    }
    drop(replacement);
    drop(update_app);
}
