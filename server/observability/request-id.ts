// A request id for every RPC: the caller's `x-request-id` when it is a short token, else a new one
// (this process's random prefix and a counter). It is read and echoed at the Node level, in front
// of the Connect adapter, and handed to interceptors as a context value: Node's plain header object
// and setHeader cost a fraction of Connect's (fetch) Headers get/set on the hot path, and requests
// that fail before any interceptor (an undecodable body, an unknown method) get their id echoed too.
import { randomBytes } from "node:crypto";
import type * as http from "node:http";
import type * as http2 from "node:http2";
import { type ContextValues, createContextKey, createContextValues } from "@connectrpc/connect";

export const requestIdHeader = "x-request-id";
const saneRequestId = /^[\w.:-]{1,128}$/;

/** The request id in an RPC's context values ("" when the request did not come through withRequestIds). */
export const requestIdKey = createContextKey<string>("", { description: "request id" });

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;
type NodeHandler = (req: NodeRequest, res: NodeResponse) => void;

const idOf = Symbol("requestId");

export interface RequestIds {
  /** Wraps the Connect adapter: gives each request its id and sets it on the response. */
  wrap<H extends NodeHandler>(handler: H): H;
  /** For connectNodeAdapter's `contextValues` option. */
  contextValues(req: NodeRequest): ContextValues;
  /** A fresh id (for a request that has none). */
  next(): string;
  /** The id wrap gave this request (a fresh one if it did not come through wrap). */
  idOf(req: NodeRequest): string;
  /** The caller's id from these headers when it is sane, else a fresh one (raw HTTP/2 streams). */
  fromHeaders(headers: http.IncomingHttpHeaders): string;
}

export function requestIds(): RequestIds {
  const prefix = randomBytes(6).toString("hex");
  let sequence = 0;
  const next = () => `${prefix}-${(++sequence).toString(36)}`;
  const fromHeaders = (headers: http.IncomingHttpHeaders) => {
    const given = headers[requestIdHeader];
    return typeof given === "string" && saneRequestId.test(given) ? given : next();
  };
  const idOfRequest = (req: NodeRequest) => (req as { [idOf]?: string })[idOf] ?? next();
  return {
    next,
    fromHeaders,
    wrap<H extends NodeHandler>(handler: H): H {
      const wrapped: NodeHandler = (req, res) => {
        const id = fromHeaders(req.headers);
        (req as { [idOf]?: string })[idOf] = id;
        res.setHeader(requestIdHeader, id);
        handler(req, res);
      };
      return wrapped as H;
    },
    contextValues: (req) => createContextValues().set(requestIdKey, idOfRequest(req)),
    idOf: idOfRequest,
  };
}
