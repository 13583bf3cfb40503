//! leasedlock attached to an application's own rumqttc connection (`leasedlock_tokio::attach`),
//! against Mosquitto (`LEASEDLOCK_TEST_BROKER`, default 127.0.0.1:1883) and an in-process
//! emulator.
//!
//! The whole shared scenario suite runs over attached connections (a broker restart on a
//! private Mosquitto included), each driven by an application loop of the kind the crate
//! documents; and one test has the application carry its own traffic on the same connection
//! while its lease is acquired, renewed, contended and released.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use leasedlock_scenarios::api::{AdapterConn, ApiConn};
use leasedlock_scenarios::util::{must, unique};
use leasedlock_scenarios::{self as sc, BoxFuture, Env, Failure};
use leasedlock_tokio::{
    attach, AcquireOptions, AttachOptions, Attached, Connection, ConnectionOptions, LockOptions,
};
use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use tokio::sync::mpsc;

/// The application's side of an attached connection: its client, and its loop's task.
struct App {
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
    /// Events the loop saw that `Attached` reported as leasedlock's own.
    ours: Arc<AtomicU64>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The application's MQTT options: MQTT 5, the client id leasedlock is told, no Nagle delay.
fn app_options(host: &str, port: u16, client_id: &str) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, host, port);
    options.set_keep_alive(Duration::from_secs(5));
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    options.set_network_options(network);
    options
}

/// The application's loop: every polled result goes to `attached` first; the application
/// subscribes to `own_topic` on each CONNACK and forwards what arrives there (and is not
/// leasedlock's) to `own`.
async fn app_loop(
    mut event_loop: EventLoop,
    attached: Attached,
    client: AsyncClient,
    own_topic: Option<String>,
    own: mpsc::UnboundedSender<Publish>,
    ours: Arc<AtomicU64>,
) {
    loop {
        let polled = event_loop.poll().await;
        if attached.handle(&polled) {
            ours.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                // Later connections resume the session.
                event_loop.options.set_clean_start(false);
                if let Some(topic) = &own_topic {
                    // Never await the client inside the loop that drains it.
                    let _ = client.try_subscribe(topic.as_str(), QoS::AtLeastOnce);
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let _ = own.send(publish);
            }
            // The application's reconnect back-off.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Ok(_) => {}
        }
    }
}

/// Starts an application connection with leasedlock attached, and waits until it is up.
async fn start_app(
    options: MqttOptions,
    request_timeout: Duration,
    own_topic: Option<String>,
) -> (Connection, App, mpsc::UnboundedReceiver<Publish>) {
    let client_id = options.client_id();
    let (client, event_loop) = AsyncClient::new(options, 64);
    let (conn, attached) = attach(
        client.clone(),
        AttachOptions::new(client_id.as_str()).request_timeout(request_timeout),
    )
    .await
    .expect("attach");
    let (own_tx, own_rx) = mpsc::unbounded_channel();
    let ours = Arc::new(AtomicU64::new(0));
    let task = tokio::spawn(app_loop(
        event_loop,
        attached,
        client.clone(),
        own_topic,
        own_tx,
        ours.clone(),
    ));
    tokio::time::timeout(Duration::from_secs(10), conn.wait_connected())
        .await
        .expect("attached connection up in time")
        .expect("attached connection up");
    (conn, App { client, task, ours }, own_rx)
}

/// An attached connection as the shared scenarios drive it: closing or aborting it also ends
/// the application's loop (an abort drops the MQTT connection, as a crashed process would).
#[derive(Clone)]
struct AttachedConn {
    conn: Connection,
    app: Arc<App>,
}

impl AdapterConn for AttachedConn {
    fn api(&self) -> &leasedlock_api::Connection {
        self.conn.as_api()
    }
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.conn.close().await;
            let _ = self.app.client.try_disconnect();
        })
    }
    fn abort(&self) {
        self.conn.abort();
        self.app.task.abort();
    }
}

#[derive(Clone)]
struct TokioAttached;

impl sc::Runtime for TokioAttached {
    type Conn = ApiConn<AttachedConn>;

    fn connect(&self, spec: sc::ConnectSpec) -> BoxFuture<'static, Result<Self::Conn, Failure>> {
        Box::pin(async move {
            let options = app_options(&spec.host, spec.port, &spec.client_id);
            let (conn, app, _own) = start_app(options, spec.request_timeout, None).await;
            Ok(ApiConn(AttachedConn {
                conn,
                app: Arc::new(app),
            }))
        })
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        tokio::spawn(task);
    }
}

fn run(f: impl std::future::Future<Output = ()>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(f);
}

leasedlock_scenarios::scenario_tests!(TokioAttached, run);

/// Receives the application's own message `n` on its topic, within a bound.
async fn own_message(rx: &mut mpsc::UnboundedReceiver<Publish>, topic: &str, n: u32) {
    let publish = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("the application's message {n} did not arrive"))
        .expect("the application's loop runs");
    assert_eq!(publish.topic, Bytes::from(topic.to_string()));
    assert_eq!(publish.payload, Bytes::from(format!("app-{n}")));
}

