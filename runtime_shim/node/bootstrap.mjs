// A Lambda runtime for Node.js handlers, modelled on aws-lambda-ric.
//
// Run as `node bootstrap.mjs` with the Lambda environment: it loads the
// handler named by `_HANDLER` from `LAMBDA_TASK_ROOT`, then fetches events
// from the Runtime API at `AWS_LAMBDA_RUNTIME_API` and posts each result
// back. Handler lookup, the context object, the callback semantics
// (`callbackWaitsForEmptyEventLoop` through the `beforeExit` event), the
// error bodies and the console format follow the official client,
// aws/aws-lambda-nodejs-runtime-interface-client, with plain HTTP in place
// of its native Runtime API client.
//
// No npm dependencies: only Node's own modules.

import fs from 'node:fs';
import { createRequire, register } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import util from 'node:util';

const API_PREFIX = '/2018-06-01/runtime';
const ERROR_TYPE_HEADER = 'Lambda-Runtime-Function-Error-Type';
const MAX_RESPONSE_HEAD = 64 * 1024;

// Exit codes of the official client after an uncaught exception and an
// unhandled rejection.
const EXIT_UNCAUGHT_EXCEPTION = 129;
const EXIT_UNHANDLED_REJECTION = 128;

// -- errors ------------------------------------------------------------------

function defineRuntimeError(name) {
  const RuntimeError = class extends Error {};
  Object.defineProperty(RuntimeError, 'name', { value: name });
  RuntimeError.prototype.name = `Runtime.${name}`;
  return RuntimeError;
}

const ImportModuleError = defineRuntimeError('ImportModuleError');
const HandlerNotFound = defineRuntimeError('HandlerNotFound');
const MalformedHandlerName = defineRuntimeError('MalformedHandlerName');

class UserCodeSyntaxError extends Error {
  constructor(syntaxError) {
    super(String(syntaxError));
    // The original stack names the file and line of the syntax error.
    this.stack = syntaxError.stack;
  }
}
UserCodeSyntaxError.prototype.name = 'Runtime.UserCodeSyntaxError';

class UnhandledPromiseRejection extends Error {
  constructor(reason, promise) {
    super(reason);
    this.reason = reason;
    this.promise = promise;
  }
}
UnhandledPromiseRejection.prototype.name = 'Runtime.UnhandledPromiseRejection';

class NodeJsExit extends Error {
  constructor() {
    // NOTE: the wording of Lambda's own message for this error is not
    // known here; the error type is Lambda's.
    super(
      'The event loop emptied while the async handler had not settled its promise. ' +
        'Make sure that every promise the handler starts is settled.',
    );
  }
}
NodeJsExit.prototype.name = 'Runtime.NodeJsExit';

function isErrorLike(value) {
  return (
    value &&
    typeof value.name === 'string' &&
    typeof value.message === 'string' &&
    typeof value.stack === 'string'
  );
}

// The error body of a failed invocation or init: `{errorType, errorMessage, trace}`.
function toErrorBody(error) {
  try {
    if (util.types.isNativeError(error) || isErrorLike(error)) {
      return { errorType: error.name, errorMessage: error.message, trace: error.stack.split('\n') };
    }
    return { errorType: typeof error, errorMessage: String(error), trace: [] };
  } catch {
    return {
      errorType: 'handled',
      errorMessage:
        'callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack',
      trace: [],
    };
  }
}

function intoError(value) {
  return value instanceof Error ? value : new Error(value);
}

// -- logging -----------------------------------------------------------------

let currentRequestId;

const LOG_LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'];

// Replace the console methods with Lambda's text format:
// `<ISO time>\t<request id>\t<LEVEL>\t<message>`. Before the first
// invocation the request id is `undefined`, as in Lambda.
function patchConsole() {
  const minimum = Math.max(0, LOG_LEVELS.indexOf(process.env.AWS_LAMBDA_LOG_LEVEL?.toUpperCase()));
  const logger = (level) => {
    if (LOG_LEVELS.indexOf(level) < minimum) {
      return () => {};
    }
    return (message, ...params) => {
      const text = util.format(message, ...params);
      process.stdout.write(`${new Date().toISOString()}\t${currentRequestId}\t${level}\t${text}\n`);
    };
  };
  console.trace = logger('TRACE');
  console.debug = logger('DEBUG');
  console.info = logger('INFO');
  console.log = console.info;
  console.warn = logger('WARN');
  console.error = logger('ERROR');
  console.fatal = logger('FATAL');
}

