//! Runs a plan: wave by wave, one request per subgraph per wave, identical
//! inputs once, different subgraphs concurrently; then shapes the merged
//! data into the client's response.

mod fetch;
mod merge;
mod parse;
mod shape;
#[cfg(test)]
mod tests;
mod tree;
mod value;

use std::time::Duration;

use apollo_compiler::{
    ast::OperationType,
    executable::Operation,
    response::{GraphQLError, JsonMap, JsonValue, ResponseDataPathSegment},
    validation::Valid,
    ExecutableDocument, Node,
};
use bytes::Bytes;
use futures::future::BoxFuture;
use serde::Serialize;

use tree::{Answers, Arena, Map, Spare, Value};

use crate::{
    plan::QueryPlan,
    schema::{SubgraphId, Supergraph},
};
pub use value::{PathSeg, ResponsePath};

/// A request to one subgraph: a document and its variables, or (variable
/// batching) several documents, each with a list of variable sets.
#[derive(Clone, Debug)]
pub struct SubgraphRequest {
    pub operation: OperationType,
    pub query: String,
    pub variables: Variables,
    /// Non-empty: the body is this list of requests instead (`variables` a
    /// list where there are several sets), answered as JSON lines.
    pub batch: Vec<BatchedOperation>,
    /// How many parent objects (or root fields) this one request serves;
    /// for traces, not sent.
    pub batch_size: usize,
}

/// One request of a batched body.
#[derive(Clone, Debug)]
pub struct BatchedOperation {
    pub query: String,
    /// One set, or a list of sets (one result line each).
    pub variables: JsonValue,
}

/// A request's variables as the JSON object that goes out, written while
/// the request was built: values read from the data (representations,
/// batched keys) are written straight from it, with no JSON tree made,
/// serialised and dropped on the way. The text begins as a request body
/// does (`BODY_PREFIX`), so the body is finished in the same buffer
/// ([`SubgraphRequest::into_body`]): a batch's keys are kilobytes, and
/// copying them into another buffer was 1% of the gateway's CPU under
/// `nested`.
#[derive(Clone, Debug, Default)]
pub struct Variables(Vec<u8>);

/// How a plain request body begins: variables first, then the document,
/// which is finished after them (JSON gives keys no order).
const BODY_PREFIX: &str = r#"{"variables":"#;

impl Variables {
    /// The variables as a map, for tools and tests that read requests.
    pub fn to_map(&self) -> JsonMap {
        serde_json::from_str(self.as_str()).unwrap_or_default()
    }

    /// The JSON object.
    pub fn as_str(&self) -> &str {
        match self
            .0
            .get(BODY_PREFIX.len()..)
            .map(simdutf8::basic::from_utf8)
        {
            Some(Ok(object)) if !object.is_empty() => object,
            _ => "{}",
        }
    }
}

/// Writes a request's variables one at a time (see [`Variables`]).
#[derive(Default)]
pub(crate) struct VariablesWriter(Vec<u8>);

impl VariablesWriter {
    /// Adds `name` with `value`. Writing a name into memory does not fail.
    pub fn insert(&mut self, name: &str, value: &(impl WriteJson + ?Sized)) {
        if self.0.is_empty() {
            self.0.extend_from_slice(BODY_PREFIX.as_bytes());
            self.0.push(b'{');
        } else {
            self.0.push(b',');
        }
        let _ = serde_json::to_writer(&mut self.0, name);
        self.0.push(b':');
        value.write_json(&mut self.0);
    }

    /// Room for `n` more bytes.
    pub fn reserve(&mut self, n: usize) {
        self.0.reserve(n);
    }

    /// The variables, with room for a document of `document` bytes after
    /// them (`SubgraphRequest::into_body`).
    pub fn finish(mut self, document: usize) -> Variables {
        if !self.0.is_empty() {
            self.0.push(b'}');
            self.0.reserve(document + BODY_SUFFIX_ROOM);
        }
        // serde_json and the arena's writer write UTF-8; were it ever not,
        // no variables rather than a broken body (the subgraph then
        // reports the missing ones). Checked with SIMD: a batch's keys are
        // kilobytes.
        match simdutf8::basic::from_utf8(&self.0) {
            Ok(_) => Variables(self.0),
            Err(_) => Variables::default(),
        }
    }
}

