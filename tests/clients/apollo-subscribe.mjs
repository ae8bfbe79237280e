// Runs one operation through the gateway with Apollo Client as it ships
// (HttpLink: subscriptions as multipart HTTP) and prints each result, then
// `complete`, as JSON lines; with a third argument N it stops after N results.
// usage: node apollo-subscribe.mjs URL '{"query": ..., "variables": ...}' [N]
import { ApolloClient, InMemoryCache, HttpLink, gql } from "@apollo/client/core/index.js";

const [url, body, limit] = process.argv.slice(2);
const request = JSON.parse(body);
const client = new ApolloClient({ link: new HttpLink({ uri: url }), cache: new InMemoryCache() });
const query = gql(request.query);
const isSubscription = query.definitions.some((d) => d.operation === "subscription");
if (!isSubscription) {
  const result = await client.query({ query, variables: request.variables, errorPolicy: "all" });
  console.log(JSON.stringify({ next: { data: result.data, errors: result.errors } }));
  console.log(JSON.stringify({ complete: true }));
} else {
  let seen = 0;
  const sub = client.subscribe({ query, variables: request.variables, errorPolicy: "all" }).subscribe({
    next: (result) => {
      // Results already on the wire when we stopped are not ours to count.
      if (limit && seen >= Number(limit)) return;
      console.log(JSON.stringify({ next: { data: result.data, errors: result.errors } }));
      seen += 1;
      if (limit && seen >= Number(limit)) {
        sub.unsubscribe();
        console.log(JSON.stringify({ stopped: true }));
        client.stop();
      }
    },
    error: (err) => console.log(JSON.stringify({ error: String(err && err.message) })),
    complete: () => console.log(JSON.stringify({ complete: true })),
  });
}
