//! The four Federation subgraphs of the public gateway benchmark, started
//! in-process, their `[[subgraphs]]` entries, the benchmark's `TestQuery`,
//! and its expected answer worked out from the subgraphs' data tables by a
//! plain nested walk (no gateway involved).

use serde_json::{json, Value};
use subgraphs::federation::{
    self, accounts::USERS, inventory::shipping_estimate, inventory::IN_STOCK, products::PRODUCTS,
    reviews::REVIEWS, FederationConfig, RunningFederation,
};
use tokio::net::TcpListener;

/// The benchmark's fragment-heavy operation.
pub const TEST_QUERY: &str = r#"fragment User on User {
  id
  username
  name
}

fragment Review on Review {
  id
  body
}

fragment Product on Product {
  inStock
  name
  price
  shippingEstimate
  upc
  weight
}

query TestQuery {
  users {
    ...User
    reviews {
      ...Review
      product {
        ...Product
        reviews {
          ...Review
          author {
            ...User
            reviews {
              ...Review
              product {
                ...Product
              }
            }
          }
        }
      }
    }
  }
  topProducts {
    ...Product
    reviews {
      ...Review
      author {
        ...User
        reviews {
          ...Review
          product {
            ...Product
          }
        }
      }
    }
  }
}"#;

/// An ephemeral port and its address.
async fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    (listener, addr)
}

/// Starts the four subgraphs on an ephemeral port, `delay_ms` before each answer.
pub async fn start(delay_ms: u64) -> RunningFederation {
    let (listener, listen) = bind().await;
    federation::start_counted(FederationConfig { listen, delay_ms }, listener)
        .await
        .unwrap_or_else(|e| panic!("start the federation subgraphs: {e}"))
}

/// `[[subgraphs]]` entries for the four, `dialect = "federation"`, over
/// HTTP/1.1 or h2c.
pub fn entries(running: &RunningFederation, http2: bool) -> String {
    federation::NAMES
        .iter()
        .map(|name| {
            format!(
                "[[subgraphs]]\nname = \"{name}\"\nurl = \"{}\"\ndialect = \"federation\"\ntimeout_ms = 5000\nhttp2 = {http2}\npropagate_headers = [\"authorization\"]\n\n",
                running.url(name)
            )
        })
        .collect()
}

fn product(upc: &str) -> Value {
    let p = PRODUCTS.iter().find(|p| p.0 == upc).expect("known upc");
    let in_stock = IN_STOCK.iter().find(|s| s.0 == upc).map(|s| s.1);
    json!({
        "inStock": in_stock,
        "name": p.1,
        "price": p.2,
        "shippingEstimate": shipping_estimate(Some(p.2), Some(p.3)),
        "upc": p.0,
        "weight": p.3,
    })
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.insert(key.to_owned(), value);
    }
    v
}

fn review(r: &(&str, &str, &str)) -> Value {
    json!({"id": r.0, "body": r.2})
}

/// Every review is by user 1, and every user has reviews 1 and 2.
fn author() -> Value {
    let u = USERS[0];
    let reviews: Vec<Value> = REVIEWS[..2]
        .iter()
        .map(|r| with(review(r), "product", product(r.1)))
        .collect();
    json!({"id": u.0, "username": u.2, "name": u.1, "reviews": reviews})
}

fn product_reviews(upc: &str) -> Vec<Value> {
    REVIEWS
        .iter()
        .filter(|r| r.1 == upc)
        .map(|r| with(review(r), "author", author()))
        .collect()
}

/// What `TEST_QUERY` must answer.
pub fn expected_response() -> Value {
    let users: Vec<Value> = USERS
        .iter()
        .map(|u| {
            let reviews: Vec<Value> = REVIEWS[..2]
                .iter()
                .map(|r| {
                    let p = with(product(r.1), "reviews", Value::Array(product_reviews(r.1)));
                    with(review(r), "product", p)
                })
                .collect();
            json!({"id": u.0, "username": u.2, "name": u.1, "reviews": reviews})
        })
        .collect();
    let top: Vec<Value> = PRODUCTS[..5]
        .iter()
        .map(|p| with(product(p.0), "reviews", Value::Array(product_reviews(p.0))))
        .collect();
    json!({"data": {"users": users, "topProducts": top}})
}

/// Starts the Composite Schemas `ratings` subgraph on an ephemeral port.
pub async fn start_ratings() -> subgraphs::common::RunningService {
    let (listener, listen) = bind().await;
    subgraphs::ratings::start(subgraphs::ratings::RatingsConfig { listen }, listener)
        .await
        .unwrap_or_else(|e| panic!("start the ratings subgraph: {e}"))
}

/// The stitched field that crosses dialects: a Federation `User`'s runs,
/// from the stitching `pipeline` subgraph, by the user's `username`.
pub const USER_PIPELINES: &str = r#"extend type User {
  pipelines(limit: Int! = 10): PipelinePage!
    @schema(name: "pipeline")
    @delegate(path: "pipelines(limit: $arguments:limit, filter: {tag: {key: \"owner\", value: $fields:username}})")
}
"#;

/// `[[subgraphs]]` entries of the four Federation subgraphs (accounts
/// carrying the cross-dialect stitched field) and the Composite `ratings`.
pub fn mixed_entries(
    fed: &RunningFederation,
    ratings: &subgraphs::common::RunningService,
    variable_batching: bool,
) -> String {
    let mut out = String::new();
    for name in federation::NAMES {
        out.push_str(&format!(
            "[[subgraphs]]\nname = \"{name}\"\nurl = \"{}\"\ndialect = \"federation\"\ntimeout_ms = 5000\n",
            fed.url(name)
        ));
        if name == "accounts" {
            out.push_str(&format!("stitching = '''\n{USER_PIPELINES}'''\n"));
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "[[subgraphs]]\nname = \"ratings\"\nurl = \"http://{0}/graphql\"\ndialect = \"composite\"\nschema_url = \"http://{0}/schema.graphql\"\nvariable_batching = {variable_batching}\ntimeout_ms = 5000\n\n",
        ratings.addr
    ));
    out
}
