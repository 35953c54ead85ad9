// gRPC server reflection (v1 and v1alpha) as a client sees it: the files it returns describe the
// router's API completely (they build a registry with every dependency, google/protobuf/* included),
// and unknown names are answered with NOT_FOUND on a stream that stays usable.
import { create, createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as assert from "uvu/assert";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { startTestRouter, type TestRouter } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";

let t: TestRouter;
let reflection: ReturnType<typeof createClient<typeof v1.ServerReflection>>;

test.before(hook(async () => {
  t = await startTestRouter({ shards: 1 });
  reflection = createClient(v1.ServerReflection, createGrpcTransport({ baseUrl: t.router.url }));
}));

test.after(hook(async () => {
  await t?.stop();
}));

type Ask = v1.ServerReflectionRequest["messageRequest"];

/** Sends the requests on one stream and collects the responses. */
async function ask(...requests: Ask[]): Promise<v1.ServerReflectionResponse[]> {
  async function* input() {
    for (const messageRequest of requests) yield create(v1.ServerReflectionRequestSchema, { host: "router", messageRequest });
  }
  const out: v1.ServerReflectionResponse[] = [];
  for await (const res of reflection.serverReflectionInfo(input())) out.push(res);
  return out;
}

function files(res: v1.ServerReflectionResponse) {
  assert.is(res.messageResponse.case, "fileDescriptorResponse", JSON.stringify(res.messageResponse.value));
  const value = res.messageResponse.value as v1.FileDescriptorResponse;
  return value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b));
}

test("list_services names the router, health and both reflection services", async () => {
  const [res] = await ask({ case: "listServices", value: "*" });
  assert.is(res.validHost, "router");
  assert.is(res.originalRequest?.messageRequest.case, "listServices");
  assert.equal((res.messageResponse.value as v1.ListServiceResponse).service.map((s) => s.name), [
    "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection", "shardrouter.v1.AdminService", "shardrouter.v1.RouterService",
  ]);
});

test("file_containing_symbol returns the file and every transitive dependency: enough to build the API", async () => {
  const [res] = await ask({ case: "fileContainingSymbol", value: "shardrouter.v1.RouterService" });
  const protos = files(res);
  assert.is(protos[0].name, "shardrouter/v1/router.proto");
  assert.equal(protos.map((p) => p.name).sort(), [
    "google/protobuf/struct.proto", "google/protobuf/timestamp.proto", "shardrouter/v1/router.proto",
    "shardrouter/v1/transactions.proto", "shardrouter/v1/value.proto",
  ]);
  // Resolving imports only from the answer: a missing dependency would throw here.
  const registry = createFileRegistry(protos[0], (name) => protos.find((p) => p.name === name));
  assert.equal(registry.getService("shardrouter.v1.RouterService")?.methods.map((m) => m.name),
    ["Route", "Explain", "Execute", "ExecuteOnShard", "ExecuteOnAll", "Transfer", "ExecuteTransaction", "BeginTransaction", "ExecuteInTransaction",
      "CommitTransaction", "RollbackTransaction", "GetTopology", "NextIds"]);
  assert.is(registry.getMessage("shardrouter.v1.Value")?.field.timestampValue.message?.typeName, "google.protobuf.Timestamp");
});

test("symbols of every kind, and file_by_filename, find their files", async () => {
  const answers = await ask(
    { case: "fileContainingSymbol", value: "shardrouter.v1.RouterService.ExecuteOnShard" },
    { case: "fileContainingSymbol", value: ".shardrouter.v1.Value" },
    { case: "fileContainingSymbol", value: "shardrouter.v1.ReadPreference" },
    { case: "fileContainingSymbol", value: "grpc.health.v1.HealthCheckResponse.ServingStatus" },
    { case: "fileContainingSymbol", value: "google.protobuf.Timestamp" },
    { case: "fileByFilename", value: "shardrouter/v1/value.proto" },
    { case: "fileByFilename", value: "grpc/reflection/v1alpha/reflection.proto" },
  );
  assert.equal(answers.map((a) => files(a)[0].name), [
    "shardrouter/v1/router.proto", "shardrouter/v1/value.proto", "shardrouter/v1/router.proto", "grpc/health/v1/health.proto",
    "google/protobuf/timestamp.proto", "shardrouter/v1/value.proto", "grpc/reflection/v1alpha/reflection.proto",
  ]);
  assert.equal(files(answers[5]).map((p) => p.name), ["shardrouter/v1/value.proto", "google/protobuf/struct.proto", "google/protobuf/timestamp.proto"]);
});

test("unknown names get NOT_FOUND, an empty request INVALID_ARGUMENT, and the stream goes on answering", async () => {
  const answers = await ask(
    { case: "fileContainingSymbol", value: "shardrouter.v1.NoSuchThing" },
    { case: "fileByFilename", value: "nope.proto" },
    { case: "fileContainingExtension", value: { $typeName: "grpc.reflection.v1.ExtensionRequest", containingType: "shardrouter.v1.Value", extensionNumber: 100 } },
    { case: "allExtensionNumbersOfType", value: "shardrouter.v1.NoSuchThing" },
    { case: undefined },
    { case: "allExtensionNumbersOfType", value: "shardrouter.v1.Value" },
  );
  const errors = answers.slice(0, 5).map((a) => a.messageResponse.value as v1.ErrorResponse);
  assert.equal(errors.map((e) => e.errorCode), [Code.NotFound, Code.NotFound, Code.NotFound, Code.NotFound, Code.InvalidArgument]);
  assert.match(errors[0].errorMessage, "shardrouter.v1.NoSuchThing");
  assert.match(errors[1].errorMessage, "nope.proto");
  assert.is(answers[5].messageResponse.case, "allExtensionNumbersResponse");
  assert.equal(answers[5].messageResponse.value, create(v1.ExtensionNumberResponseSchema, { baseTypeName: "shardrouter.v1.Value", extensionNumber: [] }));
});

test("v1alpha answers the same as v1", async () => {
  const alpha = createClient(v1alpha.ServerReflection, createGrpcTransport({ baseUrl: t.router.url }));
  async function* input() {
    yield create(v1alpha.ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "" } });
    yield create(v1alpha.ServerReflectionRequestSchema, { messageRequest: { case: "fileContainingSymbol", value: "shardrouter.v1.RouteRequest" } });
    yield create(v1alpha.ServerReflectionRequestSchema, { messageRequest: { case: "fileContainingSymbol", value: "nope.Nope" } });
  }
  const out: v1alpha.ServerReflectionResponse[] = [];
  for await (const res of alpha.serverReflectionInfo(input())) out.push(res);
  assert.is(out[0].$typeName, "grpc.reflection.v1alpha.ServerReflectionResponse");
  assert.ok((out[0].messageResponse.value as v1alpha.ListServiceResponse).service.some((s) => s.name === "shardrouter.v1.RouterService"));
  const file = out[1].messageResponse.value as v1alpha.FileDescriptorResponse;
  assert.is(fromBinary(FileDescriptorProtoSchema, file.fileDescriptorProto[0]).name, "shardrouter/v1/router.proto");
  assert.is((out[2].messageResponse.value as v1alpha.ErrorResponse).errorCode, Code.NotFound);
});

test.run();