// Error objects keep name, message and stack out of JSON.stringify, so add them.
function withErrorProperties(_key, value) {
  if (!(value instanceof Error)) {
    return value;
  }
  const properties = Object.assign(
    { errorType: value.name, errorMessage: value.message, code: value.code },
    value,
  );
  if (typeof value.stack === 'string') {
    properties.stack = value.stack.split('\n');
  }
  return properties;
}

function logError(message, error) {
  const value = intoError(error);
  let formatted;
  try {
    formatted = '\t' + JSON.stringify(value, withErrorProperties);
  } catch {
    formatted = '\t' + JSON.stringify(toErrorBody(value));
  }
  console.error(message, formatted);
}

// -- the Runtime API client --------------------------------------------------

// Requests on one kept-alive connection, in just the HTTP the Runtime API
// needs: `node:http` costs about three times as much per request, which
// was most of a warm invocation. Responses arrive in the order of the
// requests, so a request made while another is in flight (an init error
// posted from two listeners) waits behind it (HTTP/1.1 pipelining).
class RuntimeClient {
  constructor(address) {
    const separator = address.lastIndexOf(':');
    this.address = address;
    this.hostname = address.slice(0, separator);
    this.port = Number(address.slice(separator + 1));
    this.socket = null;
    this.pending = [];
    this.chunks = [];
    this.received = 0;
    this.head = null;
  }

  async nextInvocation() {
    const response = await this.request('GET', `${API_PREFIX}/invocation/next`);
    if (response.status !== 200) {
      throw new Error(`GET /invocation/next failed with ${response.status}: ${response.body}`);
    }
    return response;
  }

  postInvocationResponse(requestId, bodyText) {
    const target = `${API_PREFIX}/invocation/${encodeURIComponent(requestId)}/response`;
    return this.post(target, bodyText, {});
  }

  // Like the official client, send the error type in the body only.
  postInvocationError(requestId, error) {
    const target = `${API_PREFIX}/invocation/${encodeURIComponent(requestId)}/error`;
    return this.post(target, JSON.stringify(toErrorBody(error)), {});
  }

  postInitError(error) {
    const body = toErrorBody(error);
    return this.post(`${API_PREFIX}/init/error`, JSON.stringify(body), {
      [ERROR_TYPE_HEADER]: body.errorType,
    });
  }

  async post(target, bodyText, headers) {
    const response = await this.request('POST', target, bodyText, headers);
    if (response.status !== 202) {
      process.stderr.write(`Runtime API POST ${target} failed with ${response.status}: ${response.body}\n`);
    }
    return response;
  }

  async request(method, target, bodyText, headers = {}) {
    try {
      return await this.send(method, target, bodyText, headers);
    } catch (error) {
      if (!(error instanceof ConnectionLostError)) {
        throw error;
      }
      // The server closed the kept-alive connection before it responded,
      // so send the request again, once, on a new connection.
      return this.send(method, target, bodyText, headers);
    }
  }

  send(method, target, bodyText, headers) {
    return new Promise((resolve, reject) => {
      if (this.socket === null) {
        this.connect();
      }
      let head = `${method} ${target} HTTP/1.1\r\nHost: ${this.address}\r\n`;
      let body = null;
      if (bodyText !== undefined) {
        body = Buffer.from(bodyText, 'utf8');
        head += `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n`;
      }
      for (const [name, value] of Object.entries(headers)) {
        head += `${name}: ${value}\r\n`;
      }
      head += '\r\n';
      this.pending.push({ resolve, reject });
      // A request in flight keeps the process alive; an idle connection
      // does not, so `beforeExit` fires when the handler's own work is done.
      this.socket.ref();
      this.socket.write(body === null ? head : Buffer.concat([Buffer.from(head, 'utf8'), body]));
    });
  }

