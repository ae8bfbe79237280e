//! The gateway's CPU per request without sockets: the stitching `nested`
//! query executed against subgraph answers made once and then replayed, so
//! what is timed is the gateway's own work (building the subgraph requests
//! and their JSON bodies, parsing the answers, merging, shaping and writing
//! the client's JSON). Throughput is the client answer's size, so
//! criterion's figure converts straight into CPU per KB.
//!
//! `cargo bench -p stitching --bench execute`

mod common;

/// The gateway's allocator: allocation is a good part of this work.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{collections::HashMap, sync::Mutex};

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
}

impl Transport for Replay {
    fn fetch<'a>(
        &'a self,
        subgraph: SubgraphId,
        request: SubgraphRequest,
    ) -> BoxFuture<'a, Result<Bytes, FetchError>> {
        let body = serde_json::to_vec(&request).expect("a request serialises");
        let mut answers = self.answers.lock().expect("not poisoned");
        let answer = answers
            .entry((subgraph, body))
            .or_insert_with(|| answer(&request))
            .clone();
        Box::pin(async move { Ok(answer) })
    }
}

fn pipeline(id: &str) -> JsonValue {
    json!({
        "__typename": "Pipeline",
        "id": id,
        "name": format!("pipeline {id}"),
        "datasetIds": [format!("{id}-in"), format!("{id}-out")],
        "dataCatalog": [
            {"__typename": "DatasetBinding", "name": "input", "datasetId": format!("{id}-in")},
            {"__typename": "DatasetBinding", "name": "output", "datasetId": format!("{id}-out")},
        ],
    })
}

fn dataset(id: &str) -> JsonValue {
    let producer = id.split('-').next().unwrap_or(id);
    json!({
        "__typename": "Dataset",
        "id": id,
        "name": format!("dataset {id}"),
        "producedByPipelineId": producer,
    })
}

fn log_page(pipeline: &str, limit: i64) -> JsonValue {
    let items: Vec<JsonValue> = (0..limit)
        .map(|i| {
            json!({
                "__typename": "LogMessage",
                "id": format!("{pipeline}-{i}"),
                "message": format!("step {i} of pipeline {pipeline}: finished in {} ms", 40 + i),
            })
        })
        .collect();
    json!({"__typename": "LogPage", "items": items})
}

/// A root field of the three subgraphs, in full (selected from afterwards).
fn root(field: &str, args: &JsonMap) -> JsonValue {
    let ids = || -> Vec<String> {
        let list = args.get("ids").or_else(|| args.get("pipelineIds"));
        list.and_then(|v| v.as_array())
            .map(|l| {
                l.iter()
                    .filter_map(|v| v.as_str())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    let limit = args.get("limit").and_then(|v| v.as_i64()).unwrap_or(10);
    match field {
        "pipelines" => {
            let items: Vec<JsonValue> = (0..limit).map(|i| pipeline(&format!("p{i}"))).collect();
            json!({"__typename": "PipelinePage", "items": items, "total": limit})
        }
        "pipelinesByIds" => JsonValue::Array(ids().iter().map(|id| pipeline(id)).collect()),
        "datasetsByIds" => JsonValue::Array(ids().iter().map(|id| dataset(id)).collect()),
        "pipelineLogPages" => {
            JsonValue::Array(ids().iter().map(|id| log_page(id, limit)).collect())
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
    let mut data = JsonMap::new();
    for sel in &op.selection_set {
        let Selection::Field(f) = sel else {
            panic!("fragments at the root are not answered here");
        };
        let mut args = JsonMap::new();
        for a in &f.arguments {
            args.insert(a.name.as_str(), argument(&a.value, &request.variables));
        }
        let full = root(&f.name, &args);
        let key = f.alias.as_ref().unwrap_or(&f.name);
        data.insert(key.as_str(), select(&full, &f.selection_set));
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

fn select(value: &JsonValue, selection: &[Selection]) -> JsonValue {
    let obj = match value {
        JsonValue::Array(items) => {
            return JsonValue::Array(items.iter().map(|i| select(i, selection)).collect())
        }
        JsonValue::Object(obj) if !selection.is_empty() => obj,
        leaf => return leaf.clone(),
    };
    let typename = obj
        .get("__typename")
        .and_then(|t| t.as_str())
        .unwrap_or_default();
    let mut out = JsonMap::new();
    for sel in selection {
        match sel {
            Selection::Field(f) => {
                let v = obj.get(f.name.as_str()).unwrap_or(&JsonValue::Null);
                let key = f.alias.as_ref().unwrap_or(&f.name);
                out.insert(key.as_str(), select(v, &f.selection_set));
            }
            Selection::InlineFragment(inline) => {
                if inline.type_condition.as_ref().is_none_or(|c| c == typename) {
                    if let JsonValue::Object(more) = select(value, &inline.selection_set) {
                        out.extend(more);
                    }
                }
            }
            Selection::FragmentSpread(_) => panic!("fragment spreads are not answered here"),
        }
    }
    JsonValue::Object(out)
}

fn nested(c: &mut Criterion) {
    let supergraph = build(&common::stitched()).unwrap_or_else(|e| panic!("{e}"));
    let prepared = prepare(&supergraph, common::NESTED, None, &Limits::default())
        .unwrap_or_else(|e| panic!("{e:?}"));
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
    let replay = Replay::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let run = || {
        rt.block_on(async {
            let response = execute(&req, &replay).await;
            response.to_json().expect("a response serialises")
        })
    };
    let first = run();
    let text = String::from_utf8_lossy(&first);
    assert!(
        !text.contains("\"errors\""),
        "the bench's answers must be whole: {text}"
    );
    assert_eq!(
        text.matches("\"producedBy\":{\"name\"").count(),
        200,
        "{text}"
    );
    let mut group = c.benchmark_group("execute");
    group.throughput(Throughput::Bytes(first.len() as u64));
    group.bench_function(
        format!("stitching nested ({:.1} KB)", first.len() as f64 / 1000.0),
        |b| b.iter(|| run().len()),
    );
    group.finish();
}

criterion_group!(benches, nested);
criterion_main!(benches);
