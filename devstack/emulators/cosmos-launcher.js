#!/usr/bin/env node
// Starts @vercel/cosmosdb-server with one fix: reading a missing item answers 404 NotFound,
// as Cosmos DB does, instead of the 500 the server gives (it dereferences the missing item).
// Usage: node cosmos-launcher.js --host 127.0.0.1 --port 8081
"use strict";

const readDocument = require("@vercel/cosmosdb-server/lib/handler/read-document");
const getPartitionFromHeader = require("@vercel/cosmosdb-server/lib/utils/get-partition-from-header");
const original = readDocument.default;

// routes.js captures `.default` when it is first required, so patch before requiring the server.
readDocument.default = (account, req, res, params) => {
  const collection = account.database(params.dbId).collection(params.collId);
  if (collection.read()) {
    const raw = getPartitionFromHeader.default(req);
    const partitionKey = getPartitionFromHeader.parsePartitionKey(raw, params.docId);
    if (!collection.document(params.docId, partitionKey).read()) {
      res.statusCode = 404;
      return {
        code: "NotFound",
        message: "Entity with the specified id does not exist in the system.",
      };
    }
  }
  return original(account, req, res, params);
};

const { createHttpsServer } = require("@vercel/cosmosdb-server");

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const host = option("--host", "127.0.0.1");
const port = parseInt(option("--port", "8081"), 10);

const server = createHttpsServer().listen(port, host, () => {
  console.log(`cosmosdb-server ready at https://${host}:${port}`);
});
// The server keeps everything in memory: nothing to flush, and waiting for keep-alive
// connections to drain would only delay `stop`.
const shutdown = () => process.exit(0);
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
