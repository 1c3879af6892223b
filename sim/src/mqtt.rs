//! Broker address and client options shared by the simulator's connections.

use std::time::Duration;

use rumqttc::MqttOptions;

/// Where the broker is and how to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BrokerError {
    #[error("broker url {0:?}: expected mqtt://HOST[:PORT] (TLS is not simulated)")]
    Url(String),
}

impl Broker {
    /// `mqtt://host[:port]` (port 1883 by default).
    pub fn parse(url: &str) -> Result<Broker, BrokerError> {
        let rest = url
            .strip_prefix("mqtt://")
            .ok_or_else(|| BrokerError::Url(url.to_string()))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| BrokerError::Url(url.to_string()))?,
            ),
            None => (rest, 1883),
        };
        if host.is_empty() {
            return Err(BrokerError::Url(url.to_string()));
        }
        Ok(Broker {
            host: host.to_string(),
            port,
            username: None,
            password: None,
        })
    }

    /// Client options: `keep_alive`, an in-flight window of `inflight` QoS 1 publishes, and
    /// packets up to 1 MiB.
    pub fn options(&self, client_id: &str, keep_alive: Duration, inflight: u16) -> MqttOptions {
        let mut o = MqttOptions::new(client_id, self.host.clone(), self.port);
        o.set_keep_alive(keep_alive.max(Duration::from_secs(5)));
        o.set_inflight(inflight.max(1));
        o.set_max_packet_size(1024 * 1024, 1024 * 1024);
        if let Some(user) = &self.username {
            o.set_credentials(user.clone(), self.password.clone().unwrap_or_default());
        }
        o
    }
}

/// Wall clock, ms since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_broker_urls() {
        let b = Broker::parse("mqtt://127.0.0.1:1999").expect("valid");
        assert_eq!((b.host.as_str(), b.port), ("127.0.0.1", 1999));
        assert_eq!(Broker::parse("mqtt://localhost").expect("valid").port, 1883);
        for bad in [
            "127.0.0.1:1883",
            "mqtts://x:1",
            "mqtt://:1",
            "mqtt://h:port",
        ] {
            assert!(Broker::parse(bad).is_err(), "{bad}");
        }
    }
}
