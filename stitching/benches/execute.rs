//! The gateway's CPU per request without sockets: the stitching `nested`
//! query and the federation benchmark's `TestQuery` executed against
//! subgraph answers made once (from a synthetic graph) and then replayed, so
//! what is timed is the gateway's own work (building the subgraph requests
//! and their JSON bodies, parsing the answers, merging, shaping and writing
//! the client's JSON). Throughput is the client answer's size, so
//! criterion's figure converts straight into CPU per KB.
//!
//! `cargo bench -p stitching --bench execute`
//!
//! With `EXECUTE_ITERATIONS=N` (and `EXECUTE_ONLY=<name part>`) it runs each
//! workload N times and leaves criterion out, for counting instructions
//! (`scripts/bench-instructions.sh`): a count does not drift with this
//! machine's speed, so a change of 1% shows.
//!
//! With `EXECUTE_COLD=MiB` as well, each subgraph answer comes after that
//! much memory was read, as under load the gateway's data leaves the caches
//! while the subgraphs work: it prints each workload's time per execution
//! without those reads (quartiles of N), for changes that are about cache
//! misses, which the instruction count does not see.

mod common;

/// The gateway's allocator: allocation is a good part of this work.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use apollo_compiler::{
    ast::{Definition, Document, Selection, Value},
    response::{serde_json_bytes::json, JsonMap, JsonValue},
};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::future::BoxFuture;
use stitching::{
    build, coerce_variables,
    execute::{execute, FetchError, Request, SubgraphRequest, Transport},
    prepare, Limits, SubgraphId,
};

/// Answers each distinct request body once from the synthetic store below,
/// then replays the same bytes. The body is serialised on every call, as
/// the gateway does before sending it.
#[derive(Default)]
struct Replay {
    answers: Mutex<HashMap<(SubgraphId, Vec<u8>), Bytes>>,
    /// `EXECUTE_COLD`: memory read before each answer, and the time spent
    /// reading it (left out of the figures).
    cold: Option<Vec<u8>>,
    evicting: Mutex<Duration>,
}

impl Replay {
    fn cold(mib: usize) -> Self {
        Replay {
            cold: Some(vec![1; mib << 20]),
            ..Replay::default()
        }
    }

    /// Reads a line of each 64 bytes of the cold buffer: what the
    /// execution had in the caches is gone after it.
    fn evict(&self, cold: &[u8]) {
        let started = Instant::now();
        let sum = cold.iter().step_by(64).fold(0u8, |a, b| a.wrapping_add(*b));
        std::hint::black_box(sum);
        *self.evicting.lock().expect("not poisoned") += started.elapsed();
    }

    fn evicting(&self) -> Duration {
        *self.evicting.lock().expect("not poisoned")
    }
}

impl Transport for Replay {
    fn fetch<'a>(
        &'a self,
        subgraph: SubgraphId,
        request: SubgraphRequest,
    ) -> BoxFuture<'a, Result<Bytes, FetchError>> {
        let body = serde_json::to_vec(&request).expect("a request serialises");
        let mut answers = self.answers.lock().expect("not poisoned");
        let mut answer = answers
            .entry((subgraph, body))
            .or_insert_with(|| answer(&request))
            .clone();
        if let Some(cold) = &self.cold {
            self.evict(cold);
            // An answer off the socket is a new buffer, just written.
            answer = Bytes::copy_from_slice(&answer);
        }
        Box::pin(async move { Ok(answer) })
    }
}