/// A variable's value, appended to a request's variables as JSON text:
/// values read from the data are written by the arena's own writer, with
/// no text made for them first and copied in.
pub(crate) trait WriteJson {
    fn write_json(&self, out: &mut Vec<u8>);
}

impl WriteJson for JsonValue {
    fn write_json(&self, out: &mut Vec<u8>) {
        // Writing into memory does not fail.
        let _ = serde_json::to_writer(out, self);
    }
}

/// What a body adds after its variables besides the document's text:
/// `,"query":`, its quotes, the closing brace, and a few escapes.
const BODY_SUFFIX_ROOM: usize = 32;

impl Serialize for Variables {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        write_raw(s, self.as_str())
    }
}

/// Asks serde_json to write `text` as it is, the way its own `RawValue`
/// does (the `raw_value` feature); other serializers see a string.
fn write_raw<S: serde::Serializer>(s: S, text: &str) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    const TOKEN: &str = "$serde_json::private::RawValue";
    let mut st = s.serialize_struct(TOKEN, 1)?;
    st.serialize_field(TOKEN, text)?;
    st.end()
}

impl SubgraphRequest {
    /// The request's JSON body. A plain request's body is finished in its
    /// variables' buffer: `{"variables":{..},"query":".."}`.
    pub fn into_body(self) -> serde_json::Result<Vec<u8>> {
        if !self.batch.is_empty() {
            return serde_json::to_vec(&self);
        }
        let mut body = self.variables.0;
        if body.is_empty() {
            body.reserve(BODY_PREFIX.len() + 2 + self.query.len() + BODY_SUFFIX_ROOM);
            body.extend_from_slice(BODY_PREFIX.as_bytes());
            body.extend_from_slice(b"{}");
        }
        body.extend_from_slice(br#","query":"#);
        serde_json::to_writer(&mut body, &self.query)?;
        body.push(b'}');
        Ok(body)
    }
}

impl Serialize for SubgraphRequest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        if !self.batch.is_empty() {
            let mut seq = s.serialize_seq(Some(self.batch.len()))?;
            for op in &self.batch {
                seq.serialize_element(&serde_json::json!({
                    "query": op.query,
                    "variables": op.variables,
                }))?;
            }
            return seq.end();
        }
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("query", &self.query)?;
        m.serialize_entry("variables", &self.variables)?;
        m.end()
    }
}

/// Why a subgraph gave no usable answer. Only that subgraph's fields become null.
#[derive(Clone, Debug, thiserror::Error)]
pub enum FetchError {
    #[error("did not answer within {}", humantime(*.0))]
    Timeout(Duration),
    #[error("is unreachable: {0}")]
    Unavailable(String),
    /// A non-2xx answer; `body` when it was JSON (its GraphQL errors are
    /// kept, at their paths).
    #[error("answered HTTP {status}")]
    Status { status: u16, body: Option<Bytes> },
    #[error("answered with a body that is not a GraphQL response: {0}")]
    Malformed(String),
    #[error("answered more than {0} bytes (`max_response_bytes`)")]
    TooLarge(usize),
    /// The client request's deadline passed before this request could finish.
    #[error("was not asked: the request's deadline of {} passed", humantime(*.0))]
    Deadline(Duration),
    /// The circuit breaker is open: the subgraph failed too often lately.
    #[error("is failing; requests to it are paused (circuit breaker open)")]
    CircuitOpen,
}

