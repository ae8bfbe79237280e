//! Automatic persisted queries, the protocol Apollo Client, urql and Relay
//! speak: a request may send `extensions.persistedQuery.sha256Hash` instead
//! of its `query`; an unknown hash is answered `PERSISTED_QUERY_NOT_FOUND`
//! and the client sends the text once with its hash, which is checked before
//! the text is kept. The cache lives across schema reloads.

use std::sync::Arc;

use apollo_compiler::response::JsonValue;
use sha2::{Digest, Sha256};

use crate::engine::GraphQLRequest;

/// Why a persisted-query request cannot run; each is a GraphQL error.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The hash is unknown: send the query with it (HTTP 200, as clients expect).
    NotFound,
    /// The query's SHA-256 is not the hash sent.
    HashMismatch,
    /// `persistedQuery` is not version 1 with a hex SHA-256.
    Malformed(String),
    /// Automatic persisted queries are off here.
    NotSupported,
    /// Safelist mode: the document is not one of the trusted documents.
    NotInList,
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NotFound => "PERSISTED_QUERY_NOT_FOUND",
            Refusal::HashMismatch => "PERSISTED_QUERY_HASH_MISMATCH",
            Refusal::Malformed(_) => "BAD_REQUEST",
            Refusal::NotSupported => "PERSISTED_QUERY_NOT_SUPPORTED",
            Refusal::NotInList => "PERSISTED_QUERY_NOT_IN_LIST",
        }
    }

    pub fn message(&self) -> String {
        match self {
            // The text Apollo Client looks for.
            Refusal::NotFound => "PersistedQueryNotFound".into(),
            Refusal::HashMismatch => {
                "the query's SHA-256 is not `extensions.persistedQuery.sha256Hash`".into()
            }
            Refusal::Malformed(why) => why.clone(),
            Refusal::NotSupported => "PersistedQueryNotSupported".into(),
            Refusal::NotInList => {
                "this gateway runs only its trusted documents, and this is not one of them".into()
            }
        }
    }
}

/// Documents by the hex SHA-256 of their text.
pub struct PersistedQueries {
    cache: Option<moka::sync::Cache<String, Arc<str>>>,
}

impl PersistedQueries {
    /// `size` documents at most (0: the protocol is off).
    pub fn new(size: u64) -> Self {
        PersistedQueries {
            cache: (size > 0).then(|| moka::sync::Cache::new(size)),
        }
    }

    /// Fills in `request.query` from the cache, or keeps the query the
    /// request sent once its hash checks out. Requests without
    /// `persistedQuery` pass untouched.
    pub fn resolve(&self, request: &mut GraphQLRequest) -> Result<(), Refusal> {
        let Some(pq) = request
            .extensions
            .as_ref()
            .and_then(|e| e.get("persistedQuery"))
        else {
            return Ok(());
        };
        let Some(cache) = &self.cache else {
            return Err(Refusal::NotSupported);
        };
        let hash = parse(pq)?;
        match &request.query {
            Some(text) => {
                let actual = hex::encode(Sha256::digest(text.as_bytes()));
                if actual != hash {
                    return Err(Refusal::HashMismatch);
                }
                cache.insert(hash, Arc::from(text.as_str()));
                Ok(())
            }
            None => match cache.get(&hash) {
                Some(text) => {
                    request.query = Some(text.to_string());
                    Ok(())
                }
                None => Err(Refusal::NotFound),
            },
        }
    }
}

/// The lower-case hex hash of a version-1 `persistedQuery`.
fn parse(pq: &JsonValue) -> Result<String, Refusal> {
    let version = pq.get("version").and_then(|v| v.as_i64());
    if version != Some(1) {
        return Err(Refusal::Malformed(
            "`extensions.persistedQuery.version` must be 1".into(),
        ));
    }
    let hash = pq
        .get("sha256Hash")
        .and_then(|h| h.as_str())
        .map(str::to_ascii_lowercase)
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            Refusal::Malformed(
                "`extensions.persistedQuery.sha256Hash` must be a hex SHA-256 (64 characters)"
                    .into(),
            )
        })?;
    Ok(hash)
}

/// Trusted documents: operations known ahead from manifest files (Apollo's
/// persisted-query manifest, or Relay's `{ id: text }`). A request may name
/// one by `documentId` or `extensions.persistedQuery.sha256Hash`; in safelist
/// mode only these documents run.
pub struct TrustedDocuments {
    by_id: std::collections::HashMap<String, Arc<str>>,
    bodies: std::collections::HashSet<Arc<str>>,
    safelist: bool,
    allow_introspection: bool,
}

