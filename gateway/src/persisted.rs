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
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NotFound => "PERSISTED_QUERY_NOT_FOUND",
            Refusal::HashMismatch => "PERSISTED_QUERY_HASH_MISMATCH",
            Refusal::Malformed(_) => "BAD_REQUEST",
            Refusal::NotSupported => "PERSISTED_QUERY_NOT_SUPPORTED",
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
