//! Results: one JSON file per scenario, a Markdown table.

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

use crate::peers::PeerId;

/// One server's result in one scenario.
pub struct ServerResult {
    pub peer: PeerId,
    /// ok, failed, skipped or pending.
    pub status: String,
    pub error: Option<String>,
    pub figures: Map<String, Value>,
    pub histogram: Option<Histogram<u64>>,
    /// Parts of `histogram` charted apart, by name.
    pub split: Vec<(String, Histogram<u64>)>,
}

/// One scenario against every server.
pub struct ScenarioRun {
    pub name: String,
    pub title: String,
    pub parameters: Value,
    pub servers: Vec<ServerResult>,
    /// The server ratios are computed against.
    pub baseline: Option<PeerId>,
}

/// The scenario family of a name (`idle-1000` → `idle`).
pub fn family(name: &str) -> &str {
    for f in ["idle", "fanout", "cluster-fanout"] {
        if name.starts_with(f) {
            return f;
        }
    }
    name
}

/// The figures shown in tables: (key, label).
pub fn headline(name: &str) -> &'static [(&'static str, &'static str)] {
    match family(name) {
        "connect" | "connect-upgrade" => &[
            ("connects_per_s", "connects/s"),
            ("p50_ms", "p50 ms"),
            ("p99_ms", "p99 ms"),
            ("errors", "errors"),
            ("cpu_us_per_connect", "server CPU µs/connect"),
        ],
        "refused" => &[
            ("attempts_per_s", "bad-token handshakes/s"),
            ("answer", "answer"),
            ("cpu_us_per_attempt", "server CPU µs/attempt"),
            ("rss_before_mib", "RSS before MiB"),
            ("rss_peak_mib", "RSS peak MiB"),
            ("rss_after_mib", "RSS after MiB"),
        ],
        "idle" => &[("kib_per_conn", "KiB/conn"), ("errors", "errors")],
        "cluster-fanout" => &[
            ("deliveries_per_s", "deliveries/s"),
            ("cross_node_deliveries_per_s", "cross-node deliveries/s"),
            ("same_node_p50_ms", "same-node p50 ms"),
            ("same_node_p99_ms", "same-node p99 ms"),
            ("cross_node_p50_ms", "cross-node p50 ms"),
            ("cross_node_p99_ms", "cross-node p99 ms"),
            ("lost", "lost"),
            ("redis_commands_per_broadcast", "Redis commands/broadcast"),
            ("redis_commands_per_broadcast_net", "net of background"),
            ("cpu_us_per_delivery", "CPU µs/delivery (3 nodes)"),
            ("kernel_cpu_us_per_delivery", "of it in the kernel"),
            ("loadgen_cpu_us_per_delivery", "load generator µs/delivery"),
        ],
        "fanout" => &[
            ("deliveries_per_s", "deliveries/s"),
            ("p50_ms", "p50 ms"),
            ("p99_ms", "p99 ms"),
            ("lost", "lost"),
        ],
        _ => &[
            ("achieved_rate", "acks/s"),
            ("p50_ms", "p50 ms"),
            ("p99_ms", "p99 ms"),
            ("p999_ms", "p999 ms"),
            ("lost", "lost"),
        ],
    }
}

/// The baseline of ratios: the first Portcullis peer that ran.
pub fn baseline(peers: &[PeerId], runnable: impl Fn(PeerId) -> bool) -> Option<PeerId> {
    [
        PeerId::PortcullisEmbedded,
        PeerId::PortcullisTunnel,
        PeerId::PortcullisTunnelRust,
        PeerId::PortcullisEcho,
        PeerId::PortcullisCluster,
        PeerId::PortcullisClusterTunnelRust,
    ]
    .into_iter()
    .find(|p| peers.contains(p) && runnable(*p))
}

fn ratios(figures: &Map<String, Value>, base: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in figures {
        if let (Some(a), Some(b)) = (v.as_f64(), base.get(k).and_then(Value::as_f64))
            && b != 0.0
        {
            out.insert(k.clone(), json!((a / b * 1000.0).round() / 1000.0));
        }
    }
    out
}

