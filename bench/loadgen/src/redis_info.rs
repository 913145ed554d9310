//! A tiny RESP2 client for what the cluster benchmark asks Redis: `INFO`
//! (command counts and CPU of the whole server) before and after the
//! fan-out rounds, and `MONITOR` during them, to count the commands each
//! broadcast costs on the peer's own connections (the Redis may be shared).
//! No keys are read or written.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Where Redis is: `redis://HOST:PORT[/DB]` with a loopback HOST (an IP
/// address or `localhost`).
pub fn parse_url(url: &str) -> Result<SocketAddr> {
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| anyhow!("{url}: expected redis://HOST:PORT"))?;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.contains('@') {
        bail!("{url}: credentials in the URL are not supported here");
    }
    let authority = authority.replace("localhost", "127.0.0.1");
    let addr: SocketAddr = if authority.contains(':') {
        authority.parse()
    } else {
        format!("{authority}:6379").parse()
    }
    .with_context(|| format!("{url}: expected redis://IP:PORT"))?;
    crate::net::check_loopback(&addr)?;
    Ok(addr)
}

/// One connection to Redis.
pub struct Redis {
    reader: BufReader<TcpStream>,
}

/// What one `INFO commandstats cpu` said.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Calls by command name (`publish`, `client|list`, …).
    pub calls: BTreeMap<String, u64>,
    /// Redis' CPU seconds (user + system, main thread and children).
    pub cpu_s: f64,
}

impl Snapshot {
    /// Calls since `earlier` by command, leaving out `INFO` (this probe's
    /// own); commands with no calls are left out.
    pub fn calls_since(&self, earlier: &Snapshot) -> BTreeMap<String, u64> {
        self.calls
            .iter()
            .filter(|(name, _)| name.as_str() != "info")
            .filter_map(|(name, n)| {
                let d = n.saturating_sub(earlier.calls.get(name).copied().unwrap_or(0));
                (d > 0).then(|| (name.clone(), d))
            })
            .collect()
    }
}

impl Redis {
    pub async fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("no answer within 2 s"))??;
        stream.set_nodelay(true)?;
        Ok(Redis {
            reader: BufReader::new(stream),
        })
    }

    /// Sends one command and reads a simple, integer or bulk string reply.
    async fn command(&mut self, args: &[&str]) -> Result<String> {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        let reply = tokio::time::timeout(Duration::from_secs(5), async {
            self.reader.get_mut().write_all(out.as_bytes()).await?;
            let mut line = String::new();
            self.reader.read_line(&mut line).await?;
            let line = line.trim_end();
            match line.as_bytes().first() {
                Some(b'+') | Some(b':') => Ok(line[1..].to_owned()),
                Some(b'-') => Err(anyhow!("redis: {}", &line[1..])),
                Some(b'$') => {
                    let len: i64 = line[1..].parse().context("bulk length")?;
                    if len < 0 {
                        return Ok(String::new());
                    }
                    let mut body = vec![0u8; len as usize + 2];
                    self.reader.read_exact(&mut body).await?;
                    body.truncate(len as usize);
                    Ok(String::from_utf8_lossy(&body).into_owned())
                }
                None => Err(anyhow!("redis closed the connection")),
                _ => Err(anyhow!("unexpected reply {line:?}")),
            }
        })
        .await
        .map_err(|_| anyhow!("no reply within 5 s"))??;
        Ok(reply)
    }

    pub async fn ping(&mut self) -> Result<()> {
        let pong = self.command(&["PING"]).await?;
        if pong != "PONG" {
            bail!("PING answered {pong:?}");
        }
        Ok(())
    }

    /// `redis_version` from `INFO server`.
    pub async fn version(&mut self) -> Result<Option<String>> {
        let text = self.command(&["INFO", "server"]).await?;
        Ok(info_field(&text, "redis_version").map(str::to_owned))
    }

    pub async fn snapshot(&mut self) -> Result<Snapshot> {
        let text = self.command(&["INFO", "commandstats", "cpu"]).await?;
        Ok(parse_snapshot(&text))
    }
}

/// One command Redis executed, as `MONITOR` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// Unix time, seconds.
    pub at: f64,
    /// The client's address (`127.0.0.1:54112`), or `lua` inside a script.
    pub client: String,
    /// The command, lower case.
    pub command: String,
}

/// At most this many commands are kept (a busy shared Redis).
const MONITOR_CAP: usize = 2_000_000;