fn humantime(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Extension keys the library leaves for the server's one place that turns
/// errors into their client form: it removes both before anything is sent.
pub mod internal {
    /// Detail for the operator's log (transport errors, parser messages,
    /// internal URLs); the error's message is already client-safe.
    pub const DETAIL: &str = "_stitch_detail";
    /// Marks a subgraph's own GraphQL error (`include_subgraph_errors`).
    pub const SUBGRAPH_ERROR: &str = "_stitch_subgraph_error";
}

impl FetchError {
    /// The message a client may see; what it leaves out is [`Self::detail`].
    pub fn client_message(&self) -> String {
        match self {
            FetchError::Unavailable(_) => "is unreachable".into(),
            FetchError::Malformed(_) => {
                "answered with a body that is not a GraphQL response".into()
            }
            other => other.to_string(),
        }
    }

    /// What only the operator's log should hold.
    pub fn detail(&self) -> Option<&str> {
        match self {
            FetchError::Unavailable(d) | FetchError::Malformed(d) => Some(d),
            _ => None,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            FetchError::Timeout(_) => "SUBGRAPH_TIMEOUT",
            FetchError::Unavailable(_) => "SUBGRAPH_UNAVAILABLE",
            FetchError::Status { .. } => "SUBGRAPH_HTTP_ERROR",
            FetchError::Malformed(_) => "SUBGRAPH_MALFORMED_RESPONSE",
            FetchError::TooLarge(_) => "SUBGRAPH_RESPONSE_TOO_LARGE",
            FetchError::Deadline(_) => "GATEWAY_TIMEOUT",
            FetchError::CircuitOpen => "SUBGRAPH_CIRCUIT_OPEN",
        }
    }
}

/// How requests reach subgraphs. The gateway implements it over HTTP; the
/// library stays transport-agnostic (and testable without sockets).
pub trait Transport: Send + Sync {
    /// Sends `request` to `subgraph` and returns the raw response body.
    fn fetch<'a>(
        &'a self,
        subgraph: SubgraphId,
        request: SubgraphRequest,
    ) -> BoxFuture<'a, Result<Bytes, FetchError>>;
}

/// JSON text the gateway wrote itself (the shaper writes only serde_json
/// output and GraphQL names): serialised as it is, with no second parse to
/// check it. It is held after the `{"data":` that opens a response, so that
/// `Response::into_json` can finish the response in the same buffer. Its
/// bytes were checked to be UTF-8 when it was made.
#[derive(Debug)]
pub struct RawJson(Vec<u8>);

/// How a response with data begins.
const DATA_PREFIX: &str = r#"{"data":"#;

impl RawJson {
    fn get(&self) -> &str {
        let text = self.0.get(DATA_PREFIX.len()..).unwrap_or_default();
        simdutf8::basic::from_utf8(text).unwrap_or("null")
    }
}

impl Serialize for RawJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        write_raw(s, self.get())
    }
}

/// A GraphQL response as sent to the client.
#[derive(Debug, Default, Serialize)]
pub struct Response {
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The shaped data, already JSON (see `shape`).
    pub data: Option<RawJson>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<GraphQLError>,
}

impl Response {
    /// A response of request errors only (no `data` key).
    pub fn from_errors(errors: Vec<GraphQLError>) -> Self {
        Response { data: None, errors }
    }

    /// The response as JSON. With data, it is finished in the buffer the
    /// data was written into (a large answer is not copied again).
    pub fn into_json(self) -> serde_json::Result<Vec<u8>> {
        let Some(RawJson(mut out)) = self.data else {
            return serde_json::to_vec(&self);
        };
        if !self.errors.is_empty() {
            out.extend_from_slice(br#","errors":"#);
            serde_json::to_writer(&mut out, &self.errors)?;
        }
        out.push(b'}');
        Ok(out)
    }
}

/// Builds an error with `extensions.code`.
pub fn error(message: impl Into<String>, code: &str) -> GraphQLError {
    let mut e = GraphQLError {
        message: message.into(),
        locations: Vec::new(),
        path: Vec::new(),
        extensions: JsonMap::new(),
    };
    e.extensions.insert("code", JsonValue::String(code.into()));
    e
}

/// Everything one execution reads.
pub struct Request<'a> {
    pub supergraph: &'a Supergraph,
    pub document: &'a Valid<ExecutableDocument>,
    pub operation: &'a Node<Operation>,
    pub plan: &'a QueryPlan,
    /// Coerced variables (defaults applied).
    pub variables: &'a Valid<JsonMap>,
    /// What the caller may not see, when it may not see everything: `plan`
    /// is then the filtered one, and those fields are answered as null.
    pub authorization: Option<&'a crate::authorization::Filtered>,
}

/// Executes a query or mutation plan.
pub async fn execute(req: &Request<'_>, transport: &dyn Transport) -> Response {
    let arena = Spare::take();
    let answers = Answers::default();
    let mut ex = Execution::new(req, transport, &arena, &answers);
    if req.plan.has_introspection {
        ex.introspect();
    }
    ex.run(&req.plan.waves).await;
    ex.finish()
}