impl ScenarioRun {
    pub fn to_json(&self, meta: &Value) -> Value {
        let baseline = self.baseline;
        let base = baseline.and_then(|b| {
            self.servers
                .iter()
                .find(|s| s.peer == b && s.status == "ok")
                .map(|s| &s.figures)
        });
        let servers: Vec<Value> = self
            .servers
            .iter()
            .map(|s| {
                json!({
                    "peer": s.peer.name(),
                    "label": s.peer.label(),
                    "description": s.peer.description(),
                    "status": s.status,
                    "error": s.error,
                    "figures": s.figures,
                    "ratio_to_portcullis": match (base, s.status.as_str()) {
                        (Some(base), "ok") => Value::Object(ratios(&s.figures, base)),
                        _ => Value::Null,
                    },
                })
            })
            .collect();
        let mut doc = meta.clone();
        if let Value::Object(map) = &mut doc {
            map.insert("scenario".into(), json!(self.name));
            map.insert("title".into(), json!(self.title));
            map.insert("parameters".into(), self.parameters.clone());
            map.insert("baseline".into(), json!(baseline.map(PeerId::name)));
            map.insert(
                "ratio_note".into(),
                json!("ratio_to_portcullis = this server's figure / the baseline Portcullis peer's figure"),
            );
            map.insert("servers".into(), Value::Array(servers));
        }
        doc
    }
}

fn format_value(v: &Value) -> String {
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if n.is_u64() || n.is_i64() {
                n.to_string()
            } else if x.abs() >= 1000.0 {
                format!("{x:.0}")
            } else if x.abs() >= 10.0 {
                format!("{x:.1}")
            } else {
                format!("{x:.2}")
            }
        }
        Value::String(s) => s.clone(),
        Value::Null => "–".into(),
        other => other.to_string(),
    }
}

/// The Markdown tables of a run: one row per scenario figure, one column
/// per server; cells hold the figure and its ratio to the baseline. Runs
/// with the same servers share a table (the cluster peers get their own).
pub fn markdown(runs: &[ScenarioRun]) -> String {
    let mut groups: Vec<(Vec<PeerId>, Vec<&ScenarioRun>)> = Vec::new();
    for run in runs {
        let peers: Vec<PeerId> = run.servers.iter().map(|s| s.peer).collect();
        match groups.iter_mut().find(|(p, _)| *p == peers) {
            Some((_, list)) => list.push(run),
            None => groups.push((peers, vec![run])),
        }
    }
    let several = groups.len() > 1;
    let mut md = String::new();
    for (peers, runs) in groups {
        if several {
            if !md.is_empty() {
                md.push('\n');
            }
            let baseline = runs.iter().find_map(|r| r.baseline);
            md.push_str(&format!(
                "Servers: {}; baseline {}.\n\n",
                peers
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", "),
                baseline.map_or("none", PeerId::name)
            ));
        }
        md.push_str(&table(&runs, &peers));
    }
    md
}

fn table(runs: &[&ScenarioRun], peers: &[PeerId]) -> String {
    let mut md = String::new();
    md.push_str("| scenario | figure |");
    for p in peers {
        md.push_str(&format!(" {} |", p.label()));
    }
    md.push_str("\n|---|---|");
    for _ in peers {
        md.push_str("---|");
    }
    md.push('\n');
    for run in runs {
        let baseline = run.baseline;
        let base = baseline.and_then(|b| {
            run.servers
                .iter()
                .find(|s| s.peer == b && s.status == "ok")
                .map(|s| &s.figures)
        });
        for (i, (key, label)) in headline(&run.name).iter().enumerate() {
            md.push_str(&format!(
                "| {} | {} |",
                if i == 0 { run.name.as_str() } else { "" },
                label
            ));
            for p in peers {
                let cell = match run.servers.iter().find(|s| s.peer == *p) {
                    None => "".to_owned(),
                    Some(s) if s.status != "ok" => {
                        if i == 0 {
                            s.status.clone()
                        } else {
                            "–".to_owned()
                        }
                    }
                    Some(s) => {
                        let v = s.figures.get(*key).cloned().unwrap_or(Value::Null);
                        let mut cell = format_value(&v);
                        if Some(*p) != baseline
                            && let (Some(a), Some(b)) = (
                                v.as_f64(),
                                base.and_then(|b| b.get(*key)).and_then(Value::as_f64),
                            )
                            && b != 0.0
                            && !matches!(*key, "errors" | "lost" | "answer")
                        {
                            cell.push_str(&format!(" ({:.2}×)", a / b));
                        }
                        cell
                    }
                };
                md.push_str(&format!(" {cell} |"));
            }
            md.push('\n');
        }
    }
    md
}
