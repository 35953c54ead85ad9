// A router that silently ignored a field it does not know (say, a newer client's read preference)
// would run a statement differently from what the caller asked. Unknown fields are rejected instead:
// JSON by the codec (ignoreUnknownFields: false), binary protobuf by this interceptor (connect-node)
// and by unary-handler.ts (the fast path), both through unknownFieldsError.
import type { Message } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

export const rejectUnknownFields: Interceptor = (next) => async (req) => {
  if (!req.stream) {
    const err = unknownFieldsError(req.message);
    if (err) throw err;
  }
  return next(req);
};

/** InvalidArgument naming the unknown field numbers, or undefined when the message has none. */
export function unknownFieldsError(message: Message): ConnectError | undefined {
  const unknown = (message as { $unknown?: { no: number }[] }).$unknown;
  if (!unknown?.length) return undefined;
  return new ConnectError(
    `${message.$typeName} has fields this router does not know (field numbers ${unknown.map((f) => f.no).join(", ")}); upgrade the router or the client`,
    Code.InvalidArgument,
  );
}