/// The remote request that opens a subscription's upstream stream, and the
/// state needed to turn each of its events into a client response.
pub struct SubscriptionStart {
    pub subgraph: SubgraphId,
    pub request: SubgraphRequest,
    pub(crate) routing: fetch::Routing,
}

/// Prepares the upstream subscription of a subscription plan (one root field).
// The error goes straight into the client's `error` message; boxing it would
// only add an allocation on that path.
#[allow(clippy::result_large_err)]
pub fn subscription_start(req: &Request<'_>) -> Result<SubscriptionStart, GraphQLError> {
    let Some(first) = req.plan.waves.first() else {
        return Err(error("a subscription must select one field", "BAD_REQUEST"));
    };
    let subgraph = req.plan.fetches[first[0]].subgraph;
    let arena = Spare::take();
    let mut data = Value::Object(Map::new());
    let built = fetch::build(req, &mut data, subgraph, first, &arena.get());
    match built.request {
        Some(request) => Ok(SubscriptionStart {
            subgraph,
            request,
            routing: built.routing,
        }),
        None => Err(error(
            "the subscription resolves to null without a call",
            "BAD_REQUEST",
        )),
    }
}

/// Turns one upstream event (`{data, errors}` of the remote subscription) into
/// the client's event, running the rest of the plan for it through the same
/// batched execution as queries.
pub async fn subscription_event(
    req: &Request<'_>,
    start: &SubscriptionStart,
    event: &JsonValue,
    transport: &dyn Transport,
) -> Response {
    let arena = Spare::take();
    let answers = Answers::default();
    let mut ex = Execution::new(req, transport, &arena, &answers);
    {
        let alloc = arena.get();
        let event = Value::from_json(event, &alloc);
        merge::merge_body(
            req,
            &mut ex.data,
            &mut ex.errors,
            start.subgraph,
            &start.routing,
            event,
            &alloc,
        );
    }
    ex.run(req.plan.waves.get(1..).unwrap_or(&[])).await;
    ex.finish()
}

struct Execution<'r, 'a, 'h> {
    req: &'r Request<'a>,
    transport: &'r dyn Transport,
    /// Holds `data`, parsed from `answers`.
    arena: &'h Arena,
    answers: &'h Answers,
    data: Value<'h>,
    errors: Vec<GraphQLError>,
    /// Bytes of subgraph answers so far: the client's answer is about as
    /// large, so its buffer is sized from this.
    received: usize,
    /// Where this execution's values begin in the arena (see `warm`).
    top: &'h u8,
}

impl<'r, 'a, 'h> Execution<'r, 'a, 'h> {
    fn new(
        req: &'r Request<'a>,
        transport: &'r dyn Transport,
        arena: &'h Arena,
        answers: &'h Answers,
    ) -> Self {
        Execution {
            req,
            transport,
            arena,
            answers,
            data: Value::Object(Map::new()),
            errors: Vec::new(),
            received: 0,
            top: tree::mark(&arena.get()),
        }
    }

    fn introspect(&mut self) {
        let sg = self.req.supergraph;
        match apollo_compiler::introspection::partial_execute(
            &sg.schema,
            &sg.implementers,
            self.req.document,
            self.req.operation,
            self.req.variables,
        ) {
            Ok(resp) => {
                if let (Some(map), Some(data)) = (resp.data, self.data.as_object_mut()) {
                    let alloc = self.arena.get();
                    data.extend(Map::from_json(&map, &alloc), &alloc);
                }
                self.errors.extend(resp.errors);
            }
            Err(e) => self
                .errors
                .push(e.to_graphql_error(&self.req.document.sources)),
        }
    }

