//! `leasedlock bench`: latency of the lease operations against the raw MQTT 5 request/reply
//! round trip measured on the same broker in the same run (a bare rumqttc echo: the ceiling).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use leasedlock_tokio::{AcquireOptions, Connection, LockOptions};
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::json;
use tokio::sync::mpsc;

use crate::args::{BenchArgs, BrokerAddr, GlobalOptions};
use crate::commands::common::{read_password, Report};
use crate::commands::connect::{connect_to, Failure};
use crate::commands::stack::Stack;
use crate::exit;
use crate::stats::{round_ms, Samples};

/// Lease duration used by the benchmark (long enough never to expire during a measurement).
const BENCH_TTL: Duration = Duration::from_secs(10);
/// How long the waiter is given to start waiting before the holder releases.
const WAITER_SETTLE: Duration = Duration::from_millis(10);

/// One row of the table.
struct Row {
    name: &'static str,
    samples: Samples,
}

/// Runs the benchmarks and prints the table.
pub async fn run(global: &GlobalOptions, args: &BenchArgs, report: Report) -> Result<u8, Failure> {
    let stack = Stack::start(global).await?;
    let result = run_on(&stack, global, args, report).await;
    stack.stop().await;
    result
}

async fn run_on(
    stack: &Stack,
    global: &GlobalOptions,
    args: &BenchArgs,
    report: Report,
) -> Result<u8, Failure> {
    let n = usize::try_from(args.iterations).unwrap_or(500);
    let timeout = global.request_timeout();
    let run_id = std::process::id();
    if !report.is_json() {
        eprintln!(
            "leasedlock bench: {n} iterations per row on {}{}",
            stack.addr,
            if stack.is_embedded() {
                " (embedded broker + emulator)"
            } else {
                ""
            }
        );
    }
    let mut rows = Vec::new();
    match raw_round_trips(global, &stack.addr, n, run_id).await {
        Ok(samples) => rows.push(Row {
            name: "raw MQTT request/reply (baseline)",
            samples,
        }),
        Err(why) => report.error(&format!("raw baseline skipped: {why}")),
    }

    let a = connect_to(
        global,
        &stack.addr,
        &format!("leasedlock-bench-{run_id}-a"),
        timeout,
    )
    .await?;
    let b = connect_to(
        global,
        &stack.addr,
        &format!("leasedlock-bench-{run_id}-b"),
        timeout,
    )
    .await?;
    let measured = measure_store(&a, &b, n, run_id).await;
    a.close().await;
    b.close().await;
    rows.extend(measured?);

    let baseline = rows
        .iter()
        .find(|r| r.name.starts_with("raw"))
        .and_then(|r| r.samples.percentile_ms(0.5));
    print_table(report, stack, &rows, baseline);
    Ok(exit::OK)
}

async fn measure_store(
    a: &Connection,
    b: &Connection,
    n: usize,
    run_id: u32,
) -> Result<Vec<Row>, Failure> {
    let store = a.state_store();
    let key = format!("leasedlock-bench/{run_id}/key");
    let mut get = Samples::new();
    for _ in 0..n {
        let started = Instant::now();
        store.get(key.clone(), None).await?;
        get.push(started.elapsed());
    }

    let lease = a.lease(format!("leasedlock-bench/{run_id}/lease"))?;
    let (mut acquire, mut release, mut cycle) = (Samples::new(), Samples::new(), Samples::new());
    for _ in 0..n {
        let started = Instant::now();
        if !lease.acquire(BENCH_TTL, &AcquireOptions::new()).await? {
            return Err(Failure::new(
                exit::NO,
                "the benchmark lease is held by someone else",
            ));
        }
        let acquired = Instant::now();
        lease.release().await?;
        let done = Instant::now();
        acquire.push(acquired - started);
        release.push(done - acquired);
        cycle.push(done - started);
    }
    lease.detach();

    let lock_name = format!("leasedlock-bench/{run_id}/lock");
    let locks = [
        Arc::new(a.lock(lock_name.clone())?),
        Arc::new(b.lock(lock_name)?),
    ];
    let options = LockOptions::new().max_jitter(Duration::ZERO);
    let mut handover = Samples::new();
    locks[0].lock(BENCH_TTL, &options).await?;
    for i in 0..n {
        let (holder, waiter) = (&locks[i % 2], locks[(i + 1) % 2].clone());
        let wait_options = options.clone();
        let waiting = tokio::spawn(async move {
            let result = waiter.lock(BENCH_TTL, &wait_options).await;
            (result, Instant::now())
        });
        tokio::time::sleep(WAITER_SETTLE).await;
        let released = Instant::now();
        holder.unlock().await?;
        let (result, acquired) = waiting
            .await
            .map_err(|e| Failure::new(exit::NO, format!("the waiting task failed: {e}")))?;
        result?;
        handover.push(acquired.saturating_duration_since(released));
    }
    let _ = locks[n % 2].unlock().await;

    Ok(vec![
        Row {
            name: "state store GET",
            samples: get,
        },
        Row {
            name: "lease acquire (SET NEX PX)",
            samples: acquire,
        },
        Row {
            name: "lease release (VDEL)",
            samples: release,
        },
        Row {
            name: "acquire + release cycle",
            samples: cycle,
        },
        Row {
            name: "lock handover (unlock -> waiter holds)",
            samples: handover,
        },
    ])
}

