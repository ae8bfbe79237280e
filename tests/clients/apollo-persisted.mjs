// Apollo Client as it ships with its persisted-queries link (automatic
// persisted queries: the hash first, the text only when the server asks).
//   node apollo-persisted.mjs hash 'QUERY'            -> {"body", "hash"} as Apollo Client sends QUERY
//   node apollo-persisted.mjs run URL 'QUERY' [N]     -> N times the query; each result as a JSON line
// Every request the link sends is logged as {"sent": {"hashOnly": bool}}.
import { createHash } from "node:crypto";
import { ApolloClient, InMemoryCache, HttpLink, gql } from "@apollo/client/core/index.js";
import { createPersistedQueryLink } from "@apollo/client/link/persisted-queries/index.js";

const sha256 = (text) => createHash("sha256").update(text).digest("hex");
const [mode, ...rest] = process.argv.slice(2);

if (mode === "hash") {
  // The document exactly as Apollo Client sends it (its cache adds
  // `__typename`): asked by a stand-in server that never knows the hash.
  let captured;
  const standIn = async (_uri, options) => {
    const sent = JSON.parse(options.body);
    if (sent.query === undefined) {
      const notFound = { errors: [{ message: "PersistedQueryNotFound", extensions: { code: "PERSISTED_QUERY_NOT_FOUND" } }] };
      return new Response(JSON.stringify(notFound), { headers: { "content-type": "application/json" } });
    }
    captured = { body: sent.query, hash: sent.extensions.persistedQuery.sha256Hash };
    return new Response(JSON.stringify({ data: null }), { headers: { "content-type": "application/json" } });
  };
  const link = createPersistedQueryLink({ sha256 }).concat(new HttpLink({ uri: "http://stand-in/graphql", fetch: standIn }));
  const client = new ApolloClient({ link, cache: new InMemoryCache() });
  await client.query({ query: gql(rest[0]), errorPolicy: "all" }).catch(() => {});
  console.log(JSON.stringify(captured));
} else {
  const [url, query, times] = rest;
  const logging = (uri, options) => {
    const sent = JSON.parse(options.body);
    console.log(JSON.stringify({ sent: { hashOnly: sent.query === undefined } }));
    return fetch(uri, options).then(async (response) => {
      if (response.status !== 200) {
        console.log(JSON.stringify({ status: response.status, body: await response.clone().text() }));
      }
      return response;
    });
  };
  const link = createPersistedQueryLink({ sha256 }).concat(new HttpLink({ uri: url, fetch: logging }));
  for (let i = 0; i < Number(times || 1); i++) {
    // A fresh cache each time: every query goes to the server.
    const client = new ApolloClient({ link, cache: new InMemoryCache() });
    try {
      const result = await client.query({ query: gql(query), errorPolicy: "all" });
      console.log(JSON.stringify({ result: { data: result.data, errors: result.errors } }));
    } catch (e) {
      console.log(JSON.stringify({ error: String(e && e.message) }));
    }
  }
}