    /// Runs the waves in order: one request per subgraph per wave.
    async fn run(&mut self, waves: &[Vec<usize>]) {
        for wave in waves {
            // One request per subgraph for this wave, in first-seen order.
            let mut groups: Vec<(SubgraphId, Vec<usize>)> = Vec::new();
            for &id in wave {
                let sg = self.req.plan.fetches[id].subgraph;
                match groups.iter_mut().find(|(s, _)| *s == sg) {
                    Some((_, v)) => v.push(id),
                    None => groups.push((sg, vec![id])),
                }
            }
            let mut builds = Vec::with_capacity(groups.len());
            {
                let alloc = self.arena.get();
                for (sg, ids) in groups {
                    builds.push(fetch::build(self.req, &mut self.data, sg, &ids, &alloc));
                }
            }
            let transport = self.transport;
            let fetches = builds.iter_mut().map(|b| {
                let request = b.request.take();
                let sg = b.subgraph;
                async move {
                    match request {
                        Some(r) => Some(transport.fetch(sg, r).await),
                        None => None,
                    }
                }
            });
            let results = futures::future::join_all(fetches).await;
            let alloc = self.arena.get();
            self.warm(&alloc);
            for (b, result) in builds.into_iter().zip(results) {
                let Some(result) = result else { continue };
                if let Ok(body) = &result {
                    self.received += body.len();
                }
                match result.or_else(graphql_error_body).and_then(|body| {
                    let text = self
                        .answers
                        .keep(body)
                        .map_err(|e| FetchError::Malformed(e.to_string()))?;
                    fetch::parse_answer(&b, text, &alloc)
                }) {
                    Ok(body) => merge::merge_body(
                        self.req,
                        &mut self.data,
                        &mut self.errors,
                        b.subgraph,
                        &b.routing,
                        body,
                        &alloc,
                    ),
                    Err(e) => merge::fail(
                        self.req,
                        &self.data,
                        &mut self.errors,
                        b.subgraph,
                        &b.routing,
                        &e,
                    ),
                }
            }
        }
    }

    /// Asks the cache for all this execution holds before a pass over
    /// it (merging a wave's answers, shaping the response). Under load,
    /// the earlier waves' values have left the caches while other
    /// executions ran, and a pass reads them in the response's order,
    /// scattered over the arena, one miss after another. The `nested`
    /// benchmark spent 5 to 9% less of the gateway's CPU per request
    /// with this than without (BENCHMARKS.md).
    fn warm(&self, alloc: &tree::Alloc<'h>) {
        let asked = tree::prefetch_between(self.top, tree::mark(alloc));
        self.answers.prefetch(asked);
    }

    fn finish(mut self) -> Response {
        if let Some(a) = self.req.authorization {
            self.errors.splice(0..0, a.errors.iter().cloned());
        }
        // Sized once from the subgraph answers' size, which the client's
        // answer is about: growing by doubling would copy it several times.
        let mut bytes = Vec::with_capacity(self.received.clamp(1024, 16 << 20));
        bytes.extend_from_slice(DATA_PREFIX.as_bytes());
        self.warm(&self.arena.get());
        shape::shape(self.req, &self.data, &mut self.errors, &mut bytes);
        // The shaper writes only serde_json output and GraphQL names, so this
        // holds; if it ever did not, the client gets an error, not a panic.
        // Checked with SIMD: the answer is tens of kilobytes.
        match simdutf8::compat::from_utf8(&bytes) {
            Ok(_) => Response {
                data: Some(RawJson(bytes)),
                errors: self.errors,
            },
            Err(e) => {
                let mut err = error(
                    "the gateway failed to write this response",
                    "INTERNAL_SERVER_ERROR",
                );
                err.extensions.insert(
                    internal::DETAIL,
                    JsonValue::String(format!("invalid UTF-8 in the shaped response: {e}").into()),
                );
                self.errors.push(err);
                Response {
                    data: None,
                    errors: self.errors,
                }
            }
        }
    }
}

/// A non-2xx answer whose JSON body carries GraphQL errors is read as an
/// answer (its errors, at their paths); any other failure stays one.
fn graphql_error_body(e: FetchError) -> Result<Bytes, FetchError> {
    if let FetchError::Status {
        body: Some(body), ..
    } = &e
    {
        #[derive(serde::Deserialize)]
        struct Errors {
            errors: Vec<serde::de::IgnoredAny>,
        }
        if serde_json::from_slice::<Errors>(body).is_ok_and(|b| !b.errors.is_empty()) {
            return Ok(body.clone());
        }
    }
    Err(e)
}

