// The supergraph Hive Router serves, composed with Apollo's composition
// library from the subgraphs' own SDL (`{ _service { sdl } }`).
//
//   node compose-supergraph.mjs out.graphql name=url [name=url ...]

import { writeFileSync } from 'node:fs';
import { composeServices } from '@apollo/composition';
import { parse } from 'graphql';

const [out, ...pairs] = process.argv.slice(2);
if (!out || pairs.length === 0) {
  console.error('usage: node compose-supergraph.mjs out.graphql name=url [name=url ...]');
  process.exit(2);
}
const services = await Promise.all(
  pairs.map(async (pair) => {
    const [name, url] = pair.split(/=(.*)/s);
    const resp = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ _service { sdl } }' }),
    });
    const body = await resp.json();
    if (!body.data?._service?.sdl) throw new Error(`${name}: no _service.sdl from ${url}: ${JSON.stringify(body)}`);
    return { name, url, typeDefs: parse(body.data._service.sdl) };
  }),
);
const result = composeServices(services);
if (result.errors) {
  for (const e of result.errors) console.error(`${e.extensions?.code ?? 'ERROR'}: ${e.message}`);
  process.exit(1);
}
writeFileSync(out, result.supergraphSdl);
console.error(`supergraph of ${services.length} subgraphs written to ${out}`);
