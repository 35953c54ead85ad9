// A router that silently ignored a field it does not know (say, a newer client's read preference)
// would run a statement differently from what the caller asked. Unknown fields are rejected instead:
// JSON by the codec (ignoreUnknownFields: false), binary protobuf by this interceptor.
import type { Message } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

export const rejectUnknownFields: Interceptor = (next) => async (req) => {
  if (!req.stream) {
    const unknown = unknownFieldNumbers(req.message);
    if (unknown.length) {
      throw new ConnectError(
        `${req.method.input.typeName} has fields this router does not know (field numbers ${unknown.join(", ")}); upgrade the router or the client`,
        Code.InvalidArgument,
      );
    }
  }
  return next(req);
};

function unknownFieldNumbers(message: Message): number[] {
  const own = (message as { $unknown?: { no: number }[] }).$unknown ?? [];
  return own.map((f) => f.no);
}