  connect() {
    const socket = net.connect({ host: this.hostname, port: this.port, noDelay: true });
    socket.on('data', (chunk) => this.onData(chunk));
    socket.on('error', (error) => this.fail(socket, error));
    socket.on('close', () => this.fail(socket, new Error('the Runtime API closed the connection')));
    this.socket = socket;
    this.chunks = [];
    this.received = 0;
    this.head = null;
  }

  onData(chunk) {
    this.chunks.push(chunk);
    this.received += chunk.length;
    // One read may hold several responses, or the end of one and the
    // start of the next.
    let complete = true;
    while (complete && this.socket !== null && this.received > 0) {
      complete = this.takeResponse();
    }
  }

  // Resolve the oldest request if its whole response has arrived; return
  // whether it had.
  takeResponse() {
    if (this.head === null) {
      const buffer = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
      this.chunks = [buffer];
      const end = buffer.indexOf('\r\n\r\n');
      if (end < 0) {
        if (buffer.length > MAX_RESPONSE_HEAD) {
          this.fail(this.socket, new Error('the Runtime API sent a response head over 64 KiB'));
        }
        return false;
      }
      this.head = parseResponseHead(buffer.toString('utf8', 0, end), end + 4);
      if (this.head.error) {
        this.fail(this.socket, new Error(this.head.error));
        return false;
      }
    }

    const { status, headers, bodyStart, length } = this.head;
    if (this.received < bodyStart + length) {
      return false;
    }

    const buffer = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    const body = buffer.toString('utf8', bodyStart, bodyStart + length);
    const rest = buffer.subarray(bodyStart + length);
    this.chunks = rest.length ? [rest] : [];
    this.received = rest.length;
    this.head = null;

    const pending = this.pending.shift();
    if (headers.connection?.toLowerCase() === 'close') {
      // The requests sent after this one get no response on this connection.
      this.fail(this.socket, new Error('the Runtime API closed the connection'));
    } else if (this.pending.length === 0) {
      this.socket.unref();
    }
    pending?.resolve({ status, headers, body });
    return true;
  }

  fail(socket, error) {
    if (socket !== this.socket) {
      return;
    }
    socket.destroy();
    this.socket = null;
    // Only the oldest request's response can have begun.
    const begun = this.received > 0 || this.head !== null;
    const pending = this.pending;
    this.pending = [];
    pending.forEach((request, index) => {
      request.reject(index === 0 && begun ? error : new ConnectionLostError(error.message));
    });
  }
}

// The connection closed before any of the response arrived.
class ConnectionLostError extends Error {}

// Parse a response's status line and headers; header names are lowercased.
function parseResponseHead(text, bodyStart) {
  const lines = text.split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
  if (status === null) {
    return { error: `the Runtime API sent an invalid status line: ${JSON.stringify(lines[0])}` };
  }
  const headers = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0) {
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
  }
  if (headers['transfer-encoding'] !== undefined) {
    return { error: 'the Runtime API sent a chunked response, which is not supported' };
  }
  const length = Number(headers['content-length'] ?? '0');
  if (!Number.isSafeInteger(length) || length < 0) {
    return { error: 'the Runtime API sent an invalid Content-Length' };
  }
  return { status: Number(status[1]), headers, bodyStart, length };
}

// The Runtime API is gone, so nothing can be reported: stop the process.
function exitOnClientError(error) {
  process.stderr.write(`Lambda runtime: the Runtime API request failed: ${error?.stack ?? error}\n`);
  process.exit(1);
}

// -- shared code through NODE_PATH -------------------------------------------

