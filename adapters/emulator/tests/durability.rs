//! `--data-dir`: keys written with `aio-persistence: true` survive an emulator restart; others
//! do not. This binary runs its own emulators one after the other (never two at once: two
//! emulators on one broker would both answer every request).

mod common;

use common::{broker, unique, TestClient, Ts};
use leasedlock_emulator::{Emulator, EmulatorConfig};

async fn start(dir: &std::path::Path) -> Emulator {
    let (host, port) = broker();
    let mut config = EmulatorConfig::new(host, port);
    config.client_id = unique("durable-emulator");
    config.data_dir = Some(dir.to_path_buf());
    Emulator::start(config).await.expect("emulator starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persisted_keys_survive_a_restart() {
    let dir = std::env::temp_dir().join(unique("leasedlock-durable"));
    let _ = std::fs::remove_dir_all(&dir);
    let (kept, volatile, forgotten) = (unique("kept"), unique("volatile"), unique("forgotten"));

    let first = start(&dir).await;
    let mut c = TestClient::connect("durable").await;
    let m = c.build(
        &[b"SET", kept.as_bytes(), b"v1", b"PX", b"60000"],
        Ts::Now,
        None,
        true,
    );
    let r = c.roundtrip(m).await;
    assert_eq!(&r.payload[..], b"+OK\r\n");
    let version = common::ts_of(&r).unwrap();
    c.call(&[b"SET", volatile.as_bytes(), b"v"]).await;
    let m = c.build(&[b"SET", forgotten.as_bytes(), b"v"], Ts::Now, None, true);
    c.roundtrip(m).await;
    // Overwritten without persistence: must not come back.
    c.call(&[b"SET", forgotten.as_bytes(), b"w"]).await;
    first.shutdown().await;

    let second = start(&dir).await;
    let g = c.call(&[b"GET", kept.as_bytes()]).await;
    assert_eq!(&g.payload[..], b"$2\r\nv1\r\n");
    assert_eq!(common::ts_of(&g), Some(version.clone()));
    assert_eq!(
        &c.call(&[b"GET", volatile.as_bytes()]).await.payload[..],
        b"$-1\r\n"
    );
    assert_eq!(
        &c.call(&[b"GET", forgotten.as_bytes()]).await.payload[..],
        b"$-1\r\n"
    );
    // New versions stay above restored ones.
    let r = c.call(&[b"SET", kept.as_bytes(), b"v2"]).await;
    assert!(common::ts_of(&r).unwrap() > version);
    second.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