/// The application's connection carries its own subscription and messages while leasedlock,
/// attached to it, acquires a lease, keeps it past its duration by renewing, holds off a
/// contender on a connection of its own, releases it to the contender, and then waits for it
/// with a lock (which needs key notifications on the shared connection). Every application
/// message arrives, in order, none reported as leasedlock's; leasedlock's own events are; and
/// after leasedlock closes the application's connection still works.
#[test]
fn application_traffic_shares_the_connection_with_a_contended_lease() {
    run(async {
        let env = Env::with_emulator();
        let own_topic = unique("attach-app/in");
        let client_id = unique("attach-app");
        let (conn, app, mut own) = start_app(
            app_options(env.host(), env.port(), &client_id),
            Duration::from_secs(1),
            Some(own_topic.clone()),
        )
        .await;
        assert_eq!(conn.client_id(), client_id);
        let contender = Connection::connect(
            ConnectionOptions::new(env.host(), env.port(), unique("attach-rival"))
                .request_timeout(Duration::from_secs(1)),
        )
        .await
        .expect("contender connects");

        // The application's own subscription is in place once a message comes back; what
        // was sent before that is not expected.
        let mut sent = 0u32;
        let mut say = |client: &AsyncClient| {
            sent += 1;
            client
                .try_publish(
                    own_topic.as_str(),
                    QoS::AtLeastOnce,
                    false,
                    format!("app-{sent}"),
                )
                .expect("room in the application's channel");
            sent
        };
        let mut subscribed = false;
        for _ in 0..50 {
            say(&app.client);
            if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), own.recv()).await
            {
                subscribed = true;
                break;
            }
        }
        assert!(subscribed, "the application's subscription works");
        let n = say(&app.client);
        // Drains stragglers sent before the subscription, then expects `n`.
        loop {
            let publish = tokio::time::timeout(Duration::from_secs(5), own.recv())
                .await
                .expect("the application's message arrives")
                .expect("the application's loop runs");
            if publish.payload == format!("app-{n}").as_bytes() {
                break;
            }
        }

        let name = unique("attach-lease");
        let lease = conn.lease(name.clone()).expect("lease handle");
        let duration = Duration::from_secs(2);
        let renewed = AcquireOptions::new().renew(Duration::from_millis(400));
        let acquired = must(
            &TokioAttached,
            Duration::from_secs(5),
            "acquire",
            lease.acquire(duration, &renewed),
        )
        .await
        .expect("acquire");
        assert!(acquired, "the lease was free");
        let n = say(&app.client);
        own_message(&mut own, &own_topic, n).await;

        // The contender is refused while renewals keep the lease, past its duration.
        let rival = contender.lease(name.clone()).expect("rival lease handle");
        let once = AcquireOptions::new();
        let held_since = std::time::Instant::now();
        while held_since.elapsed() < duration * 2 {
            let got = rival.acquire(duration, &once).await.expect("rival attempt");
            assert!(!got, "held by the attached application");
            let n = say(&app.client);
            own_message(&mut own, &own_topic, n).await;
        }
        assert!(
            lease.token().is_ok(),
            "still held: renewed through the shared connection"
        );

        // Released: the contender takes it.
        lease.release().await.expect("release");
        let got = rival.acquire(duration, &once).await.expect("rival attempt");
        assert!(got, "free after the release");

        // The attached side waits for it as a lock: the contender's release reaches it as a
        // key notification on the shared connection.
        let lock = conn.lock(name.clone()).expect("lock handle");
        let waiting = tokio::spawn(async move {
            let options = LockOptions::new().wait_timeout(Duration::from_secs(10));
            let token = lock.lock(duration, &options).await;
            (lock, token)
        });
        let n = say(&app.client);
        own_message(&mut own, &own_topic, n).await;
        rival.release().await.expect("rival release");
        let (lock, token) = must(&TokioAttached, Duration::from_secs(10), "lock", waiting)
            .await
            .expect("waiter task");
        token.expect("the attached waiter gets the lock after the contender's release");
        lock.unlock().await.expect("unlock");

        assert!(
            app.ours.load(Ordering::Relaxed) > 0,
            "leasedlock's replies were reported as its own"
        );
        conn.close().await;
        contender.close().await;

        // The application's connection outlives leasedlock.
        for _ in 0..3 {
            let n = say(&app.client);
            own_message(&mut own, &own_topic, n).await;
        }
        assert!(
            own.try_recv().is_err(),
            "nothing but the application's messages"
        );
    });
}

/// The application resumes a session its client id left on the broker earlier (clean start
/// off, a session expiry): the first CONNACK says the session is present, yet none of
/// leasedlock's subscriptions can be in it (the engine subscribes until its response topic was
/// granted once, whatever the session flag says). Its requests are answered.
#[test]
fn attaching_to_a_resumed_session_still_subscribes() {
    run(async {
        let env = Env::with_emulator();
        let client_id = unique("attach-resume");
        let resumable = || {
            let mut options = app_options(env.host(), env.port(), &client_id);
            options.set_clean_start(false);
            options.set_session_expiry_interval(Some(60));
            options
        };
        // An earlier run of the application: connects, leaves its session behind.
        let (earlier, mut event_loop) = AsyncClient::new(resumable(), 8);
        let first = tokio::time::timeout(Duration::from_secs(5), event_loop.poll())
            .await
            .expect("the earlier run connects in time");
        assert!(matches!(first, Ok(Event::Incoming(Packet::ConnAck(_)))));
        earlier.try_disconnect().expect("disconnect queued");
        tokio::time::timeout(Duration::from_secs(5), async {
            while !matches!(
                event_loop.poll().await,
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_)
            ) {}
        })
        .await
        .expect("the earlier run disconnects in time");
        drop(event_loop);

        let (conn, _app, _own) = start_app(resumable(), Duration::from_secs(1), None).await;
        let store = conn.state_store();
        let key = unique("attach-resume-key");
        let set = must(
            &TokioAttached,
            Duration::from_secs(5),
            "set",
            store.set(key.clone(), "v", &leasedlock_tokio::SetOptions::new()),
        )
        .await
        .expect("the store answers on the resumed session");
        assert!(set.applied);
        conn.close().await;
    });
}