/// A `MONITOR` connection: every command Redis executes, from then on.
pub struct Monitor {
    task: tokio::task::JoinHandle<()>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
}

impl Monitor {
    pub async fn start(addr: SocketAddr) -> Result<Self> {
        let mut redis = Redis::connect(addr).await?;
        let ok = redis.command(&["MONITOR"]).await?;
        if ok != "OK" {
            bail!("MONITOR answered {ok:?}");
        }
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            let mut line = String::new();
            loop {
                line.clear();
                match redis.reader.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if let Some(s) = parse_monitor_line(&line) {
                    let mut v = sink.lock().unwrap_or_else(|e| e.into_inner());
                    if v.len() < MONITOR_CAP {
                        v.push(s);
                    }
                }
            }
        });
        Ok(Monitor { task, seen })
    }

    /// Stops watching; what was seen.
    pub fn stop(self) -> Vec<Seen> {
        self.task.abort();
        let mut v = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *v)
    }
}

/// `+1733120000.123456 [0 127.0.0.1:54112] "publish" "chan" "…"`.
pub fn parse_monitor_line(line: &str) -> Option<Seen> {
    let line = line.trim_end().strip_prefix('+')?;
    let (at, rest) = line.split_once(' ')?;
    let rest = rest.strip_prefix('[')?;
    let (inside, rest) = rest.split_once(']')?;
    let client = inside.split_once(' ')?.1;
    let command = rest.trim_start().strip_prefix('"')?.split('"').next()?;
    Some(Seen {
        at: at.parse().ok()?,
        client: client.to_owned(),
        command: command.to_ascii_lowercase(),
    })
}

fn info_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// Parses `cmdstat_<name>:calls=N,usec=…` lines and the `used_cpu_*` fields.
pub fn parse_snapshot(text: &str) -> Snapshot {
    let mut snap = Snapshot::default();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("cmdstat_")
            && let Some((name, fields)) = rest.split_once(':')
            && let Some(calls) = fields
                .split(',')
                .find_map(|f| f.strip_prefix("calls="))
                .and_then(|n| n.parse().ok())
        {
            snap.calls.insert(name.to_owned(), calls);
        } else if let Some((name, value)) = line.split_once(':')
            && matches!(
                name,
                "used_cpu_sys"
                    | "used_cpu_user"
                    | "used_cpu_sys_children"
                    | "used_cpu_user_children"
            )
        {
            snap.cpu_s += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    snap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            parse_url("redis://127.0.0.1:6379").unwrap(),
            "127.0.0.1:6379".parse().unwrap()
        );
        assert_eq!(
            parse_url("redis://localhost/2").unwrap(),
            "127.0.0.1:6379".parse().unwrap()
        );
        assert!(parse_url("redis://10.0.0.1:6379").is_err());
        assert!(parse_url("http://127.0.0.1:6379").is_err());
    }

    #[test]
    fn parses_monitor_lines() {
        let seen = parse_monitor_line(
            "+1733120000.123456 [0 127.0.0.1:54112] \"PUBLISH\" \"chan\" \"a \\\"b\\\"\"\r\n",
        )
        .unwrap();
        assert_eq!(seen.client, "127.0.0.1:54112");
        assert_eq!(seen.command, "publish");
        assert!((seen.at - 1_733_120_000.123456).abs() < 1e-6);
        let lua = parse_monitor_line("+1.5 [0 lua] \"zadd\" \"k\"").unwrap();
        assert_eq!(lua.client, "lua");
        assert!(parse_monitor_line("+OK").is_none());
    }

    #[test]
    fn parses_info() {
        let text = "# CPU\r\nused_cpu_sys:1.50\r\nused_cpu_user:0.25\r\n\r\n# Commandstats\r\n\
            cmdstat_publish:calls=12,usec=30,usec_per_call=2.5,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_client|list:calls=3,usec=9\r\ncmdstat_info:calls=7,usec=1\r\n";
        let a = parse_snapshot(text);
        assert_eq!(a.calls["publish"], 12);
        assert_eq!(a.calls["client|list"], 3);
        assert!((a.cpu_s - 1.75).abs() < 1e-9);
        let mut b = a.clone();
        *b.calls.get_mut("publish").unwrap() += 5;
        *b.calls.get_mut("info").unwrap() += 2;
        b.calls.insert("spublish".into(), 1);
        let d = b.calls_since(&a);
        assert_eq!(d.len(), 2);
        assert_eq!(d["publish"], 5);
        assert_eq!(d["spublish"], 1);
    }
}
