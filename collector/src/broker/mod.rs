//! The embedded MQTT broker (rumqttd), so a single machine needs nothing else.

use std::net::{SocketAddr, TcpListener};

/// Why the embedded broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "embedded broker: cannot listen on {addr}: {source} (is another broker running? set [broker] listen to a free port)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("embedded broker: bad configuration: {0}")]
    Config(String),
}

/// The rumqttd configuration for one MQTT 3.1.1 listener on `listen`.
pub fn config(listen: SocketAddr) -> Result<rumqttd::Config, BrokerError> {
    let text = format!(
        r#"
        id = 0
        [router]
        id = 0
        max_connections = 10010
        max_outgoing_packet_count = 200
        max_segment_size = 104857600
        max_segment_count = 10

        [v4.1]
        name = "tocsin-embedded"
        listen = "{listen}"
        next_connection_delay_ms = 1
            [v4.1.connections]
            connection_timeout_ms = 60000
            max_payload_size = 1048576
            max_inflight_count = 500
            dynamic_filters = true
        "#
    );
    toml::from_str(&text).map_err(|e| BrokerError::Config(e.to_string()))
}

/// Start the broker on its own threads. It lives as long as the process.
pub fn start(listen: SocketAddr) -> Result<(), BrokerError> {
    // rumqttd panics inside its thread when it cannot bind; find out first.
    TcpListener::bind(listen).map_err(|source| BrokerError::Bind {
        addr: listen,
        source,
    })?;
    let config = config(listen)?;
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .map_err(|e| BrokerError::Config(format!("cannot start its thread: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses() {
        let c = config("127.0.0.1:1883".parse().expect("addr")).expect("config");
        assert!(c.v4.is_some_and(|v| {
            v.values()
                .all(|s| s.connections.max_payload_size >= 1 << 20)
        }));
    }

    #[test]
    fn busy_port_is_a_clear_error() {
        let held = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = held.local_addr().expect("addr");
        let err = start(addr).expect_err("port is taken");
        assert!(err.to_string().contains("cannot listen on"), "{err}");
    }
}
