//! A real OTLP receiver for tests: the Rotel collector (installed by
//! `scripts/ensure-otel-receiver.sh`), listening for gRPC and HTTP on free
//! loopback ports, with its debug log of every span read back as records.

use std::{collections::HashMap, path::PathBuf, process::Stdio};

use crate::platform::free_port;

/// One span as the receiver logged it.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    pub service: String,
    pub trace_id: String,
    pub parent_id: String,
    pub id: String,
    pub name: String,
    pub kind: String,
    pub status: String,
    pub attributes: HashMap<String, String>,
}

pub struct Receiver {
    pub grpc: String,
    pub http: String,
    log: PathBuf,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

fn binary() -> PathBuf {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/ensure-otel-receiver.sh"
    );
    let out = std::process::Command::new(script)
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/ensure-otel-receiver.sh");
    assert!(
        out.status.success(),
        "scripts/ensure-otel-receiver.sh failed"
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

impl Receiver {
    /// Starts the receiver and waits until both endpoints accept connections.
    pub async fn start() -> Receiver {
        let dir = tempfile::tempdir().expect("temp dir");
        let (grpc_port, http_port) = (free_port(), free_port());
        let log = dir.path().join("spans.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = tokio::process::Command::new(binary())
            .args([
                "start",
                "--otlp-grpc-endpoint",
                &format!("127.0.0.1:{grpc_port}"),
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{http_port}"),
                "--exporter",
                "blackhole",
                "--debug-log",
                "traces",
                "--debug-log-verbosity",
                "detailed",
                "--pid-file",
                &dir.path().join("rotel.pid").display().to_string(),
                "--log-file",
                &dir.path().join("rotel.log").display().to_string(),
            ])
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .expect("start the OTLP receiver");
        for port in [grpc_port, http_port] {
            crate::platform::eventually(
                std::time::Duration::from_secs(20),
                "the OTLP receiver listening",
                || async move {
                    tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .ok()
                        .map(|_| ())
                },
            )
            .await;
        }
        Receiver {
            grpc: format!("http://127.0.0.1:{grpc_port}"),
            http: format!("http://127.0.0.1:{http_port}"),
            log,
            _child: child,
            _dir: dir,
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        parse(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }
}

/// Reads the receiver's debug log: `Resource attributes` (with
/// `service.name`) then `Span #n` blocks of `Key : value` lines and
/// `-> attribute: Type(value)` lines.
fn parse(text: &str) -> Vec<ReceivedSpan> {
    let mut spans = Vec::new();
    let mut service = String::new();
    let mut current: Option<ReceivedSpan> = None;
    let mut in_resource = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("ResourceSpans #") {
            spans.extend(current.take());
            in_resource = true;
            continue;
        }
        if t.starts_with("Span #") {
            spans.extend(current.take());
            in_resource = false;
            current = Some(ReceivedSpan {
                service: service.clone(),
                trace_id: String::new(),
                parent_id: String::new(),
                id: String::new(),
                name: String::new(),
                kind: String::new(),
                status: String::new(),
                attributes: HashMap::new(),
            });
            continue;
        }
        if let Some(attr) = t.strip_prefix("-> ") {
            let Some((key, value)) = attr.split_once(": ") else {
                continue;
            };
            // `Str(text)`, `Int(1)`, ...: the text inside.
            let value = value
                .split_once('(')
                .map(|(_, v)| v.strip_suffix(')').unwrap_or(v))
                .unwrap_or(value)
                .to_string();
            if in_resource {
                if key == "service.name" {
                    service = value;
                }
            } else if let Some(s) = current.as_mut() {
                s.attributes.insert(key.to_string(), value);
            }
            continue;
        }
        let (Some(s), Some((key, value))) = (current.as_mut(), t.split_once(':')) else {
            continue;
        };
        let value = value.trim().to_string();
        match key.trim() {
            "Trace ID" => s.trace_id = value,
            "Parent ID" => s.parent_id = value,
            "ID" => s.id = value,
            "Name" => s.name = value,
            "Kind" => s.kind = value,
            "Status code" => s.status = value,
            _ => {}
        }
    }
    spans.extend(current);
    spans
}
