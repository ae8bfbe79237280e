//! Validation equals the reference: a corpus of documents, at least one per
//! validation rule of the GraphQL spec (valid and invalid), checked by
//! graphql-js 16 from npm against the gateway's own schema and by the
//! gateway; every document must get the same verdict from both.

use e2e::{client::http, platform::Platform};
use serde_json::{json, Value};

/// (rule, document).
const CORPUS: &[(&str, &str)] = &[
    ("baseline: a valid query", "{ pipelineTemplates { name inputs } }"),
    ("baseline: variables, fragments, directives", "query Q($n: String!, $skip: Boolean = false) { pipelineTemplate(name: $n) { ...T @skip(if: $skip) } } fragment T on PipelineTemplate { name }"),
    ("ExecutableDefinitions", "{ pipelineTemplates { name } } type Extra { a: Int }"),
    ("UniqueOperationNames", "query A { pipelineTemplates { name } } query A { pipelines { total } }"),
    ("LoneAnonymousOperation", "{ pipelineTemplates { name } } { pipelines { total } }"),
    ("SingleFieldSubscriptions: two root fields", "subscription { pipelineEvents(id: \"1\") { status } pipelineLogs(id: \"1\") { message } }"),
    ("SingleFieldSubscriptions: an introspection root field", "subscription { __typename }"),
    ("SingleFieldSubscriptions: two fields through a fragment", "subscription S { ...F } fragment F on Subscription { pipelineEvents(id: \"1\") { status } pipelineLogs(id: \"1\") { message } }"),
    ("SingleFieldSubscriptions: one field", "subscription { pipelineEvents(id: \"1\") { status } }"),
    ("KnownTypeNames", "query($x: Nope) { pipelineTemplates { name } }"),
    ("FragmentsOnCompositeTypes", "{ pipelineTemplates { ...F } } fragment F on String { length }"),
    ("VariablesAreInputTypes", "query($x: Pipeline) { pipelineTemplates { name } }"),
    ("ScalarLeafs: object without selection", "{ pipelineTemplates }"),
    ("ScalarLeafs: scalar with selection", "{ pipelineTemplates { name { x } } }"),
    ("FieldsOnCorrectType", "{ nope }"),
    ("UniqueFragmentNames", "{ pipelineTemplates { ...F } } fragment F on PipelineTemplate { name } fragment F on PipelineTemplate { inputs }"),
    ("KnownFragmentNames", "{ pipelineTemplates { ...Missing } }"),
    ("NoUnusedFragments", "{ pipelineTemplates { name } } fragment Unused on PipelineTemplate { name }"),
    ("PossibleFragmentSpreads", "{ pipelineTemplates { ...D } } fragment D on Dataset { name }"),
    ("PossibleFragmentSpreads: inline", "{ pipelineTemplates { ... on Dataset { name } } }"),
    ("NoFragmentCycles", "{ pipelineTemplates { ...A } } fragment A on PipelineTemplate { name ...B } fragment B on PipelineTemplate { inputs ...A }"),
    ("UniqueVariableNames", "query($a: String!, $a: String!) { pipelineTemplate(name: $a) { name } }"),
    ("NoUndefinedVariables", "query { pipelineTemplate(name: $n) { name } }"),
    ("NoUnusedVariables", "query($unused: Int) { pipelineTemplates { name } }"),
    ("KnownDirectives", "{ pipelineTemplates @nope { name } }"),
    ("KnownDirectives: wrong location", "query @skip(if: true) { pipelineTemplates { name } }"),
    ("UniqueDirectivesPerLocation", "{ pipelineTemplates @skip(if: false) @skip(if: true) { name } }"),
    ("KnownArgumentNames", "{ pipelineTemplate(name: \"a\", nope: 1) { name } }"),
    ("KnownArgumentNames: on a directive", "{ pipelineTemplates @skip(if: true, unless: false) { name } }"),
    ("UniqueArgumentNames", "{ pipelineTemplate(name: \"a\", name: \"b\") { name } }"),
    ("ValuesOfCorrectType: scalar", "{ pipelineTemplate(name: 1) { name } }"),
    ("ValuesOfCorrectType: enum", "{ pipelines(filter: { statuses: [NOPE] }) { total } }"),
    ("ValuesOfCorrectType: unknown input field", "{ pipelines(filter: { nope: 1 }) { total } }"),
    ("ValuesOfCorrectType: null into non-null", "{ pipelineTemplate(name: null) { name } }"),
    ("ValuesOfCorrectType: a single value for a list", "{ pipelines(filter: { statuses: SUCCESS }) { total } }"),
    ("ProvidedRequiredArguments", "{ pipelineTemplate { name } }"),
    ("ProvidedRequiredArguments: with a default", "{ pipelines { total } }"),
    ("VariablesInAllowedPosition: nullable into non-null", "query($n: String) { pipelineTemplate(name: $n) { name } }"),
    ("VariablesInAllowedPosition: nullable with a default into non-null", "query($n: String = \"example00\") { pipelineTemplate(name: $n) { name } }"),
    ("VariablesInAllowedPosition: in an input object", "query($n: String) { pipelines(filter: { name: $n }) { total } }"),
    ("VariablesInAllowedPosition: wrong type in an input object", "query($n: Int) { pipelines(filter: { name: $n }) { total } }"),
    ("VariablesInAllowedPosition: in a list", "query($s: PipelineStatus!) { pipelines(filter: { statuses: [$s] }) { total } }"),
    ("VariablesInAllowedPosition: nullable in a list of non-null", "query($s: PipelineStatus) { pipelines(filter: { statuses: [$s] }) { total } }"),
    ("VariablesInAllowedPosition: list for a list", "query($s: [PipelineStatus!]) { pipelines(filter: { statuses: $s }) { total } }"),
    ("VariablesInAllowedPosition: item type for a list", "query($s: PipelineStatus!) { pipelines(filter: { statuses: $s }) { total } }"),
    ("OverlappingFieldsCanBeMerged: different arguments", "{ pipelineTemplate(name: \"a\") { name } pipelineTemplate(name: \"b\") { name } }"),
    ("OverlappingFieldsCanBeMerged: different fields under one alias", "{ pipelineTemplates { x: name x: inputs } }"),
    ("OverlappingFieldsCanBeMerged: same field twice", "{ pipelineTemplates { name name } }"),
    ("UniqueInputFieldNames", "{ pipelines(filter: { name: \"a\", name: \"b\" }) { total } }"),
    ("UniqueInputFieldNames: nested", "mutation { createPipeline(pipeline: { name: \"x\", dataCatalog: [], tags: [{ key: \"a\", key: \"b\", value: \"c\" }] }) { id } }"),
];

