//! The decode stage: messages as intake received them in, decoded ones out to the pipeline.
//!
//! A task of its own between intake and the pipeline: intake then only moves bytes (it must
//! keep reading the connection, see `mqtt.rs`), the many messages a broker may send ahead
//! wait in the intake queue at the size of their payloads, and decoding runs beside rule
//! evaluation instead of before it on the pipeline's task. Only [`DECODED_QUEUE`] decoded
//! messages wait for the pipeline.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

use super::decode::Decoded;
use super::mqtt::{AckToken, Inbound};
use crate::engine::{Input, ReportBody};
use crate::time::Millis;

/// Decoded messages waiting for the pipeline: enough to keep it busy while this stage
/// decodes the next ones, few enough that their memory (about 11 KB a 30-metric report)
/// does not matter.
pub const DECODED_QUEUE: usize = 256;

/// One message the pipeline takes: what it became, when it came, and its ack.
#[derive(Debug)]
pub struct Received {
    pub received_at: Millis,
    pub decoded: Decoded,
    /// The QoS 1 publish to acknowledge once its effects are stored.
    pub ack: Option<AckToken>,
    /// A report's text, which goes on to the store instead of the decoded report
    /// ([`ReportBody`](crate::engine::ReportBody)).
    pub report_text: Option<Arc<str>>,
}

/// Decode what intake queues (topics under `root`) until intake closes its queue, the
/// pipeline stops taking, or shutdown. What is left in either queue is not acknowledged:
/// the broker redelivers it to the next run.
pub async fn run(
    root: String,
    mut inbound: mpsc::Receiver<Inbound>,
    out: mpsc::Sender<Received>,
    mut shutdown: broadcast::Receiver<()>,
) {
    loop {
        let msg = tokio::select! {
            _ = shutdown.recv() => break,
            m = inbound.recv() => match m {
                Some(m) => m,
                None => break,
            },
        };
        let decoded = msg.decode(&root);
        let report_text = match &decoded {
            // One copy of 2 KB rather than holding the intake's buffer.
            Decoded::Input(Input::Report(_)) => ReportBody::text_of(&msg.payload),
            _ => None,
        };
        let received = Received {
            received_at: msg.received_at,
            decoded,
            ack: msg.ack,
            report_text,
        };
        let sent = tokio::select! {
            _ = shutdown.recv() => break,
            sent = out.send(received) => sent,
        };
        if sent.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn inbound(topic: &str, payload: &'static [u8]) -> Inbound {
        Inbound {
            received_at: 1_000,
            topic: topic.to_string(),
            payload: Bytes::from_static(payload),
            ack: None,
        }
    }

    /// Messages come out decoded, in order, each with its receive time; the stage ends when
    /// intake closes its queue.
    #[tokio::test]
    async fn decodes_in_order_and_ends_with_intake() {
        let (in_tx, in_rx) = mpsc::channel(8);
        let (out_tx, mut out_rx) = mpsc::channel(8);
        let (_stop, stop_rx) = broadcast::channel(1);
        let task = tokio::spawn(run("tocsin".into(), in_rx, out_tx, stop_rx));
        in_tx
            .send(inbound("elsewhere/a/b/report", b"{}"))
            .await
            .expect("queued");
        in_tx
            .send(inbound("tocsin/v1/site-a/web-1/report", b"not json"))
            .await
            .expect("queued");
        in_tx
            .send(inbound("tocsin/v1/site-a/web-1/status", b""))
            .await
            .expect("queued");
        drop(in_tx);
        let mut got = Vec::new();
        while let Some(r) = out_rx.recv().await {
            assert_eq!(r.received_at, 1_000);
            got.push(match r.decoded {
                Decoded::Rejected(row) => row.reason,
                Decoded::Ignored => "ignored".to_string(),
                Decoded::Input(_) => "input".to_string(),
            });
        }
        assert_eq!(got, ["bad_topic", "malformed", "ignored"]);
        task.await.expect("stage ends");
    }

    /// A pipeline that stopped taking ends the stage instead of leaving it blocked.
    #[tokio::test]
    async fn ends_when_the_pipeline_is_gone() {
        let (in_tx, in_rx) = mpsc::channel(8);
        let (out_tx, out_rx) = mpsc::channel(1);
        let (_stop, stop_rx) = broadcast::channel(1);
        drop(out_rx);
        let task = tokio::spawn(run("tocsin".into(), in_rx, out_tx, stop_rx));
        in_tx
            .send(inbound("tocsin/v1/site-a/web-1/status", b""))
            .await
            .expect("queued");
        task.await.expect("stage ends");
    }
}
