//! The gateway binary's commands: `compose` prints the composed schema and
//! `check` every problem, without serving.

use std::process::Command;

use e2e::federation;

fn gateway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gateway-under-test"))
}

#[tokio::test]
async fn compose_prints_the_composed_schema_and_check_says_ok() {
    let fed = federation::start(0).await;
    let ratings = federation::start_ratings().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    let mut entries = federation::mixed_entries(&fed, &ratings, false);
    // `User.pipelines` needs the pipeline subgraph: leave the stitched field out here.
    entries = entries.replace(federation::USER_PIPELINES, "");
    std::fs::write(
        &path,
        format!("[gateway]\nlisten = \"127.0.0.1:0\"\n\n{entries}"),
    )
    .expect("config");

    let path_arg = path.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        gateway()
            .args(["compose", "--config", &path_arg])
            .output()
            .expect("run gateway compose")
    })
    .await
    .expect("join");
    let sdl = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let product = sdl
        .split("type Product {")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .unwrap_or_else(|| panic!("no Product in:\n{sdl}"));
    for field in [
        "upc: String!",
        "name: String",
        "inStock: Boolean",
        "shippingEstimate: Int",
        "reviews: [Review]",
        "rating: Float",
        "shippingCost: Int",
    ] {
        assert!(
            product.contains(field),
            "{field} not in Product:\n{product}"
        );
    }
    for hidden in [
        "_entities",
        "_service",
        "_Any",
        "productByUpc",
        "@key",
        "INFO",
    ] {
        assert!(!sdl.contains(hidden), "{hidden} in:\n{sdl}");
    }

    let path_arg = path.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        gateway()
            .args(["check", &format!("--config={path_arg}")])
            .output()
            .expect("run gateway check")
    })
    .await
    .expect("join");
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("ok: 5 subgraphs compose into"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    ratings.stop().await;
    fed.service.stop().await;
}

#[tokio::test]
async fn check_reports_every_problem_with_its_code_and_place() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("products.graphql"),
        "extend schema @link(url: \"https://specs.apollo.dev/federation/v2.5\", import: [\"@key\"])\ntype Query { top: [Product] }\ntype Product @key(fields: \"sku\") { upc: String! price: Int }\n",
    )
    .expect("sdl");
    std::fs::write(
        dir.path().join("inventory.graphql"),
        "extend schema @link(url: \"https://specs.apollo.dev/federation/v2.5\", import: [\"@key\", \"@requires\"])\ntype Product @key(fields: \"upc\") { upc: String! price: Int estimate: Int @requires(fields: \"price\") }\n",
    )
    .expect("sdl");
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[[subgraphs]]\nname = \"products\"\nurl = \"http://127.0.0.1:9/graphql\"\ndialect = \"federation\"\nschema_file = \"products.graphql\"\n\n[[subgraphs]]\nname = \"inventory\"\nurl = \"http://127.0.0.1:9/graphql\"\ndialect = \"federation\"\nschema_file = \"inventory.graphql\"\n",
    )
    .expect("config");
    let path_arg = path.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        gateway()
            .args(["check", "-c", &path_arg])
            .env("RUST_BACKTRACE", "1")
            .output()
            .expect("run gateway check")
    })
    .await
    .expect("join");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "[KEY_INVALID_FIELDS]",
        "products.graphql:3:",
        "[REQUIRES_FIELDS_MISSING_EXTERNAL]",
        "inventory.graphql:2:",
        "[INVALID_FIELD_SHARING]",
        "`Product.price` is resolved by subgraphs",
    ] {
        assert!(err.contains(needle), "{needle} not in:\n{err}");
    }
    assert!(
        !err.contains("stack backtrace") && !err.contains("panicked"),
        "{err}"
    );
}
