#!/usr/bin/env node
// Starts @vercel/cosmosdb-server with four changes:
// - connections are kept alive: the server answers `connection: close` by default, so every
//   request of the Cosmos DB SDK paid a new TCP connection and TLS handshake (about 15% of the
//   app's CPU per chat request); Cosmos DB itself keeps them open;
// - reading a missing item answers 404 NotFound, as Cosmos DB does, instead of the 500 the
//   server gives (it dereferences the missing item);
// - a document over 2 MB is refused with 413 RequestEntityTooLarge, as Cosmos DB refuses one
//   over its item size limit (the server stores any size);
// - the account document names the endpoint the client used (its Host header), so a client
//   reaching the server through a proxy keeps going through the proxy;
// - the store, which the server keeps in memory only, is saved to --data-file and loaded from
//   it at start, so databases, containers and items survive a restart.
// Usage: node cosmos-launcher.js --host 127.0.0.1 --port 8081
//          [--data-file PATH] [--save-interval SECONDS] [--fresh]
// --save-interval 0 saves only on SIGTERM/SIGINT; --fresh ignores (and replaces) a saved store.
"use strict";

const fs = require("fs");
const lib = "@vercel/cosmosdb-server/lib";
const readDocument = require(`${lib}/handler/read-document`);
const readMeta = require(`${lib}/handler/read-meta`);
const getPartitionFromHeader = require(`${lib}/utils/get-partition-from-header`);
const accountModule = require(`${lib}/account`);
const Items = require(`${lib}/account/items`).default;

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const host = option("--host", "127.0.0.1");
const port = parseInt(option("--port", "8081"), 10);
const dataFile = option("--data-file", null);
const saveInterval = parseFloat(option("--save-interval", "2"));
const fresh = args.includes("--fresh");

// routes.js captures `.default` of each handler when it is first required, so patch before
// requiring the server.
const originalRead = readDocument.default;
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
  return originalRead(account, req, res, params);
};

// Cosmos DB's item size limit: 2 MB of JSON. The body's length stands in for the item's size.
const MAX_ITEM_BYTES = 2 * 1024 * 1024;
for (const name of ["create-document", "upsert-document", "replace-document"]) {
  const handler = require(`${lib}/handler/${name}`);
  const original = handler.default;
  handler.default = (account, req, res, params) => {
    if (parseInt(req.headers["content-length"] || "0", 10) > MAX_ITEM_BYTES) {
      req.resume(); // drain the body the client is still sending
      res.statusCode = 413;
      return { code: "RequestEntityTooLarge", message: "Request size is too large" };
    }
    return original(account, req, res, params);
  };
}

readMeta.default = (account, req) => {
  const meta = account.read();
  if (!req.headers.host) return meta;
  const locations = [{ name: "South Central US", databaseAccountEndpoint: `https://${req.headers.host}/` }];
  return { ...meta, writableLocations: locations, readableLocations: locations };
};

// Every change to the store goes through Items._set or Items.delete: mark the store dirty.
let dirty = false;
const originalSet = Items.prototype._set;
Items.prototype._set = function set(data) {
  dirty = true;
  return originalSet.call(this, data);
};
const originalDelete = Items.prototype.delete;
Items.prototype.delete = function del(...rest) {
  dirty = true;
  return originalDelete.apply(this, rest);
};