// ES modules ignore NODE_PATH. This resolve hook retries a bare specifier
// that the default resolution could not find from each NODE_PATH entry,
// with the ES module rules (package.json "exports", no extension guessing).
// Resolving from a file inside an entry named `node_modules` finds the
// packages in that entry. For an entry with another name, only a specifier
// that names a file under the entry (`pkg/file.js`) resolves.
const NODE_PATH_RESOLVE_HOOK = `
import path from 'node:path';
import { pathToFileURL } from 'node:url';

let entries = [];

export function initialize(data) {
  entries = data.paths;
}

function isBareSpecifier(specifier) {
  return !specifier.startsWith('.') && !specifier.startsWith('/') && !specifier.includes(':');
}

export async function resolve(specifier, context, nextResolve) {
  try {
    return await nextResolve(specifier, context);
  } catch (error) {
    if (error?.code !== 'ERR_MODULE_NOT_FOUND' || !isBareSpecifier(specifier)) {
      throw error;
    }
    for (const entry of entries) {
      const attempts = [];
      if (path.basename(entry) === 'node_modules') {
        const parentURL = pathToFileURL(path.join(entry, '__node_path_parent__.mjs')).href;
        attempts.push(() => nextResolve(specifier, { ...context, parentURL }));
      }
      attempts.push(() => nextResolve(pathToFileURL(path.join(entry, specifier)).href, context));
      for (const attempt of attempts) {
        try {
          return await attempt();
        } catch {
          // Try the next way, then the next entry.
        }
      }
    }
    throw error;
  }
}
`;

function registerNodePathHook() {
  const entries = (process.env.NODE_PATH ?? '')
    .split(path.delimiter)
    .filter((entry) => entry !== '')
    .map((entry) => path.resolve(entry));
  // module.register exists from Node 20.6 and 18.19 on.
  if (entries.length === 0 || typeof register !== 'function') {
    return;
  }
  const url = 'data:text/javascript,' + encodeURIComponent(NODE_PATH_RESOLVE_HOOK);
  register(url, { data: { paths: entries } });
}

// -- loading the handler -----------------------------------------------------

const requireFromRuntime = createRequire(import.meta.url);

function tryRequire(file) {
  return fs.existsSync(file) ? requireFromRuntime(file) : undefined;
}

async function tryImport(file) {
  return fs.existsSync(file) ? await import(pathToFileURL(file).href) : undefined;
}

// Whether the nearest package.json above `folder` sets `"type": "module"`.
// The search stops at a node_modules folder or the file system root.
function hasPackageTypeModule(folder) {
  if (folder.endsWith(`${path.sep}node_modules`)) {
    return false;
  }
  const packageJson = path.join(folder, 'package.json');
  if (fs.existsSync(packageJson)) {
    try {
      return JSON.parse(fs.readFileSync(packageJson, 'utf8'))?.type === 'module';
    } catch (error) {
      console.warn(`${packageJson} cannot be read, it will be ignored for ES module detection purposes.`, error);
      return false;
    }
  }
  const parent = path.dirname(folder);
  return parent === folder ? false : hasPackageTypeModule(parent);
}

// Load the module in the order of the official client: the exact name,
// `.js` through require unless a package.json makes it an ES module, then
// `.js` as an ES module, `.mjs`, `.cjs`, and Node's own lookup last.
async function loadModule(appRoot, moduleRoot, moduleName) {
  const basePath = path.resolve(appRoot, moduleRoot, moduleName);
  try {
    const exact = tryRequire(basePath);
    if (exact) {
      return exact;
    }
    const typeModule = hasPackageTypeModule(path.dirname(basePath));
    if (!typeModule) {
      const commonJs = tryRequire(basePath + '.js');
      if (commonJs) {
        return commonJs;
      }
    }
    const loaded =
      (typeModule && (await tryImport(basePath + '.js'))) ||
      (await tryImport(basePath + '.mjs')) ||
      tryRequire(basePath + '.cjs');
    if (loaded) {
      return loaded;
    }
    return requireFromRuntime(requireFromRuntime.resolve(moduleName, { paths: [appRoot, moduleRoot] }));
  } catch (error) {
    if (error instanceof SyntaxError) {
      throw new UserCodeSyntaxError(error);
    }
    // ES modules report a missing file or package as ERR_MODULE_NOT_FOUND.
    if (error?.code === 'MODULE_NOT_FOUND' || error?.code === 'ERR_MODULE_NOT_FOUND') {
      throw new ImportModuleError(error);
    }
    throw error;
  }
}