/// Whether the gateway refused the document as invalid (or unparsable).
fn gateway_says_invalid(resp: &Value) -> bool {
    resp["errors"].as_array().is_some_and(|errors| {
        errors.iter().any(|e| {
            matches!(
                e["extensions"]["code"].as_str(),
                Some("GRAPHQL_VALIDATION_FAILED" | "GRAPHQL_PARSE_FAILED")
            )
        })
    })
}

#[tokio::test]
async fn every_document_gets_the_verdict_graphql_js_gives() {
    let p = Platform::start().await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = std::process::Command::new(root.join("scripts/ensure-node-clients.sh"))
        .status()
        .expect("run scripts/ensure-node-clients.sh");
    assert!(status.success());
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus.json");
    let docs: Vec<&str> = CORPUS.iter().map(|(_, d)| *d).collect();
    std::fs::write(&corpus, json!(docs).to_string()).expect("corpus");
    let out = tokio::process::Command::new("node")
        .arg(root.join("tests/clients/validate.mjs"))
        .arg(p.url())
        .arg(&corpus)
        .output()
        .await
        .expect("run node");
    let reference: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "graphql-js printed no verdicts ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(reference.len(), CORPUS.len());

    let client = http();
    let mut disagreements = Vec::new();
    for ((rule, doc), reference) in CORPUS.iter().zip(&reference) {
        let resp: Value = client
            .post(p.url())
            .json(&json!({ "query": doc }))
            .send()
            .await
            .expect("answered")
            .json()
            .await
            .expect("JSON");
        let js_valid = reference["valid"].as_bool().unwrap_or(false);
        if js_valid == gateway_says_invalid(&resp) {
            disagreements.push(format!(
                "{rule}: graphql-js says {}, the gateway {}\n  {doc}\n  graphql-js: {}\n  gateway: {}",
                if js_valid { "valid" } else { "invalid" },
                if js_valid { "invalid" } else { "valid" },
                reference["messages"],
                resp["errors"]
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreement(s):\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    p.stop().await;
}