/// A node of the synthetic graph, resolved field by field as a request
/// selects it (the federation graph is cyclic: users, reviews, products).
enum Node {
    Leaf(JsonValue),
    Object(&'static str, String),
    List(Vec<Node>),
}

fn objects(ty: &'static str, ids: impl IntoIterator<Item = String>) -> Node {
    Node::List(ids.into_iter().map(|id| Node::Object(ty, id)).collect())
}

fn leaf(v: impl Into<JsonValue>) -> Node {
    Node::Leaf(v.into())
}

/// Federation data: users `u0..`, products `p0..`, review `rN` by user
/// `N % USERS` of product `N % PRODUCTS`.
const USERS: usize = 5;
const PRODUCTS: usize = 5;
const REVIEWS: usize = 20;

/// The first number in an id (`u3` -> 3, `p3-in` -> 3).
fn number(id: &str) -> usize {
    let digits: String = id
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().unwrap_or(0)
}

/// One field of one object of either graph.
fn field(ty: &str, id: &str, name: &str) -> Node {
    let n = number(id);
    match (ty, name) {
        (_, "id") => leaf(id),
        ("PipelinePage", "items") => objects("Pipeline", (0..n).map(|i| format!("p{i}"))),
        ("PipelinePage", "total") => leaf(n as i64),
        ("Pipeline", "name") => leaf(format!("pipeline {id}")),
        ("Pipeline", "datasetIds") => {
            Node::List(vec![leaf(format!("{id}-in")), leaf(format!("{id}-out"))])
        }
        ("Pipeline", "dataCatalog") => {
            objects("DatasetBinding", [format!("{id}-in"), format!("{id}-out")])
        }
        ("DatasetBinding", "name") => leaf(if id.ends_with("-in") {
            "input"
        } else {
            "output"
        }),
        ("DatasetBinding", "datasetId") => leaf(id),
        ("Dataset", "name") => leaf(format!("dataset {id}")),
        ("Dataset", "producedByPipelineId") => leaf(id.split('-').next().unwrap_or(id)),
        ("LogPage", "items") => {
            // `pipeline:limit`
            let (pipeline, limit) = id.split_once(':').unwrap_or((id, "0"));
            let limit: usize = limit.parse().unwrap_or(0);
            objects("LogMessage", (0..limit).map(|i| format!("{pipeline}-{i}")))
        }
        ("LogMessage", "message") => leaf(format!("step {id}: finished in {} ms", 40 + n)),
        ("User", "name") => leaf(format!("User {n}")),
        ("User", "username") => leaf(format!("@user{n}")),
        ("User", "birthday") => leaf(1_234_567_890 + n as i64),
        ("User", "reviews") => objects(
            "Review",
            (0..REVIEWS)
                .filter(|r| r % USERS == n)
                .map(|r| format!("r{r}")),
        ),
        ("Product", "upc") => leaf(id),
        ("Product", "name") => leaf(format!("Product {n}")),
        ("Product", "price") => leaf(100 + n as i64),
        ("Product", "weight") => leaf(10 + n as i64),
        ("Product", "inStock") => leaf(n.is_multiple_of(2)),
        ("Product", "shippingEstimate") => leaf((100 + n as i64) * (10 + n as i64) / 100),
        ("Product", "reviews") => objects(
            "Review",
            (0..REVIEWS)
                .filter(|r| r % PRODUCTS == n)
                .map(|r| format!("r{r}")),
        ),
        ("Review", "body") => leaf(format!(
            "Review {n}: it does what it says on the tin, and then some."
        )),
        ("Review", "product") => Node::Object("Product", format!("p{}", n % PRODUCTS)),
        ("Review", "author") => Node::Object("User", format!("u{}", n % USERS)),
        _ => panic!("the bench's graph has no field {ty}.{name}"),
    }
}

/// A root field of either graph's subgraphs.
fn root(name: &str, args: &JsonMap) -> Node {
    let strings = |key: &str| -> Vec<String> {
        args.get(key)
            .and_then(|v| v.as_array())
            .map(|l| {
                l.iter()
                    .filter_map(|v| v.as_str())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    let limit = |default| {
        args.get("limit")
            .or_else(|| args.get("first"))
            .and_then(|v| v.as_i64())
            .unwrap_or(default)
    };
    match name {
        "pipelines" => Node::Object("PipelinePage", limit(10).to_string()),
        "pipelinesByIds" => objects("Pipeline", strings("ids")),
        "datasetsByIds" => objects("Dataset", strings("ids")),
        "pipelineLogPages" => {
            let limit = limit(100);
            objects(
                "LogPage",
                strings("pipelineIds")
                    .into_iter()
                    .map(|p| format!("{p}:{limit}")),
            )
        }
        "users" => objects("User", (0..USERS).map(|i| format!("u{i}"))),
        "topProducts" => objects("Product", (0..limit(5)).map(|i| format!("p{i}"))),
        "_entities" => {
            let representations = args.get("representations").and_then(|v| v.as_array());
            Node::List(
                representations
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        let ty = match r.get("__typename").and_then(|t| t.as_str()) {
                            Some("User") => "User",
                            Some("Product") => "Product",
                            Some("Review") => "Review",
                            other => panic!("no entity type {other:?} here"),
                        };
                        let key = r
                            .get("id")
                            .or_else(|| r.get("upc"))
                            .and_then(|k| k.as_str());
                        Node::Object(ty, key.unwrap_or_default().to_owned())
                    })
                    .collect(),
            )
        }
        other => panic!("the bench's subgraphs have no root field {other}"),
    }
}

/// The subgraph's answer to one request: each root field under its alias,
/// with only the fields the request selects.
fn answer(request: &SubgraphRequest) -> Bytes {
    assert!(request.batch.is_empty(), "no variable batching here");
    let doc =
        Document::parse(&request.query, "request.graphql").expect("the gateway's query parses");
    let Some(Definition::OperationDefinition(op)) = doc.definitions.first() else {
        panic!("the request has no operation");
    };
    let variables = request.variables.to_map();
    let mut data = JsonMap::new();
    for sel in &op.selection_set {
        let Selection::Field(f) = sel else {
            panic!("fragments at the root are not answered here");
        };
        let mut args = JsonMap::new();
        for a in &f.arguments {
            args.insert(a.name.as_str(), argument(&a.value, &variables));
        }
        let key = f.alias.as_ref().unwrap_or(&f.name);
        data.insert(key.as_str(), select(root(&f.name, &args), &f.selection_set));
    }
    Bytes::from(serde_json::to_vec(&json!({ "data": data })).expect("JSON serialises"))
}

fn argument(value: &Value, variables: &JsonMap) -> JsonValue {
    match value {
        Value::Variable(name) => variables
            .get(name.as_str())
            .cloned()
            .unwrap_or(JsonValue::Null),
        Value::Int(i) => json!(i.try_to_i32().unwrap_or_default()),
        Value::String(s) => json!(s.as_str()),
        Value::List(items) => {
            JsonValue::Array(items.iter().map(|v| argument(v, variables)).collect())
        }
        other => panic!("argument {other} is not answered here"),
    }
}

/// The part of `node` a selection asks for.
fn select(node: Node, selection: &[Selection]) -> JsonValue {
    match node {
        Node::Leaf(v) => v,
        Node::List(items) => {
            JsonValue::Array(items.into_iter().map(|i| select(i, selection)).collect())
        }
        Node::Object(ty, id) => JsonValue::Object(object(ty, &id, selection)),
    }
}

fn object(ty: &'static str, id: &str, selection: &[Selection]) -> JsonMap {
    let mut out = JsonMap::new();
    for sel in selection {
        match sel {
            Selection::Field(f) => {
                let key = f.alias.as_ref().unwrap_or(&f.name);
                let value = if f.name == "__typename" {
                    json!(ty)
                } else {
                    select(field(ty, id, &f.name), &f.selection_set)
                };
                out.insert(key.as_str(), value);
            }
            Selection::InlineFragment(inline) => {
                if inline.type_condition.as_ref().is_none_or(|c| c == ty) {
                    out.extend(object(ty, id, &inline.selection_set));
                }
            }
            Selection::FragmentSpread(_) => panic!("fragment spreads are not answered here"),
        }
    }
    out
}

/// Runs one query against its subgraphs' replayed answers; `marker` must
/// appear at least `at_least` times in the answer (it was answered whole).
fn workload(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    specs: Vec<stitching::SubgraphSpec>,
    query: &str,
    (marker, at_least): (&str, usize),
) {
    let supergraph = build(&specs).unwrap_or_else(|e| panic!("{e}"));
    let prepared =
        prepare(&supergraph, query, None, &Limits::default()).unwrap_or_else(|e| panic!("{e:?}"));
    let variables = coerce_variables(&supergraph, &prepared, &JsonMap::new())
        .unwrap_or_else(|e| panic!("{e:?}"));
    let req = Request {
        supergraph: &supergraph,
        document: &prepared.document,
        operation: prepared.operation(),
        plan: &prepared.plan,
        variables: &variables,
        authorization: None,
    };
    let cold: Option<usize> = std::env::var("EXECUTE_COLD")
        .ok()
        .map(|m| m.parse().expect("EXECUTE_COLD is a number of MiB"));
    let replay = cold.map_or_else(Replay::default, Replay::cold);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let run = || {
        rt.block_on(async {
            let response = execute(&req, &replay).await;
            response.into_json().expect("a response serialises")
        })
    };
    let first = run();
    let text = String::from_utf8_lossy(&first);
    assert!(
        !text.contains("\"errors\""),
        "{name}: the answer has errors: {text}"
    );
    assert!(text.matches(marker).count() >= at_least, "{name}: {text}");
    if let Ok(n) = std::env::var("EXECUTE_ITERATIONS") {
        let n: usize = n.parse().expect("EXECUTE_ITERATIONS is a number");
        let only = std::env::var("EXECUTE_ONLY").unwrap_or_default();
        if !name.contains(only.as_str()) {
            return;
        }
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let (evicting, started) = (replay.evicting(), Instant::now());
            std::hint::black_box(run());
            times.push(started.elapsed() - (replay.evicting() - evicting));
        }
        if let Some(mib) = cold {
            times.sort();
            let us = |q: usize| times[(times.len() - 1) * q / 4].as_secs_f64() * 1e6;
            let kb = first.len() as f64 / 1000.0;
            println!(
                "{name} ({kb:.1} KB), {mib} MiB read before each answer: {:.1} / {:.1} / {:.1} µs per execution (quartiles of {n}), {:.2} µs per KB at the median",
                us(1),
                us(2),
                us(3),
                us(2) / kb
            );
        }
        return;
    }
    group.throughput(Throughput::Bytes(first.len() as u64));
    group.bench_function(
        format!("{name} ({:.1} KB)", first.len() as f64 / 1000.0),
        |b| b.iter(|| run().len()),
    );
}

fn executions(c: &mut Criterion) {
    let mut group = c.benchmark_group("execute");
    workload(
        &mut group,
        "stitching nested",
        common::stitched(),
        common::NESTED,
        ("\"producedBy\":{\"name\"", 200),
    );
    workload(
        &mut group,
        "federation TestQuery",
        common::federation(),
        common::TEST_QUERY,
        ("\"shippingEstimate\":", 100),
    );
    group.finish();
}

criterion_group!(benches, executions);
criterion_main!(benches);
