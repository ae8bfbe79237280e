// The graphql-tools peer of our gateway: schema stitching with batch
// delegation (@graphql-tools/stitch, @graphql-tools/batch-delegate), served by
// graphql-yoga. The same three subgraphs and the same stitched fields as the
// repository's gateway/stitching/*.graphql, so both answer the benchmark's
// queries with the same data.
//
//   PORT=4100 PIPELINE_URL=... DATASET_URL=... LOG_URL=... node stitching-gateway.mjs

import { createServer } from 'node:http';
import { createYoga } from 'graphql-yoga';
import { stitchSchemas } from '@graphql-tools/stitch';
import { batchDelegateToSchema } from '@graphql-tools/batch-delegate';
import { delegateToSchema } from '@graphql-tools/delegate';
import { buildHTTPExecutor } from '@graphql-tools/executor-http';
import { schemaFromExecutor } from '@graphql-tools/wrap';
import { OperationTypeNode } from 'graphql';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`set ${name}`);
  return v;
};

async function subschema(url) {
  const executor = buildHTTPExecutor({ endpoint: url });
  return { schema: await schemaFromExecutor(executor), executor, batch: true };
}

const [pipeline, dataset, log] = await Promise.all([
  subschema(env('PIPELINE_URL')),
  subschema(env('DATASET_URL')),
  subschema(env('LOG_URL')),
]);

// Each key list maps back by position; a null key answers null or [].
const byIds = (sub, fieldName, argName, key) => (parent, _args, context, info) => {
  const k = key(parent);
  if (k === null || k === undefined) return Array.isArray(k) ? [] : null;
  return batchDelegateToSchema({
    schema: sub,
    operation: OperationTypeNode.QUERY,
    fieldName,
    key: k,
    argsFromKeys: (keys) => ({ [argName]: keys }),
    context,
    info,
  });
};

const schema = stitchSchemas({
  subschemas: [pipeline, dataset, log],
  typeDefs: /* GraphQL */ `
    extend type Pipeline {
      datasets: [Dataset!]!
      logs(limit: Int! = 100, minLevel: LogLevel): LogPage!
    }
    extend type DatasetBinding { dataset: Dataset }
    extend type Dataset { producedBy: Pipeline }
    extend type LogMessage { pipeline: Pipeline }
    extend type Query {
      logs(pipelineId: ID!, limit: Int! = 100, cursor: String, minLevel: LogLevel): LogPage!
    }
  `,
  resolvers: {
    Pipeline: {
      datasets: {
        selectionSet: '{ datasetIds }',
        resolve: byIds(dataset, 'datasetsByIds', 'ids', (p) => p.datasetIds),
      },
      logs: {
        selectionSet: '{ id }',
        resolve: (parent, args, context, info) =>
          batchDelegateToSchema({
            schema: log,
            operation: OperationTypeNode.QUERY,
            fieldName: 'pipelineLogPages',
            key: parent.id,
            argsFromKeys: (ids) => ({ pipelineIds: ids, limit: args.limit, minLevel: args.minLevel }),
            context,
            info,
          }),
      },
    },
    DatasetBinding: {
      dataset: {
        selectionSet: '{ datasetId }',
        resolve: byIds(dataset, 'datasetsByIds', 'ids', (b) => b.datasetId),
      },
    },
    Dataset: {
      producedBy: {
        selectionSet: '{ producedByPipelineId }',
        resolve: byIds(pipeline, 'pipelinesByIds', 'ids', (d) => d.producedByPipelineId),
      },
    },
    LogMessage: {
      pipeline: {
        selectionSet: '{ pipelineId }',
        resolve: byIds(pipeline, 'pipelinesByIds', 'ids', (m) => m.pipelineId),
      },
    },
    Query: {
      logs: (_root, args, context, info) =>
        delegateToSchema({
          schema: log,
          operation: OperationTypeNode.QUERY,
          fieldName: 'pipelineLogs',
          args,
          context,
          info,
        }),
    },
  },
});

const yoga = createYoga({ schema, graphiql: false, logging: false, maskedErrors: false });
const port = Number(process.env.PORT ?? 4100);
createServer(yoga).listen(port, '127.0.0.1', () => {
  console.error(`graphql-tools stitching gateway on http://127.0.0.1:${port}/graphql`);
});
