// Runs one operation through the gateway with the `graphql-sse` client as it
// ships (distinct connections mode) and prints each result, then `complete`,
// as JSON lines; with a third argument N, it stops after N results.
// usage: node sse-subscribe.mjs URL '{"query": ..., "variables": ...}' [N]
import { createClient } from "graphql-sse";

const [url, body, limit] = process.argv.slice(2);
const request = JSON.parse(body);
const client = createClient({ url, singleConnection: false, retryAttempts: 0 });
let seen = 0;
const stop = client.subscribe(request, {
  next: (result) => {
    // Results already on the wire when we stopped are not ours to count.
    if (limit && seen >= Number(limit)) return;
    console.log(JSON.stringify({ next: result }));
    seen += 1;
    if (limit && seen >= Number(limit)) {
      stop();
      console.log(JSON.stringify({ stopped: true }));
      client.dispose();
    }
  },
  error: (err) => {
    console.log(JSON.stringify({ error: String(err && err.message ? err.message : JSON.stringify(err)) }));
    client.dispose();
  },
  complete: () => {
    console.log(JSON.stringify({ complete: true }));
    client.dispose();
  },
});
