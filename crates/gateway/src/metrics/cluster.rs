//! The cluster's figures, read at scrape time: live nodes, and the messages
//! this node exchanged with the others through Redis.

use std::sync::atomic::Ordering;

use portcullis_cluster::Cluster;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::labels::Static;

/// `portcullis_cluster_nodes` and `portcullis_cluster_messages_total{event}`.
#[derive(Debug)]
pub(crate) struct ClusterFigures(pub Cluster);

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct EventLabel {
    event: Static,
}

impl Collector for ClusterFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let nodes = ConstGauge::new(self.0.members().len() as i64);
        let family = encoder.encode_descriptor(
            "cluster_nodes",
            "Live gateway nodes of the cluster as this node last read them, itself included.",
            None,
            nodes.metric_type(),
        )?;
        nodes.encode(family)?;
        let counters = self.0.counters();
        let events = [
            ("published", &counters.published),
            ("undelivered", &counters.undelivered),
            ("received", &counters.received),
            ("dropped_inbound", &counters.dropped_inbound),
            ("missing_answers", &counters.missing_answers),
        ];
        let probe = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "cluster_messages",
            "Messages between this node and the others: published, undelivered (Redis unreachable or the queue full), received and applied, dropped_inbound (this node fell behind), missing_answers (nodes that did not answer in time).",
            None,
            probe.metric_type(),
        )?;
        for (event, counter) in events {
            let labels = EventLabel {
                event: Static(event),
            };
            ConstCounter::new(counter.load(Ordering::Relaxed))
                .encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