// Load the function named by a handler string such as `index.handler`,
// `src/app.handler` or `index.nested.handler`.
async function loadHandler(appRoot, handlerString) {
  if (handlerString.includes('..')) {
    throw new MalformedHandlerName(
      `'${handlerString}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`,
    );
  }
  const moduleAndHandler = path.basename(handlerString);
  const moduleRoot = handlerString.substring(0, handlerString.indexOf(moduleAndHandler));
  const match = moduleAndHandler.match(/^([^.]*)\.(.*)$/);
  if (!match) {
    throw new MalformedHandlerName('Bad handler');
  }
  const [, moduleName, handlerPath] = match;

  const userModule = await loadModule(appRoot, moduleRoot, moduleName);
  const handler = handlerPath.split('.').reduce((value, key) => value && value[key], userModule);
  if (!handler) {
    throw new HandlerNotFound(`${handlerString} is undefined or not exported`);
  }
  if (typeof handler !== 'function') {
    throw new HandlerNotFound(`${handlerString} is not a function`);
  }
  return handler;
}

function isAsyncFunction(value) {
  return value?.constructor?.name === 'AsyncFunction';
}

// -- the invocation loop -----------------------------------------------------

// The listener that `process.on('beforeExit')` calls when the event loop empties.
let beforeExitListener = () => {};

// The handlers of an uncaught exception and an unhandled rejection. They
// fail the init before the first invocation, and the running invocation after.
let errorCallbacks;

function parseJsonHeader(value, name) {
  if (value === undefined) {
    return undefined;
  }
  try {
    return JSON.parse(value);
  } catch (error) {
    throw new Error(`Cannot parse ${name} as json: ${error.toString()}`);
  }
}

// The parts of `context` that come from the environment and the headers.
function invocationData(headers) {
  const deadline = Number(headers['lambda-runtime-deadline-ms']);
  return {
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
    clientContext: parseJsonHeader(headers['lambda-runtime-client-context'], 'ClientContext'),
    identity: parseJsonHeader(headers['lambda-runtime-cognito-identity'], 'CognitoIdentity'),
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
    awsRequestId: headers['lambda-runtime-aws-request-id'],
    tenantId: headers['lambda-runtime-aws-tenant-id'],
    getRemainingTimeInMillis: () => deadline - Date.now(),
  };
}

// Build the handler's callback and the callback part of `context`
// (`callbackWaitsForEmptyEventLoop`, `done`, `succeed`, `fail`). Only the
// first call of any of them counts.
function buildCallbackContext(client, requestId, scheduleNext) {
  let waitForEmptyEventLoop = true;
  let completed = false;

  const postError = (error) => {
    logError('Invoke Error', error);
    client.postInvocationError(requestId, error).then(scheduleNext, exitOnClientError);
  };

  const complete = (result) => {
    if (completed) {
      console.error(
        'Invocation has already been reported as done. Cannot call complete more than once per invocation.',
      );
      return;
    }
    completed = true;
    let bodyText;
    try {
      bodyText = JSON.stringify(result === undefined ? null : result);
    } catch {
      postError(new Error('Unable to stringify response body'));
      return;
    }
    client.postInvocationResponse(requestId, bodyText).then(scheduleNext, exitOnClientError);
  };

  const callback = (error, result) => {
    beforeExitListener = () => {};
    if (error !== undefined && error !== null) {
      postError(error);
    } else if (!waitForEmptyEventLoop) {
      complete(result);
    } else {
      // Post when the handler's timers, sockets and promises are done.
      beforeExitListener = () => setImmediate(() => complete(result));
    }
  };

  const done = (error, result) => {
    beforeExitListener = () => {};
    if (error !== undefined && error !== null) {
      postError(error);
    } else {
      complete(result);
    }
  };

  let finished = false;
  const firstCallOnly =
    (target) =>
    (...args) => {
      if (!finished) {
        target(...args);
        finished = true;
      }
    };

  const context = {
    get callbackWaitsForEmptyEventLoop() {
      return waitForEmptyEventLoop;
    },
    set callbackWaitsForEmptyEventLoop(value) {
      waitForEmptyEventLoop = value;
    },
    succeed: firstCallOnly((result) => done(null, result)),
    fail: firstCallOnly((error) => done(error === undefined || error === null ? 'handled' : error)),
    done: firstCallOnly(done),
  };
  const markCompleted = () => {
    completed = true;
  };
  return [firstCallOnly(callback), context, markCompleted];
}