/// Client path of an error, for tests and logs.
pub fn path_string(path: &[ResponseDataPathSegment]) -> String {
    path.iter()
        .map(|s| match s {
            ResponseDataPathSegment::Field(n) => n.to_string(),
            ResponseDataPathSegment::ListIndex(i) => i.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod raw_json_tests {
    use super::{
        error, BatchedOperation, RawJson, Response, SubgraphRequest, Variables, VariablesWriter,
        DATA_PREFIX,
    };
    use apollo_compiler::response::serde_json_bytes::json;

    fn request(query: &str, variables: Variables) -> SubgraphRequest {
        SubgraphRequest {
            operation: apollo_compiler::ast::OperationType::Query,
            query: query.into(),
            variables,
            batch: Vec::new(),
            batch_size: 1,
        }
    }

    /// The body finished in the variables' buffer, as a subgraph reads it.
    fn body(r: SubgraphRequest) -> serde_json::Value {
        serde_json::from_slice(&r.into_body().unwrap()).unwrap()
    }

    /// Variables written one at a time are the JSON object a map of them
    /// serialises to, in the body of a request as in a map read back.
    #[test]
    fn variables_written_as_they_go_are_the_object_a_map_makes() {
        let empty = VariablesWriter::default().finish(0);
        assert_eq!(empty.as_str(), "{}");
        assert!(empty.to_map().is_empty());
        let mut w = VariablesWriter::default();
        w.insert("a0_0_ids", &json!(["d1", "q\"x\u{1}"]));
        w.insert("r1", &json!([{"__typename": "User", "id": 1.5}]));
        w.insert("c_flag", &json!(null));
        let vars = w.finish(5);
        let mut map = apollo_compiler::response::JsonMap::new();
        map.insert("a0_0_ids", json!(["d1", "q\"x\u{1}"]));
        map.insert("r1", json!([{"__typename": "User", "id": 1.5}]));
        map.insert("c_flag", json!(null));
        assert_eq!(vars.as_str(), serde_json::to_string(&map).unwrap());
        assert_eq!(vars.to_map(), map);
        let map_text = serde_json::to_string(&map).unwrap();
        assert_eq!(
            serde_json::to_string(&request("{ a }", vars.clone())).unwrap(),
            format!(r#"{{"query":"{{ a }}","variables":{map_text}}}"#)
        );
        let expected: serde_json::Value = serde_json::from_str(&format!(
            r#"{{"query":"query($x: \"q\") {{ a }}","variables":{map_text}}}"#
        ))
        .unwrap();
        assert_eq!(body(request(r#"query($x: "q") { a }"#, vars)), expected);
    }

    /// A body without variables, or of batched operations, says what the
    /// request says.
    #[test]
    fn bodies_without_variables_or_batched_are_the_serialised_request() {
        assert_eq!(
            body(request("{ a }", Variables::default())),
            serde_json::json!({"query": "{ a }", "variables": {}})
        );
        let mut batched = request("", Variables::default());
        batched.batch = vec![BatchedOperation {
            query: "{ b }".into(),
            variables: json!([{"x": 1}]),
        }];
        let serialised = serde_json::to_value(&batched).unwrap();
        assert_eq!(body(batched), serialised);
    }

    fn response(data: &str, errors: usize) -> Response {
        Response {
            data: Some(RawJson(format!("{DATA_PREFIX}{data}").into_bytes())),
            errors: (0..errors).map(|i| error(format!("e{i}"), "X")).collect(),
        }
    }

    #[test]
    fn raw_json_is_written_as_it_is() {
        let data = r#"{"a":[1,{"b":"\"x"}]}"#;
        assert_eq!(
            serde_json::to_string(&response(data, 0)).unwrap(),
            r#"{"data":{"a":[1,{"b":"\"x"}]}}"#
        );
    }

    /// `into_json` finishes the data's own buffer; it must say what
    /// serialising the response says.
    #[test]
    fn a_response_finished_in_place_is_the_serialised_response() {
        for (data, errors) in [("null", 0), (r#"{"a":1}"#, 0), (r#"{"a":null}"#, 2)] {
            let r = response(data, errors);
            let serialised = serde_json::to_vec(&r).unwrap();
            assert_eq!(r.into_json().unwrap(), serialised);
        }
        let only_errors = Response::from_errors(vec![error("bad", "BAD_REQUEST")]);
        let serialised = serde_json::to_vec(&only_errors).unwrap();
        assert_eq!(only_errors.into_json().unwrap(), serialised);
    }
}