// The store as JSON lines, one per resource, written synchronously so that a save is a
// consistent snapshot (no request runs in between) and no single string grows with the store.
function save(account) {
  const started = Date.now();
  const tmp = `${dataFile}.tmp`;
  const fd = fs.openSync(tmp, "w");
  const write = (record) => fs.writeSync(fd, `${JSON.stringify(record)}\n`);
  try {
    write({ kind: "store", version: 1, ridCount: account.databases._ridCount });
    for (const db of account.databases._data.values()) {
      write({ kind: "database", data: db.read(), ridCount: db.collections._ridCount });
      for (const coll of db.collections._data.values()) {
        const { documents, userDefinedFunctions: udfs } = coll;
        write({
          kind: "collection",
          db: db.read()._rid,
          data: coll.read(),
          ridCount: documents._ridCount,
          udfRidCount: udfs._ridCount,
        });
        for (const doc of documents._data.values()) {
          write({ kind: "document", db: db.read()._rid, coll: coll.read()._rid, data: doc.read() });
        }
        for (const udf of udfs._data.values()) {
          write({ kind: "udf", db: db.read()._rid, coll: coll.read()._rid, data: udf.read() });
        }
      }
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, dataFile);
  return Date.now() - started;
}

// Lines of a file, read in chunks: a store can outgrow the longest string V8 can hold.
function* readLines(file) {
  let fd;
  try {
    fd = fs.openSync(file, "r");
  } catch (err) {
    if (err.code === "ENOENT") return;
    throw err;
  }
  try {
    const chunk = Buffer.alloc(16 * 1024 * 1024);
    let rest = Buffer.alloc(0);
    for (;;) {
      const read = fs.readSync(fd, chunk, 0, chunk.length, null);
      if (read === 0) break;
      let data = Buffer.concat([rest, chunk.subarray(0, read)]);
      let newline;
      while ((newline = data.indexOf(10)) >= 0) {
        yield data.subarray(0, newline).toString("utf8");
        data = data.subarray(newline + 1);
      }
      rest = Buffer.from(data);
    }
    if (rest.length) yield rest.toString("utf8");
  } finally {
    fs.closeSync(fd);
  }
}

function load(account) {
  let count = 0;
  const collections = new Map();
  for (const line of readLines(dataFile)) {
    if (!line) continue;
    const record = JSON.parse(line);
    if (record.kind === "store") {
      account.databases._ridCount = record.ridCount;
    } else if (record.kind === "database") {
      account.databases._set(record.data);
      account.databases._data.get(record.data._rid).collections._ridCount = record.ridCount;
    } else if (record.kind === "collection") {
      const db = account.databases._data.get(record.db);
      db.collections._set(record.data);
      const coll = db.collections._data.get(record.data._rid);
      coll.documents._ridCount = record.ridCount;
      coll.userDefinedFunctions._ridCount = record.udfRidCount;
      collections.set(`${record.db}/${record.data._rid}`, coll);
    } else if (record.kind === "document") {
      collections.get(`${record.db}/${record.coll}`).documents._set(record.data);
      count += 1;
    } else if (record.kind === "udf") {
      const udfs = collections.get(`${record.db}/${record.coll}`).userDefinedFunctions;
      udfs._set(record.data);
      udfs.replace({ id: record.data.id, body: record.data.body }); // compiles the function
    }
  }
  return count;
}

// Load before listening: a store that cannot be read stops the start before the port opens, so
// the caller never mistakes a dying server for a ready one. Never start empty over such a store:
// that would look like data loss.
const OriginalAccount = accountModule.default;
let preloaded = null;
if (dataFile && !fresh) {
  try {
    preloaded = new OriginalAccount(host, port);
    console.log(`restored ${load(preloaded)} item(s) from ${dataFile}`);
  } catch (err) {
    console.error(`cannot load ${dataFile} (${err.message}); move it away to start empty`);
    process.exit(1);
  }
}

// The server creates its account when it starts listening: hand it the loaded databases.
let account = null;
accountModule.default = class PersistentAccount extends OriginalAccount {
  constructor(...rest) {
    super(...rest);
    if (preloaded) {
      this.databases = preloaded.databases;
      this.databases._parent = this;
    }
    account = this;
    dirty = false;
  }
};

const { createHttpsServer } = require("@vercel/cosmosdb-server");

function saveIfDirty() {
  if (!dataFile || !account || !dirty) return 0;
  dirty = false;
  return save(account);
}

const server = createHttpsServer({ keepAlive: true });
// Node closes an idle kept-alive connection after 5 s; aiohttp (the Cosmos DB SDK's transport)
// keeps one for 15 s, so a request could go out on a connection the server was closing. The
// server waits longer than any client, as Azure's front ends do: the client closes first.
server.keepAliveTimeout = 120 * 1000;
server.headersTimeout = 121 * 1000;
server.listen(port, host, () => {
  console.log(`cosmosdb-server ready at https://${host}:${port}`);
  if (dataFile && saveInterval > 0) {
    // A large store takes a while to write: space saves out so they never hog the process.
    const loop = () => {
      let took = 0;
      try {
        took = saveIfDirty();
      } catch (err) {
        dirty = true;
        console.error("saving the store failed:", err);
      }
      setTimeout(loop, Math.max(saveInterval * 1000, took * 10)).unref();
    };
    setTimeout(loop, saveInterval * 1000).unref();
  }
});

// Waiting for keep-alive connections to drain would only delay `stop`: save and exit.
const shutdown = () => {
  try {
    if (dataFile && account) save(account);
  } catch (err) {
    console.error("saving the store failed:", err);
    process.exit(1);
  }
  process.exit(0);
};
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