/// The raw round trip: a requester publishes QoS 1 with a response topic and correlation data;
/// a responder echoes it to the response topic. Plain TCP only (the baseline needs no TLS to be
/// meaningful on loopback; a TLS broker is reported as skipped).
async fn raw_round_trips(
    global: &GlobalOptions,
    addr: &BrokerAddr,
    n: usize,
    run_id: u32,
) -> Result<Samples, String> {
    if addr.tls || global.tls || global.tls_ca.is_some() || global.tls_cert.is_some() {
        return Err("the raw baseline client speaks plain TCP only".into());
    }
    let password = read_password(global)?;
    let options = |id: String| {
        let mut o = MqttOptions::new(id, addr.host.clone(), addr.port);
        o.set_keep_alive(Duration::from_secs(30));
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        o.set_network_options(network);
        if let Some(user) = &global.username {
            o.set_credentials(user.clone(), password.clone().unwrap_or_default());
        }
        o
    };
    let request_topic = format!("leasedlock-bench/{run_id}/raw/request");
    let response_topic = format!("leasedlock-bench/{run_id}/raw/response");
    let (responder, mut responder_rx) =
        raw_client(options(format!("leasedlock-bench-{run_id}-echo")));
    let (requester, mut requester_rx) =
        raw_client(options(format!("leasedlock-bench-{run_id}-raw")));
    let subscribe = |c: &AsyncClient, topic: &str| {
        let c = c.clone();
        let topic = topic.to_string();
        async move {
            c.subscribe_many(vec![Filter::new(topic, QoS::AtLeastOnce)])
                .await
        }
    };
    subscribe(&responder, &request_topic)
        .await
        .map_err(|e| e.to_string())?;
    subscribe(&requester, &response_topic)
        .await
        .map_err(|e| e.to_string())?;
    for rx in [&mut responder_rx.subacks, &mut requester_rx.subacks] {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .map_err(|_| "no SUBACK from the broker".to_string())?;
    }
    let echo = responder.clone();
    let echo_task = tokio::spawn(async move {
        while let Some(request) = responder_rx.publishes.recv().await {
            let props = request.properties.unwrap_or_default();
            let Some(topic) = props.response_topic else {
                continue;
            };
            let reply = PublishProperties {
                correlation_data: props.correlation_data,
                ..Default::default()
            };
            if echo
                .publish_with_properties(topic, QoS::AtLeastOnce, false, request.payload, reply)
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut samples = Samples::new();
    for i in 0..n {
        let correlation = Bytes::from(u128::try_from(i).unwrap_or(0).to_be_bytes().to_vec());
        let props = PublishProperties {
            response_topic: Some(response_topic.clone()),
            correlation_data: Some(correlation.clone()),
            message_expiry_interval: Some(10),
            ..Default::default()
        };
        let started = Instant::now();
        requester
            .publish_with_properties(
                request_topic.clone(),
                QoS::AtLeastOnce,
                false,
                Bytes::from_static(b"ping"),
                props,
            )
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let reply =
                tokio::time::timeout(Duration::from_secs(10), requester_rx.publishes.recv())
                    .await
                    .map_err(|_| "no echo within 10 s".to_string())?
                    .ok_or("the requester's connection ended")?;
            if reply.properties.and_then(|p| p.correlation_data).as_ref() == Some(&correlation) {
                break;
            }
        }
        samples.push(started.elapsed());
    }
    echo_task.abort();
    let _ = requester.disconnect().await;
    let _ = responder.disconnect().await;
    Ok(samples)
}

/// What a raw client's event loop delivers.
struct RawEvents {
    publishes: mpsc::UnboundedReceiver<Publish>,
    subacks: mpsc::UnboundedReceiver<()>,
}

fn raw_client(options: MqttOptions) -> (AsyncClient, RawEvents) {
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let (pub_tx, publishes) = mpsc::unbounded_channel();
    let (sub_tx, subacks) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if pub_tx.send(p).is_err() {
                        return;
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = sub_tx.send(());
                }
                Ok(Event::Incoming(Packet::Disconnect(_))) => return,
                Ok(_) => {}
                // The benchmark ends the connection itself; any error ends this loop.
                Err(_) => return,
            }
        }
    });
    (client, RawEvents { publishes, subacks })
}

fn print_table(report: Report, stack: &Stack, rows: &[Row], baseline: Option<f64>) {
    let ratio = |p50: Option<f64>| match (p50, baseline) {
        (Some(v), Some(b)) if b > 0.0 => Some((v / b * 100.0).round() / 100.0),
        _ => None,
    };
    if report.is_json() {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| {
                let p50 = r.samples.percentile_ms(0.5);
                json!({
                    "name": r.name,
                    "n": r.samples.len(),
                    "p50_ms": p50.map(round_ms),
                    "p99_ms": r.samples.percentile_ms(0.99).map(round_ms),
                    "mean_ms": r.samples.mean_ms().map(round_ms),
                    "p50_vs_raw": ratio(p50),
                })
            })
            .collect();
        report.json(&json!({
            "broker": stack.addr.to_string(),
            "embedded_broker": stack.is_embedded(),
            "rows": rows,
        }));
        return;
    }
    let cell = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
    report.line(&format!(
        "{:<40} {:>6} {:>9} {:>9} {:>9} {:>9}",
        "operation", "n", "p50 ms", "p99 ms", "mean ms", "p50/raw"
    ));
    for r in rows {
        let p50 = r.samples.percentile_ms(0.5);
        report.line(&format!(
            "{:<40} {:>6} {:>9} {:>9} {:>9} {:>9}",
            r.name,
            r.samples.len(),
            cell(p50),
            cell(r.samples.percentile_ms(0.99)),
            cell(r.samples.mean_ms()),
            ratio(p50)
                .map(|x| format!("{x:.2}x"))
                .unwrap_or_else(|| "-".into())
        ));
    }
}
