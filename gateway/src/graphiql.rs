//! GraphiQL, served from the gateway's own binary (pinned versions in
//! `gateway/assets/graphiql`, refreshed by `scripts/update-graphiql.sh`), so
//! it works on a machine without internet access.

use axum::{
    extract::Path,
    http::{header, HeaderValue, StatusCode},
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
    Router,
};

/// In every asset path, so a new version is never served from a stale cache.
const VERSION: &str = "3.8.3";

/// (file name, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "graphiql.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/graphiql/graphiql.min.js"),
    ),
    (
        "graphiql.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/graphiql/graphiql.min.css"),
    ),
    (
        "react.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/graphiql/react.production.min.js"),
    ),
    (
        "react-dom.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/graphiql/react-dom.production.min.js"),
    ),
];

/// `/graphiql/VERSION/FILE` for the assets, and `GET /` leading to GraphiQL.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/graphql") }))
        .route("/graphiql/{version}/{file}", get(asset))
}

async fn asset(Path((version, file)): Path<(String, String)>) -> Response {
    let found = ASSETS.iter().find(|(name, ..)| *name == file);
    match found {
        Some((_, content_type, bytes)) if version == VERSION => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=31536000, immutable"),
                ),
            ],
            *bytes,
        )
            .into_response(),
        _ => (StatusCode::NOT_FOUND, "no such GraphiQL asset").into_response(),
    }
}

/// The page; a script that fails to load shows what failed instead of
/// leaving "Loading…" on screen.
pub fn page() -> Html<String> {
    Html(format!(
        r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>GraphiQL - stitching gateway</title>
  <link rel="stylesheet" href="/graphiql/{VERSION}/graphiql.min.css">
  <style>body {{ margin: 0; height: 100vh; }} #graphiql {{ height: 100vh; }} .load-error {{ font: 16px sans-serif; color: #b00020; padding: 2em; }}</style>
  <script>
    function failed(what) {{
      document.getElementById('graphiql').innerHTML =
        '<p class="load-error">GraphiQL could not load ' + what + ' from this gateway; reload the page, and check the gateway\'s log if it persists.</p>';
    }}
  </script>
</head>
<body>
  <div id="graphiql">Loading GraphiQL…</div>
  <script src="/graphiql/{VERSION}/react.production.min.js" onerror="failed('React')"></script>
  <script src="/graphiql/{VERSION}/react-dom.production.min.js" onerror="failed('React DOM')"></script>
  <script src="/graphiql/{VERSION}/graphiql.min.js" onerror="failed('GraphiQL')"></script>
  <script>
    if (window.GraphiQL && window.React && window.ReactDOM) {{
      const url = window.location.origin + '/graphql';
      const fetcher = GraphiQL.createFetcher({{ url, subscriptionUrl: url.replace(/^http/, 'ws') }});
      ReactDOM.createRoot(document.getElementById('graphiql'))
        .render(React.createElement(GraphiQL, {{ fetcher, defaultEditorToolbarOpen: true }}));
    }}
  </script>
</body>
</html>
"#
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        let page = page().0;
        assert!(
            !page.contains("https://") && !page.contains("http://unpkg"),
            "{page}"
        );
        for (name, ..) in ASSETS {
            assert!(
                page.contains(&format!("/graphiql/{VERSION}/{name}"))
                    || name.ends_with(".css") && page.contains(name)
            );
        }
    }
}
