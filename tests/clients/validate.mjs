// graphql-js 16, the reference implementation, validates each document of
// a corpus against the gateway's schema (read by introspection from the
// gateway itself) and prints, per document, the rules that fired.
// usage: node validate.mjs URL CORPUS.json  -> [{"valid": bool, "messages": [...]}, ...]
import { readFileSync } from "node:fs";
import { buildClientSchema, getIntrospectionQuery, parse, validate } from "graphql";

const [url, corpusFile] = process.argv.slice(2);
const response = await fetch(url, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ query: getIntrospectionQuery() }),
});
const { data } = await response.json();
const schema = buildClientSchema(data);
const corpus = JSON.parse(readFileSync(corpusFile, "utf8"));
const verdicts = corpus.map((text) => {
  let document;
  try {
    document = parse(text);
  } catch (e) {
    return { valid: false, messages: [String(e.message)] };
  }
  const errors = validate(schema, document);
  return { valid: errors.length === 0, messages: errors.map((e) => e.message) };
});
console.log(JSON.stringify(verdicts));