impl TrustedDocuments {
    /// Reads every manifest; the error names the file and what is wrong.
    pub fn load(
        files: &[std::path::PathBuf],
        safelist: bool,
        allow_introspection: bool,
    ) -> Result<TrustedDocuments, String> {
        let mut docs = TrustedDocuments {
            by_id: Default::default(),
            bodies: Default::default(),
            safelist,
            allow_introspection,
        };
        for f in files {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("cannot read {}: {e}", f.display()))?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| format!("{} is not JSON: {e}", f.display()))?;
            docs.add(&json)
                .map_err(|why| format!("{}: {why}", f.display()))?;
        }
        Ok(docs)
    }

    fn add(&mut self, json: &serde_json::Value) -> Result<(), String> {
        let entries: Vec<(String, String)> = match json.get("operations") {
            // Apollo: {"format": "apollo-persisted-query-manifest", "operations": [{"id", "body"}]}
            Some(serde_json::Value::Array(ops)) => ops
                .iter()
                .map(|op| {
                    let id = op.get("id").and_then(|v| v.as_str());
                    let body = op.get("body").and_then(|v| v.as_str());
                    match (id, body) {
                        (Some(i), Some(b)) => Ok((i.to_string(), b.to_string())),
                        _ => Err("an operation without a string `id` and `body`".to_string()),
                    }
                })
                .collect::<Result<_, _>>()?,
            // Relay: {"<id>": "<text>", ...}
            _ => json
                .as_object()
                .ok_or("neither an Apollo manifest nor a Relay `{ id: text }` map")?
                .iter()
                .map(|(id, text)| match text.as_str() {
                    Some(t) => Ok((id.clone(), t.to_string())),
                    None => Err(format!("the document `{id}` is not a string")),
                })
                .collect::<Result<_, _>>()?,
        };
        for (id, body) in entries {
            let body: Arc<str> = Arc::from(body);
            self.bodies.insert(body.clone());
            self.by_id.insert(id.to_ascii_lowercase(), body);
        }
        Ok(())
    }

    /// Fills in the text of a named document; in safelist mode refuses any
    /// other text. Returns whether the request named a known document.
    pub fn apply(&self, request: &mut GraphQLRequest) -> Result<bool, Refusal> {
        let hash = request
            .extensions
            .as_ref()
            .and_then(|e| e.get("persistedQuery"))
            .and_then(|pq| pq.get("sha256Hash"))
            .and_then(|h| h.as_str());
        let id = request.document_id.as_deref().or(hash).map(|id| {
            let id = id.strip_prefix("sha256:").unwrap_or(id);
            id.to_ascii_lowercase()
        });
        if let Some(id) = id {
            if let Some(text) = self.by_id.get(&id) {
                if request.query.as_deref().is_some_and(|q| q != &**text) {
                    return Err(Refusal::HashMismatch);
                }
                request.query = Some(text.to_string());
                return Ok(true);
            }
            if request.document_id.is_some() {
                return Err(Refusal::NotInList);
            }
        }
        if !self.safelist {
            return Ok(false);
        }
        match request.query.as_deref() {
            Some(q) if self.bodies.contains(q) => Ok(true),
            Some(q) if self.allow_introspection && introspection_only(q) => Ok(false),
            // A hash this gateway does not know: the client may not register it.
            _ => Err(Refusal::NotInList),
        }
    }
}

/// Whether every operation of the document selects only `__schema`,
/// `__type` and `__typename` at its root.
fn introspection_only(query: &str) -> bool {
    use apollo_compiler::ast::{Definition, Selection};
    let Ok(doc) = apollo_compiler::ast::Document::parse(query, "request.graphql") else {
        return false;
    };
    doc.definitions.iter().all(|d| match d {
        Definition::OperationDefinition(op) => op.selection_set.iter().all(|s| match s {
            Selection::Field(f) => f.name.starts_with("__"),
            _ => false,
        }),
        Definition::FragmentDefinition(_) => true,
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use apollo_compiler::response::serde_json_bytes::json;

    fn request(query: Option<&str>, hash: &str) -> GraphQLRequest {
        GraphQLRequest {
            query: query.map(str::to_owned),
            extensions: Some(json!({"persistedQuery": {"version": 1, "sha256Hash": hash}})),
            ..Default::default()
        }
    }

    #[test]
    fn unknown_hash_then_the_text_once_then_the_hash_alone() {
        let pq = PersistedQueries::new(10);
        let text = "{ __typename }";
        let hash = hex::encode(Sha256::digest(text.as_bytes()));
        assert_eq!(
            pq.resolve(&mut request(None, &hash)),
            Err(Refusal::NotFound)
        );
        assert_eq!(
            pq.resolve(&mut request(Some("{ other }"), &hash)),
            Err(Refusal::HashMismatch)
        );
        assert_eq!(pq.resolve(&mut request(Some(text), &hash)), Ok(()));
        let mut by_hash = request(None, &hash.to_ascii_uppercase());
        assert_eq!(pq.resolve(&mut by_hash), Ok(()));
        assert_eq!(by_hash.query.as_deref(), Some(text));
        assert!(matches!(
            pq.resolve(&mut request(None, "abc")),
            Err(Refusal::Malformed(_))
        ));
        assert_eq!(
            PersistedQueries::new(0).resolve(&mut request(None, &hash)),
            Err(Refusal::NotSupported)
        );
    }
}
