//! A broker that refuses the connection in its CONNACK, on the async-std adapter: the connect
//! wait ends with the reason as a typed value, as on the tokio adapter.

use std::error::Error as _;
use std::time::Duration;

use leasedlock_async_std::{ConnackRefusal, ConnectError, Connection, ConnectionOptions};
use leasedlock_scenarios::PrivateBroker;

#[async_std::test]
async fn a_refused_connection_carries_the_connack_reason() {
    let broker = PrivateBroker::start_refusing_anonymous();
    let options = ConnectionOptions::new("127.0.0.1", broker.port(), "refused-client")
        .connect_timeout(Duration::from_secs(1));
    let err = match Connection::connect(options).await {
        Err(e) => e,
        Ok(_) => panic!("connected to a broker that refuses anonymous clients"),
    };
    assert_eq!(err, ConnectError::Refused(ConnackRefusal::NotAuthorized));
    let reason = err
        .source()
        .and_then(|s| s.downcast_ref::<ConnackRefusal>())
        .expect("the reason is the error's source");
    assert_eq!(reason.code(), 0x87);
}
