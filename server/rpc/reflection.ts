// gRPC server reflection (grpc.reflection.v1 and v1alpha), so `buf curl` and other tools call the
// router without a local copy of the protos. Answers come from the protobuf-es descriptors the
// generated code embeds, with every transitive dependency (google/protobuf/* included).
// v1alpha is the same messages under another package name: it is answered through v1 on the wire.
import { type DescEnum, type DescExtension, type DescFile, type DescMessage, type DescService, fromBinary, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter } from "@connectrpc/connect";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

type Request = v1.ServerReflectionRequest;
type Response = v1.ServerReflectionResponse;
type Answer = Response["messageResponse"];

/** Registers both reflection services, describing `services` and the reflection services themselves. */
export function registerReflection(router: ConnectRouter, services: DescService[]): void {
  const index = new DescriptorIndex([...services, v1.ServerReflection, v1alpha.ServerReflection]);
  router.service(v1.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) yield index.respond(req);
    },
  });
  router.service(v1alpha.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        const res = index.respond(fromBinary(v1.ServerReflectionRequestSchema, toBinary(v1alpha.ServerReflectionRequestSchema, req)));
        yield fromBinary(v1alpha.ServerReflectionResponseSchema, toBinary(v1.ServerReflectionResponseSchema, res));
      }
    },
  });
}

/** Files by name and by the symbols they declare, each serialized once. */
export class DescriptorIndex {
  private readonly files = new Map<string, DescFile>();
  private readonly bySymbol = new Map<string, DescFile>();
  private readonly byExtension = new Map<string, DescFile>(); // "extendee:number"
  private readonly extensionNumbers = new Map<string, number[]>();
  private readonly serialized = new Map<DescFile, Uint8Array>();
  readonly serviceNames: string[];

  constructor(services: DescService[]) {
    this.serviceNames = [...new Set(services.map((s) => s.typeName))].sort();
    for (const s of services) this.addFile(s.file);
  }

  respond(req: Request): Response {
    return {
      $typeName: "grpc.reflection.v1.ServerReflectionResponse",
      validHost: req.host,
      originalRequest: req,
      messageResponse: this.answer(req.messageRequest),
    };
  }

  private answer(r: Request["messageRequest"]): Answer {
    switch (r.case) {
      case "listServices":
        return { case: "listServicesResponse", value: { $typeName: "grpc.reflection.v1.ListServiceResponse", service: this.serviceNames.map((name) => ({ $typeName: "grpc.reflection.v1.ServiceResponse", name })) } };
      case "fileByFilename":
        return this.fileAnswer(this.files.get(r.value), `file ${r.value}`);
      case "fileContainingSymbol":
        return this.fileAnswer(this.bySymbol.get(r.value.replace(/^\./, "")), `symbol ${r.value}`);
      case "fileContainingExtension":
        return this.fileAnswer(this.byExtension.get(`${r.value.containingType}:${r.value.extensionNumber}`), `extension ${r.value.extensionNumber} of ${r.value.containingType}`);
      case "allExtensionNumbersOfType": {
        const numbers = this.extensionNumbers.get(r.value);
        if (!numbers) return error(Code.NotFound, `type not found: ${r.value}`);
        return { case: "allExtensionNumbersResponse", value: { $typeName: "grpc.reflection.v1.ExtensionNumberResponse", baseTypeName: r.value, extensionNumber: numbers } };
      }
      default:
        return error(Code.InvalidArgument, "the request sets none of the message_request fields");
    }
  }

  /** The file first, then its transitive dependencies, each once (clients build the file from them). */
  private fileAnswer(file: DescFile | undefined, what: string): Answer {
    if (!file) return error(Code.NotFound, `${what} not found`);
    const ordered: DescFile[] = [];
    const visit = (f: DescFile) => {
      if (ordered.includes(f)) return;
      ordered.push(f);
      f.dependencies.forEach(visit);
    };
    visit(file);
    return {
      case: "fileDescriptorResponse",
      value: { $typeName: "grpc.reflection.v1.FileDescriptorResponse", fileDescriptorProto: ordered.map((f) => this.bytesOf(f)) },
    };
  }

  private bytesOf(file: DescFile): Uint8Array {
    let bytes = this.serialized.get(file);
    if (!bytes) this.serialized.set(file, (bytes = toBinary(FileDescriptorProtoSchema, file.proto)));
    return bytes;
  }

  private addFile(file: DescFile): void {
    if (this.files.has(file.proto.name)) return;
    this.files.set(file.proto.name, file);
    const addMessage = (m: DescMessage) => {
      this.bySymbol.set(m.typeName, file);
      this.extensionNumbers.set(m.typeName, this.extensionNumbers.get(m.typeName) ?? []);
      m.nestedMessages.forEach(addMessage);
      m.nestedEnums.forEach(addEnum);
      m.nestedExtensions.forEach(addExtension);
    };
    const addEnum = (e: DescEnum) => this.bySymbol.set(e.typeName, file);
    const addExtension = (x: DescExtension) => {
      this.bySymbol.set(x.typeName, file);
      this.byExtension.set(`${x.extendee.typeName}:${x.number}`, file);
      this.extensionNumbers.set(x.extendee.typeName, [...(this.extensionNumbers.get(x.extendee.typeName) ?? []), x.number]);
    };
    file.messages.forEach(addMessage);
    file.enums.forEach(addEnum);
    file.extensions.forEach(addExtension);
    for (const s of file.services) {
      this.bySymbol.set(s.typeName, file);
      for (const m of s.methods) this.bySymbol.set(`${s.typeName}.${m.name}`, file);
    }
    file.dependencies.forEach((d) => this.addFile(d));
  }
}

function error(code: Code, message: string): Answer {
  return { case: "errorResponse", value: { $typeName: "grpc.reflection.v1.ErrorResponse", errorCode: code, errorMessage: message } };
}