function isPromise(value) {
  return value && typeof value.then === 'function';
}

async function handleOnce(client, handler, scheduleNext) {
  const { body, headers } = await client.nextInvocation();
  const requestId = headers['lambda-runtime-aws-request-id'];
  currentRequestId = requestId;
  if (headers['lambda-runtime-trace-id']) {
    process.env._X_AMZN_TRACE_ID = headers['lambda-runtime-trace-id'];
  } else {
    delete process.env._X_AMZN_TRACE_ID;
  }

  const [callback, callbackContext, markCompleted] = buildCallbackContext(client, requestId, scheduleNext);
  try {
    errorCallbacks = {
      uncaughtException: (error) =>
        client.postInvocationError(requestId, error).finally(() => process.exit(EXIT_UNCAUGHT_EXCEPTION)),
      unhandledRejection: (error) =>
        client.postInvocationError(requestId, error).finally(() => process.exit(EXIT_UNHANDLED_REJECTION)),
    };
    // The event loop emptied before the handler reported a result. An async
    // handler left its promise pending, which fails the invocation. A
    // callback handler that never called back returns null.
    beforeExitListener = () => {
      markCompleted();
      if (isAsyncFunction(handler)) {
        const error = new NodeJsExit();
        logError('Invoke Error', error);
        client.postInvocationError(requestId, error).then(scheduleNext, exitOnClientError);
      } else {
        client.postInvocationResponse(requestId, 'null').then(scheduleNext, exitOnClientError);
      }
    };

    const context = Object.assign(callbackContext, invocationData(headers));
    const result = handler(JSON.parse(body), context, callback);
    if (isPromise(result)) {
      result.then(context.succeed, context.fail).catch(context.fail);
    }
  } catch (error) {
    callback(error);
  }
}

async function main() {
  patchConsole();
  registerNodePathHook();
  const client = new RuntimeClient(process.env.AWS_LAMBDA_RUNTIME_API);

  errorCallbacks = {
    uncaughtException: (error) => client.postInitError(error).finally(() => process.exit(EXIT_UNCAUGHT_EXCEPTION)),
    unhandledRejection: (error) =>
      client.postInitError(error).finally(() => process.exit(EXIT_UNHANDLED_REJECTION)),
  };
  process.on('uncaughtException', (error) => {
    logError('Uncaught Exception', error);
    errorCallbacks.uncaughtException(error);
  });
  process.on('unhandledRejection', (reason, promise) => {
    const error = new UnhandledPromiseRejection(reason, promise);
    logError('Unhandled Promise Rejection', error);
    errorCallbacks.unhandledRejection(error);
  });
  process.on('beforeExit', () => beforeExitListener());

  let handler;
  try {
    handler = await loadHandler(process.env.LAMBDA_TASK_ROOT || process.cwd(), process.env._HANDLER ?? '');
  } catch (error) {
    // The official client lets this error reach its uncaughtException listener.
    logError('Uncaught Exception', error);
    errorCallbacks.uncaughtException(error);
    return;
  }

  const scheduleNext = () => {
    setImmediate(() => {
      handleOnce(client, handler, scheduleNext).catch((error) => {
        // Only a broken Runtime API connection or a bug in this runtime gets here.
        console.log(`Unexpected Top Level Error: ${error}`);
        exitOnClientError(error);
      });
    });
  };
  scheduleNext();
}

main();
